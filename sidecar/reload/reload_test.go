package reload

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/sidecar/clock"
)

// The restart probe fails for RestartWindow after a rotation, whoever asks
// and however often: requests from the Pod network cannot use it up, and
// it keeps nothing per container name asked.
func TestRestartProbeFailsForAWindowThatCannotBeUsedUp(t *testing.T) {
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := New(Options{Clock: fc})
	if r.ShouldRestart() {
		t.Fatal("failed before any rotation")
	}
	r.Reload(context.Background(), []spec.Reload{{Kind: spec.ReloadRestart}})
	for i := 0; i < 20000; i++ { // an attacker polling it
		if !r.ShouldRestart() {
			t.Fatalf("request %d after the rotation passed: the failure was used up", i)
		}
	}
	fc.Advance(RestartWindow - time.Millisecond)
	if !r.ShouldRestart() {
		t.Fatal("passed before the window ended: the kubelet may not have probed yet")
	}
	fc.Advance(time.Millisecond)
	if r.ShouldRestart() {
		t.Fatal("still failing after the window: the restarted container would be restarted again")
	}
}

// An http reload that fails is tried again after 200ms, 400ms, … on the
// agent's clock (no real sleep), and its result reaches the observer.
func TestHTTPReloadRetriesOnTheClock(t *testing.T) {
	var posts atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			t.Errorf("method %s", r.Method)
		}
		if posts.Add(1) < 3 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(app.Close)
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	var results []error
	r := New(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: clk,
		Observe: func(kind string, err error) {
			if kind != "http" {
				t.Errorf("kind %q", kind)
			}
			results = append(results, err)
		}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Reload(context.Background(), []spec.Reload{{Kind: spec.ReloadHTTP, URL: app.URL}, {Kind: spec.ReloadHTTP, URL: app.URL}})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var waits []time.Duration
	for range 2 {
		if !clk.BlockUntil(ctx, 1) {
			t.Fatal("the reload never waited")
		}
		waits = append(waits, clk.AdvanceToNext())
	}
	<-done
	if want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}; len(waits) != 2 || waits[0] != want[0] || waits[1] != want[1] {
		t.Errorf("waits %v, want %v", waits, want)
	}
	if posts.Load() != 3 {
		t.Errorf("%d POSTs, want 3 (the same reload twice is done once)", posts.Load())
	}
	if len(results) != 1 || results[0] != nil {
		t.Errorf("observed %v, want one success", results)
	}
}
