package admission

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/internal/injecttest"
	"github.com/ramvault/ramvault/pkg/version"
)

// BenchmarkHandler is one Pod CREATE through the webhook handler, from
// request body to response, without TLS (make bench-webhook measures over
// HTTPS against vault-k8s and a floor).
func BenchmarkHandler(b *testing.B) {
	h := NewHandler(injector.Config{AgentImage: "localhost/ramvault-agent:dev", VaultAddr: "https://vault:8200", NativeSidecars: true}, HandlerOptions{})
	benchmarkHandler(b, h, injecttest.ReviewBody(b, injecttest.PodRequest("uid-1", injecttest.PodJSON(b, injecttest.Pod()), "shop")))
}

// BenchmarkHandlerApiserverPod is BenchmarkHandler for the Pod of make
// bench-webhook: a Deployment's Pod as the apiserver sends it, defaults and
// service-account volume applied (injector/testdata/bench/apiserver-pod.json).
func BenchmarkHandlerApiserverPod(b *testing.B) {
	src, err := os.ReadFile(filepath.Join(goldenDir, "bench", "apiserver-pod.json"))
	if err != nil {
		b.Fatal(err)
	}
	var raw bytes.Buffer
	if err := json.Compact(&raw, src); err != nil {
		b.Fatal(err)
	}
	// The defaults of `ramvault webhook`, with the flags the bench gives.
	cfg := injector.Config{AgentImage: "localhost/ramvault-agent:" + version.Version, VaultAddr: "https://vault.vault.svc:8200",
		NativeSidecars: true, Version: version.Version}
	h := NewHandler(cfg, HandlerOptions{})
	benchmarkHandler(b, h, injecttest.ReviewBody(b, injecttest.PodRequest("uid-1", raw.Bytes(), "shop")))
}

func benchmarkHandler(b *testing.B, h *Handler, body []byte) {
	b.ReportAllocs()
	for b.Loop() {
		w := injecttest.Post(h, body, "application/json")
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
		if !bytes.Contains(w.Body.Bytes(), []byte(`"patch"`)) {
			b.Fatal("not injected:", w.Body.String())
		}
	}
}
