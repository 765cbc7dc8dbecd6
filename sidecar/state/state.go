// Package state keeps what the init container hands to the sidecar (and a
// restarted sidecar to itself) on the agent-only state tmpfs: the Vault token
// and the leases, so a Pod holds one token and one lease per dynamic secret.
// Never a secret's value.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/ramvault/ramvault/pkg/tmpfs"
)

// Token is the agent's Vault token as saved.
type Token struct {
	Token     string    `json:"token"`
	Expires   time.Time `json:"token_expires"`
	Renewable bool      `json:"token_renewable"`
}

// Secret is one Vault request's lease and schedule (a file's own secret, or
// a template's secret/pkiCert call); never its value.
type Secret struct {
	Path string `json:"path"`
	// Key is the request's identity (tmpl.Dependency.Key: path and
	// arguments, never data): a record is reused only for the same request.
	Key string `json:"key,omitempty"`
	// Digest is a SHA-256 of the response (data and lease ID), so a
	// restarted sidecar tells an unchanged KV re-read from a new version
	// without holding the value. The state tmpfs is the agent's only, and
	// holds the token, which reads the value itself.
	Digest        string        `json:"digest,omitempty"`
	LeaseID       string        `json:"lease_id,omitempty"`
	LeaseDuration time.Duration `json:"lease_duration,omitempty"`
	Renewable     bool          `json:"renewable,omitempty"`
	Issued        time.Time     `json:"issued"` // issued or last renewed
	// LeaseStart is when the lease was issued (renewals leave it).
	LeaseStart time.Time `json:"lease_start,omitzero"`
	// MaxTTL is the lease's max TTL as learned from a renewal Vault
	// granted short (Vault does not say it up front): the agent does not
	// send a renewal that could not extend the lease, and a new lease of
	// the same request keeps it.
	MaxTTL  time.Duration `json:"max_ttl,omitempty"`
	Expires time.Time     `json:"expires,omitzero"` // lease or certificate end
	Version string        `json:"version,omitempty"`
	Written time.Time     `json:"written"`
}

// file is the saved shape (agent-state.json).
type file struct {
	Token
	Secrets map[string]Secret `json:"secrets"`
}

// Name is the state file's name in the state directory.
const Name = "agent-state.json"

// Files is where the state is saved: the state tmpfs (a *tmpfs.Writer), or
// memory in tests.
type Files interface {
	Read(name string) ([]byte, error)
	Write(name string, data []byte, mode os.FileMode) (bool, error)
	Remove(name string) error
}

// Store is the agent's state, in memory and saved after every change. It
// owns its lock: every method may be called from any goroutine.
type Store struct {
	files Files

	mu sync.Mutex // held across the save, so saves land in the order of the changes
	st file
}

// Open is a Store saving to dir, which must be tmpfs or ramfs. It starts
// empty; Load reads what an earlier run saved.
func Open(dir string) (*Store, error) {
	w, err := tmpfs.New(dir)
	if err != nil {
		return nil, err
	}
	return New(w), nil
}

// New is an empty Store saving to f.
func New(f Files) *Store {
	return &Store{files: f, st: file{Secrets: map[string]Secret{}}}
}

// Load reads the saved state into the store. It reports whether there was
// any; on an error the store is left empty.
func (s *Store) Load() (bool, error) {
	b, err := s.files.Read(Name)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st = file{Secrets: map[string]Secret{}}
	if err != nil {
		return false, err
	}
	var st file
	if err := json.Unmarshal(b, &st); err != nil {
		return false, fmt.Errorf("%s: %w", Name, err)
	}
	if st.Secrets == nil {
		st.Secrets = map[string]Secret{}
	}
	s.st = st
	return true, nil
}

// Reset forgets everything in memory (the saved file is replaced at the
// next change).
func (s *Store) Reset() {
	s.mu.Lock()
	s.st = file{Secrets: map[string]Secret{}}
	s.mu.Unlock()
}

// Token is the saved token.
func (s *Store) Token() Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Token
}

// SetToken records the token and saves.
func (s *Store) SetToken(t Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Token = t
	return s.save()
}

// Secret is one secret's record; ok is false when there is none.
func (s *Store) Secret(name string) (Secret, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.st.Secrets[name]
	return ss, ok
}

// Secrets is a copy of every secret's record, by name.
func (s *Store) Secrets() map[string]Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.st.Secrets)
}

// UpdateSecret changes one secret's record with f (given the current record,
// or the zero Secret and false) and saves. The record f returns is stored
// and returned.
func (s *Store) UpdateSecret(name string, f func(old Secret, ok bool) Secret) (Secret, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.st.Secrets[name]
	ss := f(old, ok)
	s.st.Secrets[name] = ss
	return ss, s.save()
}

// UpdateSecrets changes every secret's record with f and saves.
func (s *Store) UpdateSecrets(f func(name string, ss Secret) Secret) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, ss := range s.st.Secrets {
		s.st.Secrets[n] = f(n, ss)
	}
	return s.save()
}

// Clear deletes the saved state (at shutdown, after revocation).
func (s *Store) Clear() error { return s.files.Remove(Name) }

// save writes the state; s.mu is held.
func (s *Store) save() error {
	b, err := json.Marshal(s.st)
	if err != nil {
		return fmt.Errorf("encode agent state: %w", err)
	}
	if _, err := s.files.Write(Name, b, 0o600); err != nil {
		return fmt.Errorf("save agent state: %w", err)
	}
	return nil
}
