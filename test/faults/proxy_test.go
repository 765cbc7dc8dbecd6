package faults

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

func TestEachModeDoesWhatItSaysAndIsLogged(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"data":{}}`)
	}))
	defer backend.Close()
	p := Start(t, "127.0.0.1", backend.URL)
	get := func(path string, timeout time.Duration) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.Addr()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}

	t.Run("forward reaches the backend", func(t *testing.T) {
		if resp, err := get("/v1/sys/health", time.Second); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
	})
	t.Run("status answers the code and Retry-After, only on its paths", func(t *testing.T) {
		p.Set(Mode{Kind: Status, Code: 429, RetryAfter: "3", Paths: []string{"database/"}})
		resp, err := get("/v1/database/creds/x", time.Second)
		if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
			t.Fatalf("%v %v", resp, err)
		}
		if resp, err := get("/v1/secret/data/x", time.Second); err != nil || resp.StatusCode != 200 {
			t.Fatalf("a path outside the fault: %v %v", resp, err)
		}
	})
	t.Run("close ends the connection without an answer", func(t *testing.T) {
		p.Set(Mode{Kind: Close})
		if _, err := get("/v1/x", time.Second); err == nil {
			t.Fatal("an answer")
		}
	})
	t.Run("refuse refuses connections, and forward listens again", func(t *testing.T) {
		p.Set(Mode{Kind: Refuse})
		_, err := get("/v1/x", time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("want connection refused, got %v", err)
		}
		p.Set(Mode{Kind: Forward})
		if resp, err := get("/v1/x", time.Second); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
	})
	t.Run("hang holds the request until the mode changes", func(t *testing.T) {
		p.Set(Mode{Kind: Hang})
		done := make(chan int, 1)
		go func() {
			resp, err := get("/v1/hung", 5*time.Second)
			if err != nil {
				done <- 0
				return
			}
			done <- resp.StatusCode
		}()
		select {
		case <-done:
			t.Fatal("answered while hanging")
		case <-time.After(300 * time.Millisecond):
		}
		p.Set(Mode{Kind: Forward})
		if code := <-done; code != 200 {
			t.Fatalf("released request: %d", code)
		}
	})
	t.Run("slow delays the answer", func(t *testing.T) {
		p.Set(Mode{Kind: Slow, Delay: 200 * time.Millisecond})
		start := time.Now()
		if _, err := get("/v1/slow", time.Second); err != nil || time.Since(start) < 200*time.Millisecond {
			t.Fatalf("%v after %v", err, time.Since(start))
		}
	})
	log := p.Requests()
	if len(log) < 7 {
		t.Fatalf("%d requests logged, want 7 or more: %+v", len(log), log)
	}
	if m := p.Matching("database/"); len(m) != 1 || m[0].Status != 429 || m[0].Fault != "status" {
		t.Errorf("the 429 is logged as %+v", m)
	}
	if m := p.Matching("hung"); len(m) != 1 || m[0].End.Sub(m[0].Start) < 300*time.Millisecond {
		t.Errorf("the hung request is logged as %+v", m)
	}
}

// A refusing proxy keeps its port: another proxy started meanwhile takes
// another one, and the first listens again on its own.
func TestARefusingProxyKeepsItsPort(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer backend.Close()
	a := Start(t, "127.0.0.1", backend.URL)
	if err := a.Set(Mode{Kind: Refuse}); err != nil {
		t.Fatal(err)
	}
	b := Start(t, "127.0.0.1", backend.URL)
	if a.Addr() == b.Addr() {
		t.Fatalf("both proxies on %s", a.Addr())
	}
	if err := a.Set(Mode{Kind: Forward}); err != nil {
		t.Fatalf("the first proxy could not listen again: %v", err)
	}
}
