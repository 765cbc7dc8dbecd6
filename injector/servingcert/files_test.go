package servingcert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeKeyPair writes a fresh serving certificate for host into dir.
func writeKeyPair(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	p, _, err := testIssuer().next(&pki{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), p.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), p.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p.serving.Leaf
}

// TestCertFilesFollowAKubeletSecretVolume updates the files the way the
// kubelet updates a mounted Secret: a new timestamped directory, and the
// ..data symlink swapped to it by a rename.
func TestCertFilesFollowAKubeletSecretVolume(t *testing.T) {
	dir := t.TempDir()
	first := writeKeyPair(t, filepath.Join(dir, "..2030_01_01_00_00_00.1"))
	if err := os.Symlink("..2030_01_01_00_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	var logs syncBuffer
	f, err := NewFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	servedSerial := func() string {
		c, err := f.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.String()
	}
	if servedSerial() != first.SerialNumber.String() {
		t.Fatal("not serving the first certificate")
	}
	waitServing := func(want *x509.Certificate) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for servedSerial() != want.SerialNumber.String() {
			if time.Now().After(deadline) {
				t.Fatalf("still serving %s after 10s, want %s", servedSerial(), want.SerialNumber)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	second := writeKeyPair(t, filepath.Join(dir, "..2030_01_02_00_00_00.2"))
	if err := os.Symlink("..2030_01_02_00_00_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2030_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitServing(second)

	// A key that does not match leaves the old pair in use.
	if err := os.WriteFile(filepath.Join(dir, "..2030_01_02_00_00_00.2", "tls.key"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	third := writeKeyPair(t, filepath.Join(dir, "..2030_01_03_00_00_00.3"))
	if err := os.Symlink("..2030_01_03_00_00_00.3", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "previous one stays in use"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the broken pair was not tried:\n%s", logs.String())
		}
	}
	if servedSerial() != second.SerialNumber.String() {
		t.Error("a broken key pair replaced the one in use")
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitServing(third)
}

func TestCertFilesReloadOnlyForTheirOwnFiles(t *testing.T) {
	f := &Files{certFile: "/tls/tls.crt", keyFile: "./key/tls.key"}
	for name, want := range map[string]bool{
		"/tls/tls.crt":                 true,
		"key/tls.key":                  true,
		"/tls/..data":                  true,
		"/tls/..data_tmp":              true,
		"/tls/..2030_01_01_00_00_00.1": true,
		"/tls/webhook.log":             false,
		"/tls/tls.crt.swp":             false,
		"key/tls.crt":                  false,
		"/elsewhere/tls.crt":           false,
	} {
		if got := f.concerns(name); got != want {
			t.Errorf("a change to %s concerns the pair: %v, want %v", name, got, want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger in another goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
