package cli

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// While draining, every answer closes its connection, so the apiserver
// does not write its next review on it; before, connections are kept.
func TestAnswersCloseTheirConnectionWhileDraining(t *testing.T) {
	var draining atomic.Bool
	srv := httptest.NewServer(closeWhile(&draining, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})))
	defer srv.Close()
	get := func() *http.Response {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.Close {
		t.Fatal("an answer before draining closes its connection")
	}
	draining.Store(true)
	if resp := get(); !resp.Close { // the client's reading of Connection: close
		t.Fatal("an answer while draining keeps its connection")
	}
}

// The apiserver must be the side that closes an idle connection: it does
// not retry a review written on one the webhook has just closed.
func TestTheWebhookOutlastsTheApiserversIdleConnections(t *testing.T) {
	client := http.DefaultTransport.(*http.Transport).IdleConnTimeout // what client-go's transports take
	if webhookIdleTimeout <= client+30*time.Second {
		t.Errorf("webhook idle timeout %s, the apiserver's %s: want the webhook's well longer", webhookIdleTimeout, client)
	}
}
