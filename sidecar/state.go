package sidecar

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/ramvault/ramvault/pkg/tmpfs"
)

// state is what the init container hands to the sidecar (and a restarted
// sidecar to itself) on the agent-only state tmpfs: the Vault token and the
// leases, so a Pod holds one token and one lease per dynamic secret.
type state struct {
	Token        string                 `json:"token"`
	TokenExpires time.Time              `json:"token_expires"`
	Renewable    bool                   `json:"token_renewable"`
	Secrets      map[string]secretState `json:"secrets"`
}

// secretState is one secret's lease and schedule; never its value.
type secretState struct {
	Path          string        `json:"path"`
	LeaseID       string        `json:"lease_id,omitempty"`
	LeaseDuration time.Duration `json:"lease_duration,omitempty"`
	Renewable     bool          `json:"renewable,omitempty"`
	Issued        time.Time     `json:"issued"`
	Expires       time.Time     `json:"expires,omitzero"` // lease or certificate end
	Version       string        `json:"version,omitempty"`
	Written       time.Time     `json:"written"`
}

const stateFile = "agent-state.json"

type stateStore struct {
	w    *tmpfs.Writer
	path string
}

func newStateStore(dir string) (*stateStore, error) {
	w, err := tmpfs.New(dir)
	if err != nil {
		return nil, err
	}
	return &stateStore{w: w, path: filepath.Join(dir, stateFile)}, nil
}

func (s *stateStore) load() (*state, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	if st.Secrets == nil {
		st.Secrets = map[string]secretState{}
	}
	return &st, nil
}

func (s *stateStore) save(st *state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = s.w.Write(stateFile, b, 0o600)
	return err
}

func (s *stateStore) clear() error { return s.w.Remove(stateFile) }
