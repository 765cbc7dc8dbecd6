package injector_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/internal/injecttest"
	"github.com/ramvault/ramvault/pkg/spec"
)

// FuzzInject feeds Inject arbitrary Pods. It must never panic nor touch its
// input; it either denies with a non-empty list of "subject: message" errors
// or returns a Pod that passes injecttest.CheckInjection (whose patches,
// both, reproduce it). The golden inputs are seeds,
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
		cfg := injector.Config{AgentImage: "agent", VaultAddr: "https://vault:8200", NativeSidecars: native, Version: "fuzz"}
		out, err := injector.Inject(&pod, cfg)
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
		injecttest.CheckInjection(t, &pod, out, cfg)
	})
}
