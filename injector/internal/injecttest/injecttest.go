// Package injecttest holds what the tests of the injector's packages share:
// the invariants of every injection, a valid opted-in Pod and
// configuration, the golden inputs' documents, and AdmissionReviews built,
// posted and answered.
package injecttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/patch"
)

// Config is a valid injection configuration.
func Config() injector.Config {
	return injector.Config{AgentImage: "registry.example/ramvault-agent:1", VaultAddr: "https://vault.vault.svc:8200", NativeSidecars: true, Version: "test"}
}

// Pod is a valid opted-in Pod.
func Pod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: map[string]string{
			"ramvault.io/inject": "true", "ramvault.io/secret-db": "database/creds/web"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)},
			Containers:      []corev1.Container{{Name: "app", Image: "registry.example/web:1.4"}},
		},
	}
}

// Documents splits a stream of YAML documents (separated by ---) or of
// JSON objects into its documents, each as JSON, as `ramvault inject`
// reads them. Empty documents are dropped.
func Documents(r io.Reader) ([]json.RawMessage, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var docs []json.RawMessage
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		if raw = bytes.TrimSpace(raw); len(raw) > 0 && string(raw) != "null" {
			docs = append(docs, raw)
		}
	}
}

// CheckInjection checks what must hold of every injection of in into out,
// whatever the Pod: the input is untouched, the agent containers pass Pod
// Security "restricted", names are unique, every mount has its volume, the
// patches reproduce out, and a second injection changes nothing.
func CheckInjection(t testing.TB, in, out *corev1.Pod, cfg injector.Config) {
	t.Helper()
	if _, was := in.Annotations[injector.StatusAnnotation]; was || out.Annotations[injector.StatusAnnotation] == "" {
		if !apiequality.Semantic.DeepEqual(in, out) {
			t.Fatal("a Pod that was not injected came out changed")
		}
		return
	}
	if out == in || &out.Spec.Containers[0] == &in.Spec.Containers[0] {
		t.Fatal("Inject did not copy the Pod")
	}
	// What the injector adds exists once (the input's own duplicates, which
	// the apiserver rejects, are not its business).
	agents := map[string]int{}
	for _, c := range slices.Concat(out.Spec.InitContainers, out.Spec.Containers) {
		if c.Name == injector.AgentContainer || c.Name == injector.AgentInitContainer {
			agents[c.Name]++
			checkRestricted(t, c)
		}
	}
	if len(agents) == 0 || agents[injector.AgentContainer] > 1 || agents[injector.AgentInitContainer] > 1 {
		t.Errorf("agent containers: %v", agents)
	}
	volumes := map[string]int{}
	for _, v := range out.Spec.Volumes {
		volumes[v.Name]++
	}
	for _, v := range []string{injector.SecretsVolume, injector.StateVolume, injector.TokenVolume} {
		if volumes[v] != 1 {
			t.Errorf("%d volumes named %q", volumes[v], v)
		}
	}
	isAgent := func(c corev1.Container) bool {
		return c.Name == injector.AgentContainer || c.Name == injector.AgentInitContainer
	}
	// A mount the input already had of a volume it lacks is the input's
	// (the apiserver's validation rejects the Pod), not the injector's.
	inputMounts := map[string]bool{}
	for _, c := range slices.Concat(in.Spec.InitContainers, in.Spec.Containers) {
		for _, m := range c.VolumeMounts {
			inputMounts[c.Name+"\x00"+m.Name] = true
		}
	}
	for _, c := range slices.Concat(out.Spec.InitContainers, out.Spec.Containers) {
		for _, m := range c.VolumeMounts {
			if volumes[m.Name] == 0 && !inputMounts[c.Name+"\x00"+m.Name] {
				t.Errorf("container %q mounts volume %q, which does not exist", c.Name, m.Name)
			}
			if m.Name == injector.SecretsVolume && !isAgent(c) && !m.ReadOnly {
				t.Errorf("container %q mounts the secrets read-write", c.Name)
			}
			if (m.Name == injector.TokenVolume || m.Name == injector.StateVolume) && !isAgent(c) {
				t.Errorf("app container %q mounts the agent's volume %q", c.Name, m.Name)
			}
		}
	}
	CheckTyped(t, in, out)
	CheckStrict(t, in, out)
	again, err := injector.Inject(out, cfg)
	if err != nil || !apiequality.Semantic.DeepEqual(again, out) {
		t.Errorf("a second injection changed the Pod (err %v)", err)
	}
}

// checkRestricted checks an agent container against Pod Security
// "restricted", and that it has requests and limits.
func checkRestricted(t testing.TB, c corev1.Container) {
	t.Helper()
	s := c.SecurityContext
	switch {
	case s == nil:
		t.Errorf("%s: no securityContext", c.Name)
	case s.RunAsNonRoot == nil || !*s.RunAsNonRoot || s.RunAsUser == nil || *s.RunAsUser < 1:
		t.Errorf("%s: may run as root", c.Name)
	case s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation:
		t.Errorf("%s: allows privilege escalation", c.Name)
	case s.Capabilities == nil || !slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(s.Capabilities.Add) > 0:
		t.Errorf("%s: capabilities %v", c.Name, s.Capabilities)
	case s.SeccompProfile == nil || s.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("%s: seccomp %v", c.Name, s.SeccompProfile)
	case s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem:
		t.Errorf("%s: writable root filesystem", c.Name)
	case s.Privileged != nil && *s.Privileged:
		t.Errorf("%s: privileged", c.Name)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("%s: resources %v", c.Name, c.Resources)
	}
}

// CheckStrict checks that the webhook's patch for in (patch.Strict),
// applied to in as JSON, gives out.
func CheckStrict(t testing.TB, in, out *corev1.Pod) {
	t.Helper()
	p, err := patch.Strict(patch.ShapeOf(in), out)
	if err != nil {
		t.Fatal(err)
	}
	checkApplies(t, "patch.Strict", p, in, out)
}

// CheckTyped checks that patch.Typed(in, out), applied to in, gives out.
func CheckTyped(t testing.TB, in, out *corev1.Pod) {
	t.Helper()
	p, err := patch.Typed(in, out)
	if err != nil {
		t.Fatal(err)
	}
	checkApplies(t, "patch.Typed", p, in, out)
}

// checkApplies applies p (made by the function named) to in and compares
// the result with out.
func checkApplies(t testing.TB, name string, p []byte, in, out *corev1.Pod) {
	t.Helper()
	jp, err := jsonpatch.DecodePatch(p)
	if err != nil {
		t.Fatalf("decode the %s patch: %v\n%s", name, err, p)
	}
	orig, _ := json.Marshal(in)
	patched, err := jp.Apply(orig)
	if err != nil {
		t.Fatalf("apply the %s patch: %v\n%s", name, err, p)
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(&got, out) {
		want, _ := json.Marshal(out)
		t.Errorf("the %s patch does not reproduce the mutated Pod:\npatched %s\nwant    %s\npatch   %s", name, patched, want, p)
	}
}

// reviewType is the TypeMeta of an AdmissionReview v1.
var reviewType = metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"}

// PodRequest is the AdmissionRequest of the CREATE of a Pod, raw as sent.
func PodRequest(uid string, raw []byte, namespace string) *admissionv1.AdmissionRequest {
	return &admissionv1.AdmissionRequest{
		UID:       types.UID(uid),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
}

// PodJSON is pod as JSON.
func PodJSON(t testing.TB, pod *corev1.Pod) []byte {
	t.Helper()
	b, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ReviewBody is the body of the AdmissionReview of req.
func ReviewBody(t testing.TB, req *admissionv1.AdmissionRequest) []byte {
	t.Helper()
	b, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: reviewType, Request: req})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Post posts body to h at /mutate, with the content type unless it is "".
func Post(h http.Handler, body []byte, contentType string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// Answer decodes the AdmissionReview of a response and checks its type.
func Answer(t testing.TB, w *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q, want application/json; body %s", ct, w.Body)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &review); err != nil {
		t.Fatalf("decode response: %v\n%s", err, w.Body)
	}
	if review.TypeMeta != reviewType || review.Response == nil {
		t.Fatalf("not an AdmissionReview v1 response: %s", w.Body)
	}
	return review.Response
}

// ApplyPatch applies the response's JSONPatch to raw and decodes the Pod.
func ApplyPatch(t testing.TB, resp *admissionv1.AdmissionResponse, raw []byte) *corev1.Pod {
	t.Helper()
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v, want JSONPatch", resp.PatchType)
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	patched, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("the patch does not apply to the object the apiserver sent: %v", err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(patched, &pod); err != nil {
		t.Fatalf("the patched object is no Pod: %v", err)
	}
	return &pod
}
