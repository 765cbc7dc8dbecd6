package sidecar

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ramvault/ramvault/pkg/spec"
)

func TestAwaitStartup(t *testing.T) {
	var asks atomic.Int32
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/startup" {
			http.NotFound(w, r)
			return
		}
		if asks.Add(1) < 3 {
			http.Error(w, "secrets not written yet", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer agent.Close()
	addr := strings.TrimPrefix(agent.URL, "http://")
	var stderr bytes.Buffer
	if code := Main(context.Background(), []string{spec.AwaitStartup, "--addr", addr, "--interval", "1ms"}, &stderr); code != 0 || asks.Load() != 3 {
		t.Fatalf("exit %d after %d asks (%s): want 0 after the third", code, asks.Load(), stderr.String())
	}

	// Never ready: exit 1, relaying the agent's last answer.
	asks.Store(-1 << 30)
	stderr.Reset()
	if code := Main(context.Background(), []string{spec.AwaitStartup, "--addr", addr, "--interval", "1ms", "--timeout", "50ms"}, &stderr); code != 1 {
		t.Fatalf("exit %d: want 1", code)
	}
	if msg := stderr.String(); !strings.Contains(msg, "secrets not written within 50ms") || !strings.Contains(msg, "503 Service Unavailable: secrets not written yet") {
		t.Fatalf("message %q: want the timeout and the agent's last answer", msg)
	}

	// Nothing listening yet (the hook may run before the agent listens): keep asking.
	stderr.Reset()
	if code := Main(context.Background(), []string{spec.AwaitStartup, "--addr", "127.0.0.1:1", "--interval", "1ms", "--timeout", "30ms"}, &stderr); code != 1 || !strings.Contains(stderr.String(), "connect") {
		t.Fatalf("exit %d, %q: want 1 and the connection error", code, stderr.String())
	}

	for _, args := range [][]string{{"--timeout", "0s"}, {"extra"}, {"--interval", "-1s"}} {
		if code := Main(context.Background(), append([]string{spec.AwaitStartup}, args...), &stderr); code != 2 {
			t.Fatalf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestSleep(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main(context.Background(), []string{spec.AgentSleep, "10ms"}, &stderr); code != 0 {
		t.Fatalf("exit %d (%s)", code, stderr.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if code := Main(ctx, []string{spec.AgentSleep, "1h"}, &stderr); code != 0 {
		t.Fatalf("cancelled: exit %d", code)
	}
	for _, args := range [][]string{{}, {"5"}, {"-1s"}, {"1s", "2s"}} {
		if code := Main(context.Background(), append([]string{spec.AgentSleep}, args...), &stderr); code != 2 {
			t.Fatalf("%q: exit %d, want 2", args, code)
		}
	}
}
