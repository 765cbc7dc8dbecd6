package injector

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/pkg/spec"
)

// FuzzInject feeds Inject arbitrary Pods. It must never panic nor touch its
// input; it either denies with a non-empty list of "subject: message" errors
// or returns a Pod that passes checkInjection. The golden inputs are seeds,
// beside the corpus in testdata/fuzz/FuzzInject.
func FuzzInject(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, in := range inputs {
		if data, err := os.ReadFile(in); err == nil {
			f.Add(data, true)
		}
	}
	f.Fuzz(func(t *testing.T, manifest []byte, native bool) {
		var pod corev1.Pod
		if err := yaml.Unmarshal(manifest, &pod); err != nil {
			return
		}
		before := pod.DeepCopy()
		cfg := Config{AgentImage: "agent", VaultAddr: "https://vault:8200", NativeSidecars: native, Version: "fuzz"}
		out, err := Inject(&pod, cfg)
		if !apiequality.Semantic.DeepEqual(before, &pod) {
			t.Fatal("Inject changed its input")
		}
		if err != nil {
			var list spec.ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %v (%T): want a non-empty spec.ErrorList", err, err)
			}
			for _, e := range list {
				if e.Field == "" || e.Message == "" {
					t.Fatalf("error without subject or message: %+v", e)
				}
			}
			return
		}
		checkInjection(t, &pod, out, cfg)
	})
}

// FuzzDecodeAdmissionReview feeds the webhook arbitrary request bodies.
// Decoding never panics; a body it takes is answered 200 (a 500 would be a
// recovered panic) with the request's UID, and a patch applies to the
// object sent and gives a Pod. Seeds: reviews of the golden Pods, beside the
// corpus in testdata/fuzz/FuzzDecodeAdmissionReview.
func FuzzDecodeAdmissionReview(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			continue
		}
		docs, err := readDocuments(bytes.NewReader(data))
		if err != nil {
			continue
		}
		for _, raw := range docs {
			f.Add(reviewBody(f, podRequest(f, "seed", raw, "shop")))
		}
	}
	cfg := Config{AgentImage: "agent", VaultAddr: "https://vault:8200", NativeSidecars: true, Version: "fuzz"}
	f.Fuzz(func(t *testing.T, body []byte) {
		review, err := decodeAdmissionReview(body)
		if err != nil {
			return
		}
		w := post(NewHandler(cfg, HandlerOptions{}), body, "application/json")
		if w.Code != http.StatusOK {
			t.Fatalf("status %d for a review decoded: %s", w.Code, w.Body)
		}
		resp := answer(t, w)
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
		if err := json.Unmarshal(patched, &pod); err != nil || pod.Annotations[StatusAnnotation] == "" {
			t.Fatalf("the patched object is no injected Pod (%v)", err)
		}
		// A Pod of known fields only gets the patch of patchStrict, built
		// from the typed Pod: applied to the document sent, it must give
		// what Inject gives.
		var sent corev1.Pod
		if strict, err := kjson.UnmarshalStrict(review.Request.Object.Raw, &sent); err != nil || len(strict) > 0 {
			return
		}
		sent.Namespace = cmp.Or(sent.Namespace, review.Request.Namespace)
		want, err := Inject(&sent, cfg)
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
