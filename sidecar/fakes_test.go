package sidecar

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/pkg/tmpfs"
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
	tokenTTL time.Duration             // of a login
	renewTTL time.Duration             // of a token renewal (0: tokenTTL)
	leaseTTL time.Duration             // of a lease
	leaseMax time.Duration             // a lease's max TTL from its issue
	kv       map[string]map[string]any // KV v1 (and "v2 without a mount" as before): path → data
	kv2      map[string]fakeKV2        // KV v2 on the mount "secret/": logical path (secret/app) → versions
	pki      *fakePKI                  // answers writes to pki/issue/<role>
	pkiTTL   time.Duration             // of an issued certificate
	fail     func(call string) error   // an error to return instead of answering (nil: answer)
	jwtOK    func(jwt string) bool     // which service-account tokens log in (nil: any)
	hang     func(call string) bool    // calls that hang until their context ends
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
		kv2: map[string]fakeKV2{}, tokenTTL: time.Hour, leaseTTL: time.Minute, leaseMax: time.Hour, pkiTTL: time.Hour}
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

func (f *fakeVault) Get(_ context.Context, method, path string, params map[string]string) (*vault.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(strings.TrimSpace("get " + path + " " + paramString(params))); err != nil {
		return nil, err
	}
	if !f.valid() {
		return nil, denial()
	}
	if method == "write" && strings.HasPrefix(path, "pki/issue/") {
		return f.issueCert(params)
	}
	if data, ok := f.kv[path]; ok {
		return &vault.Secret{Data: data, Raw: data, Version: "1"}, nil
	}
	if logical, ok := strings.CutPrefix(f.readPathLocked(path), kv2Mount+"data/"); ok {
		versions := f.kv2[kv2Mount+logical]
		if len(versions) == 0 {
			return nil, fmt.Errorf("%s: %w", path, vault.ErrNotFound)
		}
		n := len(versions)
		data := versions[n-1]
		raw := map[string]any{"data": data, "metadata": map[string]any{"version": json.Number(strconv.Itoa(n)), "destroyed": false}}
		return &vault.Secret{Data: data, Raw: raw, Version: strconv.Itoa(n)}, nil
	}
	f.issued++
	now := f.clock.Now()
	id := fmt.Sprintf("%s/lease-%d", path, f.issued)
	f.leases[id] = fakeLease{token: f.token, issued: now, expires: now.Add(f.leaseTTL), max: now.Add(f.leaseMax)}
	data := map[string]any{"username": fmt.Sprintf("u%d", f.issued), "password": fmt.Sprintf("planted-%d", f.issued)}
	return &vault.Secret{Data: data, Raw: data, LeaseID: id, LeaseDuration: f.leaseTTL, Renewable: true}, nil
}

func paramString(p map[string]string) string {
	if len(p) == 0 {
		return ""
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// kv2Mount is the fake's one KV v2 mount.
const kv2Mount = "secret/"

// fakeKV2 is a KV v2 secret's versions, the latest last.
type fakeKV2 []map[string]any

// putKV2 writes a new version of a KV v2 secret (path without data/).
func (f *fakeVault) putKV2(path string, data map[string]any) {
	f.mu.Lock()
	f.kv2[path] = append(f.kv2[path], data)
	f.mu.Unlock()
}

func (f *fakeVault) ReadPath(_ context.Context, path string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("mount " + path); err != nil {
		return "", err
	}
	return f.readPathLocked(path), nil
}

// readPathLocked rewrites a read on the KV v2 mount as the client does. f.mu is held.
func (f *fakeVault) readPathLocked(path string) string {
	rel, ok := strings.CutPrefix(path, kv2Mount)
	if !ok || len(f.kv2) == 0 || strings.HasPrefix(rel, "data/") {
		return path
	}
	return kv2Mount + "data/" + rel
}

// fakePKI is a CA that issues real certificates (ECDSA P-256: quick).
type fakePKI struct {
	key    *ecdsa.PrivateKey
	cert   *x509.Certificate
	pem    string
	serial int64
}

func newFakePKI(t *testing.T, now time.Time) *fakePKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &fakePKI{key: key, cert: cert, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), serial: 1}
}

// issueCert answers pki/issue/<role> as Vault does: certificate,
// private_key, issuing_ca, ca_chain, serial_number, expiration. f.mu is held.
func (f *fakeVault) issueCert(params map[string]string) (*vault.Secret, error) {
	if f.pki == nil {
		return nil, &vault.ResponseError{Method: "PUT", Path: "/v1/pki/issue", StatusCode: http.StatusNotFound, Errors: []string{"no handler"}}
	}
	f.issued++
	f.pki.serial++
	now := f.clock.Now()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(f.pkiTTL).Truncate(time.Second)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(f.pki.serial), Subject: pkix.Name{CommonName: params["common_name"]}, DNSNames: []string{params["common_name"]},
		NotBefore: now.Add(-time.Minute), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, f.pki.cert, &key.PublicKey, f.pki.key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	serial := fmt.Sprintf("%02x", f.pki.serial)
	data := map[string]any{
		"certificate":   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"private_key":   string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})),
		"issuing_ca":    f.pki.pem,
		"ca_chain":      []any{f.pki.pem},
		"serial_number": serial,
		"expiration":    json.Number(strconv.FormatInt(notAfter.Unix(), 10)),
	}
	return &vault.Secret{Data: data, Raw: data, Version: serial, NotAfter: notAfter}, nil
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
	mu      sync.Mutex
	files   map[string][]byte
	writes  map[string]int
	failSet func([]tmpfs.File) error // a set write to fail (nil: none)
	dirs    map[string]int           // MkdirAll calls, by directory
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

func (m *memFiles) WriteSet(files []tmpfs.File) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failSet != nil {
		if err := m.failSet(files); err != nil {
			return nil, err
		}
	}
	var out []string
	for _, f := range files {
		if old, ok := m.files[f.Name]; ok && string(old) == string(f.Data) {
			continue
		}
		m.files[f.Name] = append([]byte(nil), f.Data...)
		m.writes[f.Name]++
		out = append(out, f.Name)
	}
	return out, nil
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

func (m *memFiles) MkdirAll(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dirs == nil {
		m.dirs = map[string]int{}
	}
	m.dirs[name]++
	return nil
}

// RemoveStaged: memFiles stages nothing (a write is all or nothing).
func (m *memFiles) RemoveStaged() ([]string, error) { return nil, nil }

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
	v.pki = newFakePKI(t, clk.Now())
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
