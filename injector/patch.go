package injector

import (
	"encoding/json"
	"fmt"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// Patch is the JSONPatch (RFC 6902) that turns original into mutated, as the
// webhook answers it: both Pods are marshalled and diffed, no operation is
// written by hand. No change gives an empty array.
func Patch(original, mutated *corev1.Pod) ([]byte, error) {
	a, err := json.Marshal(original)
	if err != nil {
		return nil, fmt.Errorf("marshal original pod: %w", err)
	}
	b, err := json.Marshal(mutated)
	if err != nil {
		return nil, fmt.Errorf("marshal mutated pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		return nil, fmt.Errorf("diff pods: %w", err)
	}
	if ops == nil {
		ops = []jsonpatch.Operation{}
	}
	return json.Marshal(ops)
}
