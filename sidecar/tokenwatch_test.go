package sidecar

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// startWatch watches path until ctx ends (the watch is set up when it returns).
func startWatch(ctx context.Context, t *testing.T, path string, r *rotation) {
	t.Helper()
	tw := watchTokenFile(path, quietLog())
	if tw == nil {
		t.Fatal("no watch")
	}
	done := make(chan struct{})
	go func() { defer close(done); tw.run(ctx, r) }()
	t.Cleanup(func() { <-done })
}

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
	startWatch(ctx, t, filepath.Join(dir, "token"), r)
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
	startWatch(ctx, t, path, r)

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

// A login refused because the service-account token is no longer valid is
// retried as soon as the kubelet writes a new one, not after the backoff.
func TestLoginBackoffEndsWhenTheTokenFileChanges(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	ta := newTestAgent(t, modeInit, map[string]string{"ramvault.io/secret-a": "secret/data/a"})
	ta.cfg.TokenFile, ta.token.cfg.TokenFile = tokenFile, tokenFile
	ta.vault.jwtOK = func(jwt string) bool { return jwt == "fresh" }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	startWatch(ctx, t, tokenFile, ta.rotated)
	done := make(chan error, 1)
	// The backoff never ends on its own (the clock never moves): only the
	// new token can end it.
	go func() { done <- ta.retry.do(ctx, "log in", retryOpts{login: true}, ta.token.ensure) }()
	if !ta.clock.BlockUntil(ctx, 1) { // the first login failed and the agent waits
		t.Fatal("the agent never backed off")
	}
	if err := os.WriteFile(tokenFile+".new", []byte("fresh"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tokenFile+".new", tokenFile); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("login: %v", err)
	}
	if n := ta.vault.count("login"); n != 2 {
		t.Errorf("%d logins, want 2", n)
	}
	if ta.token.current() != "s.token-1" {
		t.Error("the new Vault token is not in use")
	}
}
