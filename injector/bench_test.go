package injector

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkHandler is one Pod CREATE through the webhook handler, from
// request body to response, without TLS (make bench-webhook measures over
// HTTPS against vault-k8s and a floor).
func BenchmarkHandler(b *testing.B) {
	h := NewHandler(Config{AgentImage: "localhost/ramvault-agent:dev", VaultAddr: "https://vault:8200", NativeSidecars: true}, HandlerOptions{})
	body := reviewBody(b, podRequest(b, "uid-1", podJSON(b, testPod()), "shop"))
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/mutate", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
