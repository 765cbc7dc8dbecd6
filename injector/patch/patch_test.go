package patch_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	jsonv1 "github.com/go-json-experiment/json/v1"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/internal/injecttest"
	"github.com/ramvault/ramvault/injector/patch"
)

func TestTyped(t *testing.T) {
	base := func() *corev1.Pod {
		return &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "istio-init", Image: "proxy"}},
				Containers: []corev1.Container{{Name: "app", Image: "app", LivenessProbe: &corev1.Probe{
					ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/check"}}}}}},
			},
		}
	}
	opted := base()
	opted.Annotations = map[string]string{"ramvault.io/inject": "true", "ramvault.io/secret-db": "database/creds/web",
		"ramvault.io/reload": "restart", "ramvault.io/replace-liveness": "true", "ramvault.io/run-as-user": "1000"}
	cases := []struct {
		name   string
		in     *corev1.Pod
		mutate func(t *testing.T, p *corev1.Pod)
		want   string // the exact patch, where it is short
	}{
		{name: "no change is an empty array", in: base(), mutate: func(*testing.T, *corev1.Pod) {}, want: "[]"},
		{name: "an annotation on a Pod without annotations adds the map", in: base(), mutate: func(_ *testing.T, p *corev1.Pod) {
			p.Annotations = map[string]string{injector.StatusAnnotation: "injected"}
		}, want: `[{"op":"add","path":"/metadata/annotations","value":{"ramvault.io/status":"injected"}}]`},
		{name: "keys with / and ~ are escaped", in: opted, mutate: func(_ *testing.T, p *corev1.Pod) {
			p.Annotations["a/b~c"] = "1"
		}, want: `[{"op":"add","path":"/metadata/annotations/a~1b~0c","value":"1"}]`},
		{name: "an init container inserted before the existing ones", in: base(), mutate: func(_ *testing.T, p *corev1.Pod) {
			p.Spec.InitContainers = append([]corev1.Container{{Name: injector.AgentContainer, Image: "agent",
				RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}, p.Spec.InitContainers...)
		}},
		{name: "a liveness probe replaced by another kind", in: base(), mutate: func(_ *testing.T, p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/restart-probe?container=app", Port: intstr.FromInt32(8099)}}, InitialDelaySeconds: 10, PeriodSeconds: 5, FailureThreshold: 1}
		}},
		{name: "a container appended and a list removed", in: base(), mutate: func(_ *testing.T, p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: injector.AgentContainer, Image: "agent"})
			p.Spec.InitContainers = nil
		}},
		{name: "volumes, a mount, a port and a bool added", in: base(), mutate: func(_ *testing.T, p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: injector.SecretsVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: injector.SecretsVolume, MountPath: "/s", ReadOnly: true}}
			p.Spec.ShareProcessNamespace = ptr.To(true)
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
			p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http")}}}
		}},
		{name: "a whole injection", in: opted, mutate: func(t *testing.T, p *corev1.Pod) {
			out, err := injector.Inject(p, injector.Config{AgentImage: "agent", VaultAddr: "https://vault:8200", NativeSidecars: true})
			if err != nil {
				t.Fatal(err)
			}
			*p = *out
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.in.DeepCopy()
			tc.mutate(t, out)
			injecttest.CheckTyped(t, tc.in, out)
			if tc.want != "" {
				if p, err := patch.Typed(tc.in, out); err != nil || string(p) != tc.want {
					t.Errorf("patch %s (%v), want %s", p, err, tc.want)
				}
			}
		})
	}
}

func TestRaw(t *testing.T) {
	// The init container carries a field this injector's Pod type does not
	// know, as from a newer apiserver, and no "resources: {}" (the typed Pod
	// has it): the patch applies to the document as it is, and the unknown
	// field stays on istio-init, now second.
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","annotations":{"ramvault.io/inject":"true","ramvault.io/secret-db":"database/creds/web"}},` +
		`"spec":{"securityContext":{"runAsUser":1000},"initContainers":[{"name":"istio-init","image":"proxy","futureField":{"x":1}}],"containers":[{"name":"app","image":"app"}]}}`)
	pod := &corev1.Pod{}
	if err := yaml.Unmarshal(raw, pod); err != nil {
		t.Fatal(err)
	}
	pod.Namespace = "shop" // from the request, as the webhook does
	out, err := injector.Inject(pod, injecttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	p, err := patch.Raw(raw, pod, out)
	if err != nil {
		t.Fatal(err)
	}
	patched := applyToSent(t, p, raw)
	var doc struct {
		Metadata map[string]any `json:"metadata"`
		Spec     struct {
			InitContainers []map[string]any `json:"initContainers"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(patched, &doc); err != nil {
		t.Fatal(err)
	}
	ic := doc.Spec.InitContainers
	if len(ic) != 2 || ic[0]["name"] != injector.AgentContainer || ic[1]["name"] != "istio-init" || ic[1]["futureField"] == nil || ic[0]["futureField"] != nil {
		t.Errorf("init containers after the patch: %v", ic)
	}
	if _, set := doc.Metadata["namespace"]; set {
		t.Error("the patch sets the namespace, which the apiserver fills in")
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	got.Namespace = "shop"
	if !apiequality.Semantic.DeepEqual(&got, out) {
		t.Error("the patched document is not the injected Pod")
	}

	// Containers without names defeat a merge by name (the second would
	// get no mount): the typed diff answers then, and reproduces the
	// injection (the apiserver rejects such a Pod after admission anyway).
	dup := injecttest.Pod()
	dup.Spec.Containers = []corev1.Container{{Image: "a"}, {Image: "b"}}
	dupOut, err := injector.Inject(dup, injecttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	dupRaw, _ := json.Marshal(dup)
	dupPatch, err := patch.Raw(dupRaw, dup, dupOut)
	if err != nil {
		t.Fatal(err)
	}
	patched = applyToSent(t, dupPatch, dupRaw)
	if want, _ := json.Marshal(dupOut); !jsonpatch.Equal(patched, want) {
		t.Errorf("with unnamed containers the patch gives\n%s\nwant\n%s", patched, want)
	}
}

// TestStrict applies the webhook's patch for Pods without unknown
// fields to the document as sent, where it holds what the typed Pod does
// not say (null list elements, null and empty lists, zero fields left out),
// and compares the result with what Inject gives.
func TestStrict(t *testing.T) {
	bench, err := os.ReadFile(filepath.Join("..", "testdata", "bench", "apiserver-pod.json"))
	if err != nil {
		t.Fatal(err)
	}
	pod := func(annotations, spec string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","annotations":{"ramvault.io/inject":"true","ramvault.io/secret-db":"database/creds/web"` +
			annotations + `}},"spec":{"securityContext":{"runAsUser":1000}` + spec + `}}`
	}
	const app = `{"name":"app","image":"app","command":["/app"]}`
	cases := []struct {
		name string
		raw  string
	}{
		{"the Pod of make bench-webhook", string(bench)},
		{"a Pod without volumes", pod(``, `,"containers":[`+app+`]`)},
		{"null and empty lists", pod(``, `,"initContainers":null,"volumes":[],"containers":[{"name":"app","image":"app","volumeMounts":null},{"name":"b","image":"b","volumeMounts":[]}]`)},
		{"a null container and a null volume", pod(``, `,"volumes":[null,{"name":"v","emptyDir":{}}],"containers":[null,`+app+`]`)},
		{"init containers, the agent first", pod(``, `,"initContainers":[{"name":"a","image":"a"},{"name":"b","image":"b"}],"containers":[`+app+`]`)},
		{"init containers, the agent last", pod(`,"ramvault.io/agent-placement":"last"`, `,"initContainers":[{"name":"a","image":"a"}],"containers":[`+app+`]`)},
		{"mode classic appends a container", pod(`,"ramvault.io/mode":"classic"`, `,"restartPolicy":"Always","containers":[`+app+`,{"name":"b","image":"b"}]`)},
		{"a signal reload shares the process namespace", pod(`,"ramvault.io/reload":"signal:SIGHUP"`, `,"shareProcessNamespace":null,"containers":[`+app+`]`)},
		{"an unnamed container", pod(``, `,"containers":[{"image":"app","volumeMounts":[{"name":"v","mountPath":"/v"}]}],"volumes":[{"name":"v","emptyDir":{}}]`)},
		{"a liveness probe without its port replaced", pod(`,"ramvault.io/reload":"restart","ramvault.io/replace-liveness":"true"`,
			`,"containers":[{"name":"app","image":"app","livenessProbe":{"httpGet":{"path":"/"}}}]`)},
		{"a liveness probe added", pod(`,"ramvault.io/reload":"restart"`, `,"containers":[{"name":"app","image":"app","livenessProbe":null}]`)},
		{"shareProcessNamespace already true", pod(`,"ramvault.io/reload":"signal:SIGHUP"`, `,"shareProcessNamespace":true,"containers":[`+app+`]`)},
		{"a restart reload replaces the liveness probe", pod(`,"ramvault.io/reload":"restart","ramvault.io/replace-liveness":"true","ramvault.io/containers":"app"`,
			`,"containers":[{"name":"side","image":"s","livenessProbe":{"exec":{"command":["/ok"]}}},{"name":"app","image":"app","livenessProbe":{"httpGet":{"path":"/","port":8080},"periodSeconds":3},"volumeMounts":[{"name":"v","mountPath":"/v"}]}],"volumes":[{"name":"v","emptyDir":{}}]`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			in := &corev1.Pod{}
			if strict, err := kjson.UnmarshalStrict(raw, in); err != nil || len(strict) > 0 {
				t.Fatalf("not a Pod of known fields: %v %v", err, strict)
			}
			sentNamespace := in.Namespace
			in.Namespace = cmp.Or(in.Namespace, "shop") // from the request, as the webhook does
			shape := patch.ShapeOf(in)
			inj, err := injector.New(injecttest.Config())
			if err != nil {
				t.Fatal(err)
			}
			out, err := inj.InjectInPlace(in)
			if err != nil {
				t.Fatal(err)
			}
			if out.Annotations[injector.StatusAnnotation] == "" {
				t.Fatal("not injected")
			}
			p, err := patch.Strict(shape, out)
			if err != nil {
				t.Fatal(err)
			}
			// The patch's values are marshalled by the JSON v2 engine in
			// its v1 mode: the same bytes as encoding/json.
			v1, err1 := json.Marshal(out)
			v2, err2 := jsonv1.Marshal(out)
			if err1 != nil || err2 != nil || !bytes.Equal(v1, v2) {
				t.Errorf("jsonv1.Marshal differs from encoding/json (%v, %v):\n%s\n%s", err1, err2, v1, v2)
			}
			patched := applyToSent(t, p, raw)
			got := &corev1.Pod{}
			if strict, err := kjson.UnmarshalStrict(patched, got); err != nil || len(strict) > 0 {
				t.Fatalf("the patched document is no Pod: %v %v", err, strict)
			}
			if got.Namespace != sentNamespace {
				t.Errorf("the patch sets the namespace %q, which the apiserver fills in", got.Namespace)
			}
			got.Namespace = in.Namespace
			if !apiequality.Semantic.DeepEqual(got, out) {
				a, _ := yaml.Marshal(out)
				b, _ := yaml.Marshal(got)
				t.Errorf("the patched Pod differs from Inject's.\nInject:\n%s\npatched:\n%s\npatch: %s", a, b, p)
			}
		})
	}
}

// applyToSent applies a JSONPatch to the document the apiserver sent.
func applyToSent(t *testing.T, p, raw []byte) []byte {
	t.Helper()
	jp, err := jsonpatch.DecodePatch(p)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := jp.Apply(raw)
	if err != nil {
		t.Fatalf("the patch does not apply to the document as sent: %v\n%s", err, p)
	}
	return patched
}
