package admission

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/internal/injecttest"
)

// FuzzDecodeAdmissionReview feeds the webhook arbitrary request bodies.
// Decoding never panics; a body it takes is answered 200 (a 500 would be a
// recovered panic) with the request's UID, and a patch applies to the
// object sent and gives a Pod. Seeds: reviews of the golden Pods (of injector.Inject), beside the
// corpus in testdata/fuzz/FuzzDecodeAdmissionReview.
func FuzzDecodeAdmissionReview(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join(goldenDir, "*.yaml"))
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			continue
		}
		docs, err := injecttest.Documents(bytes.NewReader(data))
		if err != nil {
			continue
		}
		for _, raw := range docs {
			f.Add(injecttest.ReviewBody(f, injecttest.PodRequest("seed", raw, "shop")))
		}
	}
	cfg := injector.Config{AgentImage: "agent", VaultAddr: "https://vault:8200", NativeSidecars: true, Version: "fuzz"}
	f.Fuzz(func(t *testing.T, body []byte) {
		review, err := decodeAdmissionReview(body)
		if err != nil {
			return
		}
		w := injecttest.Post(NewHandler(cfg, HandlerOptions{}), body, "application/json")
		if w.Code != http.StatusOK {
			t.Fatalf("status %d for a review decoded: %s", w.Code, w.Body)
		}
		resp := injecttest.Answer(t, w)
		if resp.UID != review.Request.UID {
			t.Fatalf("response UID %q, request %q", resp.UID, review.Request.UID)
		}
		if resp.Patch == nil {
			return
		}
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("decode patch: %v", err)
		}
		patched, err := p.Apply(review.Request.Object.Raw)
		if err != nil {
			t.Fatalf("the patch does not apply to the object sent: %v", err)
		}
		var pod corev1.Pod
		if err := json.Unmarshal(patched, &pod); err != nil || pod.Annotations[injector.StatusAnnotation] == "" {
			t.Fatalf("the patched object is no injected Pod (%v)", err)
		}
		// A Pod of known fields only gets the patch of patch.Strict, built
		// from the typed Pod: applied to the document sent, it must give
		// what Inject gives.
		var sent corev1.Pod
		if strict, err := kjson.UnmarshalStrict(review.Request.Object.Raw, &sent); err != nil || len(strict) > 0 {
			return
		}
		sent.Namespace = cmp.Or(sent.Namespace, review.Request.Namespace)
		want, err := injector.Inject(&sent, cfg)
		if err != nil {
			t.Fatalf("the webhook injected a Pod Inject denies: %v", err)
		}
		pod.Namespace = cmp.Or(pod.Namespace, review.Request.Namespace)
		if !apiequality.Semantic.DeepEqual(&pod, want) {
			a, _ := yaml.Marshal(want)
			b, _ := yaml.Marshal(&pod)
			t.Fatalf("the patched Pod differs from Inject's.\nInject:\n%s\npatched:\n%s\npatch: %s", a, b, resp.Patch)
		}
	})
}
