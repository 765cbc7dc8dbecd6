package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/sidecar/clock"
	"github.com/ramvault/ramvault/sidecar/state"
	"github.com/ramvault/ramvault/sidecar/vault"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeVault is a vaultClient in memory: tokens with TTLs, leases with TTLs
// and max TTLs, all on the test's fake clock. Every call is recorded.
type fakeVault struct {
	clock *clock.Fake

	mu       sync.Mutex
	calls    []string             // "login", "renew-self", "renew-lease <id>", "get <path>", …
	token    string               // the client's current token
	tokens   map[string]fakeToken // valid tokens
	leases   map[string]fakeLease
	logins   int
	issued   int
	tokenTTL time.Duration // of a login
	renewTTL time.Duration // of a token renewal (0: tokenTTL)
	leaseTTL time.Duration // of a lease
	leaseMax time.Duration // a lease's max TTL from its issue
	kv       map[string]map[string]any
	fail     func(call string) error // an error to return instead of answering (nil: answer)
	jwtOK    func(jwt string) bool   // which service-account tokens log in (nil: any)
	hang     func(call string) bool  // calls that hang until their context ends
}

// hangs waits out ctx when call is to hang (f.mu is not held); a call
// whose context has ended fails, as over the network.
func (f *fakeVault) hangs(ctx context.Context, call string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	h := f.hang != nil && f.hang(call)
	f.mu.Unlock()
	if !h {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

type fakeToken struct{ expires time.Time }

type fakeLease struct {
	token           string
	issued, expires time.Time
	max             time.Time
}

func newFakeVault(clk *clock.Fake) *fakeVault {
	return &fakeVault{clock: clk, tokens: map[string]fakeToken{}, leases: map[string]fakeLease{}, kv: map[string]map[string]any{},
		tokenTTL: time.Hour, leaseTTL: time.Minute, leaseMax: time.Hour}
}

func denial() error {
	return &vault.ResponseError{Method: "PUT", Path: "/v1/x", StatusCode: http.StatusForbidden, Errors: []string{"permission denied"}}
}

// record notes a call; it returns the injected failure, if any. f.mu is held.
func (f *fakeVault) record(call string) error {
	f.calls = append(f.calls, call)
	if f.fail != nil {
		return f.fail(call)
	}
	return nil
}

// valid reports whether the current token is valid now. f.mu is held.
func (f *fakeVault) valid() bool {
	t, ok := f.tokens[f.token]
	return ok && f.clock.Now().Before(t.expires)
}

func (f *fakeVault) SetToken(tok string) {
	f.mu.Lock()
	f.token = tok
	f.mu.Unlock()
}

func (f *fakeVault) Login(_ context.Context, authPath, role, jwtFile string) (*vault.Auth, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("login"); err != nil {
		return nil, err
	}
	if f.jwtOK != nil {
		b, err := os.ReadFile(jwtFile)
		if err != nil {
			return nil, err
		}
		if !f.jwtOK(strings.TrimSpace(string(b))) {
			return nil, denial()
		}
	}
	f.logins++
	tok := fmt.Sprintf("s.token-%d", f.logins)
	f.tokens[tok] = fakeToken{expires: f.clock.Now().Add(f.tokenTTL)}
	return &vault.Auth{ClientToken: tok, LeaseDuration: int64(f.tokenTTL / time.Second), Renewable: true, Policies: []string{"app"}}, nil
}

func (f *fakeVault) LookupSelf(context.Context) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("lookup-self"); err != nil {
		return 0, err
	}
	if !f.valid() {
		return 0, denial()
	}
	return f.tokens[f.token].expires.Sub(f.clock.Now()), nil
}

func (f *fakeVault) RenewSelf(context.Context) (time.Duration, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("renew-self"); err != nil {
		return 0, false, err
	}
	if !f.valid() {
		return 0, false, denial()
	}
	ttl := f.renewTTL
	if ttl == 0 {
		ttl = f.tokenTTL
	}
	f.tokens[f.token] = fakeToken{expires: f.clock.Now().Add(ttl)}
	return ttl, true, nil
}

func (f *fakeVault) RevokeSelf(ctx context.Context) error {
	if err := f.hangs(ctx, "revoke-self"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("revoke-self"); err != nil {
		return err
	}
	f.revoke(f.token)
	return nil
}

func (f *fakeVault) RevokeToken(_ context.Context, tok string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("revoke-token " + tok); err != nil {
		return err
	}
	f.revoke(tok)
	return nil
}

// revoke ends a token and its leases. f.mu is held.
func (f *fakeVault) revoke(tok string) {
	delete(f.tokens, tok)
	for id, l := range f.leases {
		if l.token == tok {
			delete(f.leases, id)
		}
	}
}

func (f *fakeVault) Get(_ context.Context, method, path string, _ map[string]string) (*vault.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("get " + path); err != nil {
		return nil, err
	}
	if !f.valid() {
		return nil, denial()
	}
	if data, ok := f.kv[path]; ok {
		return &vault.Secret{Data: data, Version: "1"}, nil
	}
	f.issued++
	now := f.clock.Now()
	id := fmt.Sprintf("%s/lease-%d", path, f.issued)
	f.leases[id] = fakeLease{token: f.token, issued: now, expires: now.Add(f.leaseTTL), max: now.Add(f.leaseMax)}
	return &vault.Secret{Data: map[string]any{"username": fmt.Sprintf("u%d", f.issued), "password": fmt.Sprintf("planted-%d", f.issued)},
		LeaseID: id, LeaseDuration: f.leaseTTL, Renewable: true}, nil
}

func (f *fakeVault) RenewLease(_ context.Context, id string, increment time.Duration) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("renew-lease " + id); err != nil {
		return 0, err
	}
	if !f.valid() {
		return 0, denial()
	}
	l, ok := f.leases[id]
	now := f.clock.Now()
	if !ok || !now.Before(l.expires) {
		return 0, &vault.ResponseError{Method: "PUT", Path: "/v1/sys/leases/renew", StatusCode: http.StatusBadRequest, Errors: []string{"lease not found"}}
	}
	// As Vault does: never past the max TTL.
	l.expires = now.Add(increment)
	if l.expires.After(l.max) {
		l.expires = l.max
	}
	f.leases[id] = l
	return l.expires.Sub(now), nil
}

func (f *fakeVault) RevokeLease(ctx context.Context, id string) error {
	if err := f.hangs(ctx, "revoke-lease "+id); err != nil {
		f.mu.Lock()
		f.calls = append(f.calls, "revoke-lease "+id+" (timed out)")
		f.mu.Unlock()
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("revoke-lease " + id); err != nil {
		return err
	}
	delete(f.leases, id)
	return nil
}

// count is how many calls began with prefix.
func (f *fakeVault) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// memFiles is a directory in memory: the secrets directory and the state
// store's file.
type memFiles struct {
	mu     sync.Mutex
	files  map[string][]byte
	writes map[string]int
}

func newMemFiles() *memFiles { return &memFiles{files: map[string][]byte{}, writes: map[string]int{}} }

func (m *memFiles) Write(name string, data []byte, _ os.FileMode) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.files[name]; ok && string(old) == string(data) {
		return false, nil
	}
	m.files[name] = append([]byte(nil), data...)
	m.writes[name]++
	return true, nil
}

func (m *memFiles) Read(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		return nil, fmt.Errorf("read %s: %w", name, os.ErrNotExist)
	}
	return append([]byte(nil), b...), nil
}

func (m *memFiles) Exists(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.files[name]
	return ok
}

func (m *memFiles) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, name)
	return nil
}

func (m *memFiles) content(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return string(m.files[name])
}

func (m *memFiles) writesOf(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes[name]
}

// testAgent is an agent on a fake clock, a fake Vault and memory files.
type testAgent struct {
	*agent
	clock *clock.Fake
	vault *fakeVault
	files *memFiles
	state *memFiles
	logs  *syncBuffer
}

// syncBuffer is the agent's log, for a test to read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestAgent(t *testing.T, mode string, annotations map[string]string) *testAgent {
	t.Helper()
	sp, err := spec.Parse(annotations)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	cfg := config{Mode: mode, VaultAddr: "http://vault.invalid:8200", Role: "app", TokenFile: "/nonexistent/token",
		SecretsDir: "/secrets", StateDir: "/state", Spec: sp, Clock: clk}
	logs := &syncBuffer{}
	cfg.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	v := newFakeVault(clk)
	files, st := newMemFiles(), newMemFiles()
	a, err := assemble(cfg, v, files, state.New(st))
	if err != nil {
		t.Fatal(err)
	}
	// Whatever the test did: no secret value or Vault token in any log line.
	t.Cleanup(func() {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "planted-") || strings.Contains(line, "s.token-") || strings.Contains(line, "s.saved") {
				t.Errorf("a secret value or token in the log: %s", line)
			}
		}
	})
	return &testAgent{agent: a, clock: clk, vault: v, files: files, state: st, logs: logs}
}

// errBoom is a failure with no answer from Vault (transient).
var errBoom = errors.New("connection refused")
