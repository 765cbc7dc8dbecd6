package sidecar

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitRotated(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no signal after %s", what)
	}
}

// The kubelet's atomic writer: files live in a timestamped directory,
// ..data points at it, and the token is a symlink through ..data; a
// rotation writes a new directory and renames a new ..data over the old.
func TestTokenWatchSeesAKubeletRotation(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	writeGen := func(gen, token string) {
		must(os.Mkdir(filepath.Join(dir, gen), 0o755))
		must(os.WriteFile(filepath.Join(dir, gen, "token"), []byte(token), 0o644))
		must(os.Symlink(gen, filepath.Join(dir, "..data_tmp")))
		must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	}
	writeGen("..2025_01_01_00_00_00.1", "one")
	must(os.Symlink("..data/token", filepath.Join(dir, "token")))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newRotation()
	watchTokenFile(ctx, filepath.Join(dir, "token"), r, quietLog())
	ch := r.wait()
	writeGen("..2025_01_01_00_48_00.2", "two")
	waitRotated(t, ch, "the ..data swap")
	if b, _ := os.ReadFile(filepath.Join(dir, "token")); string(b) != "two" {
		t.Fatalf("token reads %q", b)
	}
}

func TestTokenWatchSeesAFileReplacedOrRewritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sa-token")
	if err := os.WriteFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newRotation()
	watchTokenFile(ctx, path, r, quietLog())

	ch := r.wait()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("a signal for another file in the directory")
	case <-time.After(200 * time.Millisecond):
	}

	ch = r.wait()
	if err := os.WriteFile(path+".new", []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	waitRotated(t, ch, "a rename over the file")

	ch = r.wait()
	if err := os.WriteFile(path, []byte("three"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitRotated(t, ch, "a rewrite in place")

}

// memDir is a directory on tmpfs (the agent refuses any other), or skips.
func memDir(t *testing.T) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Type != 0x01021994 {
		t.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "ramvault-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// A login refused because the service-account token is no longer valid is
// retried as soon as the kubelet writes a new one, not after the backoff.
func TestLoginBackoffEndsWhenTheTokenFileChanges(t *testing.T) {
	f, srv := newFakeVault(t)
	var logins atomic.Int32
	f.handlers["PUT /v1/auth/kubernetes/login"] = func(w http.ResponseWriter, _ *http.Request, body map[string]any) {
		logins.Add(1)
		if body["jwt"] != "fresh" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"errors":["permission denied"]}`)
			return
		}
		_, _ = io.WriteString(w, `{"auth":{"client_token":"s.1","lease_duration":3600,"renewable":true}}`)
	}
	root := memDir(t)
	for _, d := range []string{"secrets", "state", "token"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	tokenFile := filepath.Join(root, "token", "token")
	if err := os.WriteFile(tokenFile, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := spec.Parse(map[string]string{"ramvault.io/secret-a": "secret/data/a"})
	if err != nil {
		t.Fatal(err)
	}
	backoffs := make(chan time.Duration, 10)
	a, err := New(Config{Mode: ModeInit, VaultAddr: srv.URL, Role: "app", TokenFile: tokenFile,
		SecretsDir: filepath.Join(root, "secrets"), StateDir: filepath.Join(root, "state"), Spec: sp, Log: quietLog(),
		// The backoff never ends on its own: only the new token can end it.
		After: func(d time.Duration) <-chan time.Time { backoffs <- d; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	watchTokenFile(ctx, tokenFile, a.rotated, a.log)
	done := make(chan error, 1)
	go func() { done <- retryLogin(ctx, a, "log in", a.ensureToken) }()
	<-backoffs // the first login failed and the agent waits
	if err := os.WriteFile(tokenFile+".new", []byte("fresh"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tokenFile+".new", tokenFile); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("login: %v", err)
	}
	if n := logins.Load(); n != 2 {
		t.Errorf("%d logins, want 2", n)
	}
	if a.currentToken() != "s.1" {
		t.Error("the new Vault token is not in use")
	}
}
