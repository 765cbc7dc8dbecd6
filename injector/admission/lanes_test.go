package admission

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ramvault/ramvault/injector/internal/injecttest"
)

// A burst of large reviews fills only the large lane: a real Pod's small
// review still goes at once, and a large one waits only until its request
// ends.
func TestLargeReviewsCannotHoldUpSmallOnes(t *testing.T) {
	l := newLanes()
	for i := 0; i < largeInFlight; i++ {
		if _, ok := l.of(1 << 20).enter(context.Background()); !ok {
			t.Fatal("the large lane refused below its capacity")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok := l.of(1 << 20).enter(ctx); ok {
		t.Fatal("a third large review got in while two were in flight")
	}
	if _, ok := l.of(-1).enter(ctx); ok {
		t.Fatal("a review of unknown length took the small lane")
	}
	release, ok := l.of(4 << 10).enter(context.Background())
	if !ok {
		t.Fatal("a small review waited on the large ones")
	}
	release()
}

// Clients that send their body a few bytes at a time (as many as the small
// lane has places) lose their places once the body timeout is up: a real
// Pod's review, sent after them, is answered, and they get a 408.
func TestTrickledBodiesCannotHoldTheSmallLane(t *testing.T) {
	h := NewHandler(injecttest.Config(), HandlerOptions{BodyTimeout: 300 * time.Millisecond})
	srv := httptest.NewServer(h)
	defer srv.Close()
	stop := make(chan struct{})
	defer close(stop)
	answers := make(chan string, smallInFlight)
	for i := 0; i < smallInFlight; i++ {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{")
		go func() {
			// A byte every 50 ms, until the server answers or the test ends.
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
						if _, err := c.Write([]byte(" ")); err != nil {
							return
						}
					}
				}
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				answers <- err.Error()
				return
			}
			answers <- resp.Status
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(h.lanes.small.slots) < smallInFlight {
		if time.Now().After(deadline) {
			t.Fatalf("the trickling clients hold %d places of %d", len(h.lanes.small.slots), smallInFlight)
		}
		time.Sleep(time.Millisecond)
	}
	body := injecttest.ReviewBody(t, injecttest.PodRequest("uid-real", injecttest.PodJSON(t, injecttest.Pod()), "shop"))
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post(srv.URL+"/mutate", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("a real review behind %d trickling clients: %v", smallInFlight, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a real review behind the trickling clients: %s, want 200", resp.Status)
	}
	for i := 0; i < smallInFlight; i++ {
		if a := <-answers; !strings.HasPrefix(a, "408") {
			t.Fatalf("a trickling client got %q, want 408", a)
		}
	}
}
