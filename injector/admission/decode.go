package admission

import (
	jsonv2 "github.com/go-json-experiment/json"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
)

// The webhook decodes two documents per request: the AdmissionReview and the
// Pod in it. Both go first through the JSON v2 decoder (the module that is
// becoming encoding/json/v2), which reads a Pod in about half the time and
// allocations of sigs.k8s.io/json, the apiserver's own decoder, and checks
// what strictness needs in the same pass: names matched case-sensitively
// (as the apiserver does), none twice, none unknown. A document it refuses
// for any reason — malformed, an unknown or duplicated field, invalid UTF-8 —
// is decoded again by sigs.k8s.io/json, whose result and error messages are
// then the answer; so the fast path only ever accepts what the apiserver's
// decoder accepts strictly, with the same result (FuzzDecodeAdmittedPod holds it to
// that), and everything else behaves as before.

var (
	// reviewOptions: unknown fields of a review are ignored, as by the
	// apiserver's decoder (a newer apiserver may send more).
	reviewOptions = jsonv2.JoinOptions()
	// podOptions: a Pod with a field this injector's Pod type does not know
	// takes the slower path, which says which (patch.Raw keeps them).
	podOptions = jsonv2.RejectUnknownMembers(true)
)

// decodeReview decodes an AdmissionReview body into review, which must be
// zero.
func decodeReview(body []byte, review *admissionv1.AdmissionReview) error {
	if jsonv2.Unmarshal(body, review, reviewOptions) == nil {
		return nil
	}
	*review = admissionv1.AdmissionReview{}
	return kjson.UnmarshalCaseSensitivePreserveInts(body, review)
}

// decodeAdmittedPod decodes the Pod the apiserver sent into pod, which must be zero.
// strict tells that the document holds only fields the Pod type knows, each
// once and spelt as the type does, so that the typed Pod says what the
// document holds.
func decodeAdmittedPod(raw []byte, pod *corev1.Pod) (strict bool, err error) {
	if jsonv2.Unmarshal(raw, pod, podOptions) == nil {
		return true, nil
	}
	*pod = corev1.Pod{}
	problems, err := kjson.UnmarshalStrict(raw, pod)
	return err == nil && len(problems) == 0, err
}
