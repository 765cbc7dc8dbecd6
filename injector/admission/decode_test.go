package admission

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"

	"github.com/ramvault/ramvault/injector/internal/injecttest"
)

// decodeSeeds are the Pods of the golden inputs and of the bench, as JSON,
// and documents that must leave the fast path: unknown, misspelt,
// duplicated and mis-cased fields, bad UTF-8, nulls, wrong types.
func decodeSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	inputs, _ := filepath.Glob(filepath.Join(goldenDir, "*.yaml"))
	for _, in := range inputs {
		f, err := os.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := injecttest.Documents(f)
		f.Close()
		if err != nil {
			continue // the golden inputs of errors include broken YAML
		}
		for _, d := range docs {
			seeds = append(seeds, d)
		}
	}
	bench, err := os.ReadFile(filepath.Join(goldenDir, "bench", "apiserver-pod.json"))
	if err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, bench)
	for _, s := range []string{
		`{"metadata":{"name":"a"},"spec":{"containers":[{"name":"app","image":"x","imagePullPolicyy":"Always"}]}}`,
		`{"metadata":{"name":"a","name":"b"}}`,
		`{"Metadata":{"name":"a"}}`,
		`{"metadata":{"annotations":{"k":"v","k":"w"}}}`,
		"{\"metadata\":{\"name\":\"\xff\"}}",
		`{"metadata":null,"spec":{"containers":null,"volumes":[null]}}`,
		`{"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1.5"}}}],"terminationGracePeriodSeconds":1.5}}`,
		`{"spec":{"containers":[{"name":"a","ports":[{"containerPort":"80"}]}]}}`,
		`{"metadata":{"creationTimestamp":"2026-11-28T10:00:00Z","labels":{"a":"b"}},"status":{"phase":"Pending"}}`,
		`{"spec":{"containers":[{"name":"a","livenessProbe":{"httpGet":{"port":"http"}}}]}}`,
		`[]`, `null`, `{`, `{"kind":"Pod"} {}`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// checkDecodeAdmittedPod holds decodeAdmittedPod to the apiserver's decoder
// (sigs.k8s.io/json, strict): the same Pod, the same error, and strict only
// where that decoder finds nothing to say.
func checkDecodeAdmittedPod(t *testing.T, raw []byte) {
	var want corev1.Pod
	problems, wantErr := kjson.UnmarshalStrict(raw, &want)
	var got corev1.Pod
	strict, err := decodeAdmittedPod(raw, &got)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("%s: error %v, want %v", raw, err, wantErr)
	}
	if err != nil {
		return
	}
	if strict != (len(problems) == 0) {
		t.Fatalf("%s: strict %v, the apiserver's decoder found %v", raw, strict, problems)
	}
	if !reflect.DeepEqual(&got, &want) {
		t.Fatalf("%s: decoded\n%#v\nwant\n%#v", raw, got, want)
	}
	// The fast path alone: what it accepts, the reference accepts strictly
	// as the same Pod (checked above when it did).
	var fast corev1.Pod
	if jsonv2.Unmarshal(raw, &fast, podOptions) == nil && !strict {
		t.Fatalf("%s: the fast path accepted a document the apiserver's decoder finds fault with: %v", raw, problems)
	}
}

func TestDecodeAdmittedPod(t *testing.T) {
	fast := 0
	for _, raw := range decodeSeeds(t) {
		checkDecodeAdmittedPod(t, raw)
		var p corev1.Pod
		if jsonv2.Unmarshal(raw, &p, podOptions) == nil {
			fast++
		}
	}
	// The golden Pods, like the apiserver's, all take the fast path.
	if fast < 25 {
		t.Fatalf("only %d documents took the fast path", fast)
	}
}

func FuzzDecodeAdmittedPod(f *testing.F) {
	for _, s := range decodeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(checkDecodeAdmittedPod)
}

func TestDecodeReview(t *testing.T) {
	for _, raw := range decodeSeeds(t) {
		if !json.Valid(raw) {
			continue // a review cannot carry it
		}
		body := injecttest.ReviewBody(t, injecttest.PodRequest("uid-1", raw, "shop"))
		for _, doc := range [][]byte{body, raw, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","uid":"v"}}`)} {
			var want, got admissionv1.AdmissionReview
			wantErr := kjson.UnmarshalCaseSensitivePreserveInts(doc, &want)
			err := decodeReview(doc, &got)
			if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
				t.Fatalf("%s: error %v, want %v", doc, err, wantErr)
			}
			if !reflect.DeepEqual(&got, &want) {
				t.Fatalf("%s: decoded\n%#v\nwant\n%#v", doc, got, want)
			}
		}
	}
}
