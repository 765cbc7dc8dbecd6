package injector

import (
	"encoding/json"
	"fmt"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	kjson "sigs.k8s.io/json"
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
	return diff(a, b)
}

func diff(a, b []byte) ([]byte, error) {
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		return nil, fmt.Errorf("diff pods: %w", err)
	}
	if ops == nil {
		ops = []jsonpatch.Operation{}
	}
	return json.Marshal(ops)
}

// PatchRaw is Patch for raw, the Pod as the apiserver sent it, of which
// original is the decoded form (its namespace perhaps filled in). The
// change from original to mutated is merged into raw as a strategic merge
// patch (lists merge by their keys: container and volume names, mount
// paths), and raw is diffed with the result. So the operations apply to raw
// as it is, and fields of raw the Pod type does not know (an apiserver newer
// than this injector) stay on the container they belong to, where a diff of
// the typed Pods would shift them onto the agent inserted before it. Where
// the merge cannot say it (lists with duplicate keys, which the apiserver
// rejects anyway), it is Patch.
func PatchRaw(raw []byte, original, mutated *corev1.Pod) ([]byte, error) {
	merged, err := mergeTemplate(raw, original, mutated)
	if err != nil {
		return Patch(original, mutated)
	}
	check := &corev1.Pod{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(merged, check); err != nil {
		return Patch(original, mutated)
	}
	if check.Namespace == "" {
		check.Namespace = original.Namespace
	}
	if !apiequality.Semantic.DeepEqual(check, mutated) {
		return Patch(original, mutated)
	}
	return diff(raw, merged)
}

// patchSent diffs the Pod as the apiserver sent it with the mutated Pod. It
// is right only when raw holds no field the Pod type does not know (the
// caller checked, with the decode it did anyway): then the typed form loses
// nothing of raw, and the few operations that merely restate raw in its
// typed form (an empty resources object, say) change nothing the apiserver
// stores. Cheaper than PatchRaw by a strategic merge and a decode.
func patchSent(raw []byte, mutated *corev1.Pod, sentNamespace string) ([]byte, error) {
	// The namespace the webhook filled in from the request is not the
	// apiserver's to be told.
	m := *mutated
	m.Namespace = sentNamespace
	b, err := json.Marshal(&m)
	if err != nil {
		return nil, err
	}
	return diff(raw, b)
}
