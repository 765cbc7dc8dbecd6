package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector/kube/kubetest"
	"github.com/ramvault/ramvault/pkg/spec"
)

var testConfig = Config{AgentImage: "registry.example/ramvault-agent:1", VaultAddr: "https://vault.vault.svc:8200", NativeSidecars: true, Version: "test"}

// testPod is a valid opted-in Pod.
func testPod() *corev1.Pod {
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

// podRequest is the AdmissionRequest of the CREATE of pod, as raw.
func podRequest(t testing.TB, uid string, raw []byte, namespace string) *admissionv1.AdmissionRequest {
	t.Helper()
	return &admissionv1.AdmissionRequest{
		UID:       types.UID(uid),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
}

func podJSON(t testing.TB, pod *corev1.Pod) []byte {
	t.Helper()
	b, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reviewBody(t testing.TB, req *admissionv1.AdmissionRequest) []byte {
	t.Helper()
	b, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: reviewType, Request: req})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(h http.Handler, body []byte, contentType string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// answer decodes the AdmissionReview of a response and checks its type.
func answer(t testing.TB, w *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
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

// applyPatch applies the response's JSONPatch to raw and decodes the Pod.
func applyPatch(t testing.TB, resp *admissionv1.AdmissionResponse, raw []byte) *corev1.Pod {
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

func TestHandlerHTTP(t *testing.T) {
	ok := reviewBody(t, podRequest(t, "uid-1", podJSON(t, testPod()), "shop"))
	cases := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		maxBody     int64
		status      int
		say         string // in the body
	}{
		{name: "a review is answered 200", body: ok, status: http.StatusOK, say: `"uid":"uid-1"`},
		{name: "a content type with parameters is fine", contentType: "application/json; charset=utf-8", body: ok, status: http.StatusOK},
		{name: "a body over the limit is 413", body: ok, maxBody: int64(len(ok)) - 1, status: http.StatusRequestEntityTooLarge, say: fmt.Sprintf("over %d bytes", len(ok)-1)},
		{name: "a body at the limit is read", body: ok, maxBody: int64(len(ok)), status: http.StatusOK},
		{name: "another content type is 415", contentType: "application/yaml", body: ok, status: http.StatusUnsupportedMediaType, say: "want application/json"},
		{name: "no content type is 415", contentType: "-", body: ok, status: http.StatusUnsupportedMediaType},
		{name: "GET is 405", method: http.MethodGet, status: http.StatusMethodNotAllowed},
		{name: "a body that is no JSON is 400", body: []byte("{"), status: http.StatusBadRequest, say: "decode AdmissionReview"},
		{name: "a v1beta1 review is 400", body: []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`),
			status: http.StatusBadRequest, say: "admissionReviewVersions: [v1]"},
		{name: "a review without a request is 400", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), status: http.StatusBadRequest, say: "without a request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			h := NewHandler(testConfig, HandlerOptions{Metrics: m, MaxBodyBytes: tc.maxBody})
			r := httptest.NewRequest(cmpOr(tc.method, http.MethodPost), "/mutate", bytes.NewReader(tc.body))
			switch tc.contentType {
			case "":
				r.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				r.Header.Set("Content-Type", tc.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.say) {
				t.Errorf("status %d body %q; want %d and %q", w.Code, w.Body, tc.status, tc.say)
			}
			result := requestAllowed
			if tc.status != http.StatusOK {
				result = requestInvalid
			}
			if n := testutil.ToFloat64(m.requests.WithLabelValues(result)); n != 1 {
				t.Errorf("requests{result=%q} = %v, want 1", result, n)
			}
			if n := testutil.CollectAndCount(m.duration); n != 1 {
				t.Errorf("%d latency histograms", n)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestHandlerPanicIsA500WithTheUID(t *testing.T) {
	var logs bytes.Buffer
	m := NewMetrics(prometheus.NewRegistry())
	h := NewHandler(testConfig, HandlerOptions{Metrics: m, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	h.inject = func(*corev1.Pod, Config) (*corev1.Pod, error) { panic("boom") }
	w := post(h, reviewBody(t, podRequest(t, "uid-panic", podJSON(t, testPod()), "shop")), "application/json")
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
	resp := answer(t, w)
	if resp.UID != "uid-panic" || resp.Allowed || resp.Result == nil || resp.Result.Code != 500 || !strings.Contains(resp.Result.Message, "uid-panic") {
		t.Errorf("response %+v: want the request's UID, not allowed, code 500, a message naming the request", resp)
	}
	if !strings.Contains(logs.String(), `"panic":"boom"`) {
		t.Errorf("the panic is not logged:\n%s", logs.String())
	}
	if testutil.ToFloat64(m.requests.WithLabelValues(requestError)) != 1 || testutil.ToFloat64(m.injections.WithLabelValues(injectionError)) != 1 {
		t.Error("the panic is not counted as an error")
	}
}

func TestHandlerPassesThroughWhatIsNotAPodCreate(t *testing.T) {
	pod := podJSON(t, testPod())
	cases := []struct {
		name   string
		mutate func(r *admissionv1.AdmissionRequest)
	}{
		{name: "an UPDATE of a Pod", mutate: func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }},
		{name: "a DELETE of a Pod", mutate: func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Delete; r.Object.Raw = nil }},
		{name: "a ConfigMap", mutate: func(r *admissionv1.AdmissionRequest) {
			r.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
			r.Resource = metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"}
			r.Object.Raw = []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}`)
		}},
		{name: "a Pod subresource", mutate: func(r *admissionv1.AdmissionRequest) { r.SubResource = "ephemeralcontainers" }},
		{name: "a Deployment", mutate: func(r *admissionv1.AdmissionRequest) {
			r.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
			r.Resource = metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is allowed unchanged", func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			h := NewHandler(testConfig, HandlerOptions{Metrics: m})
			h.inject = func(*corev1.Pod, Config) (*corev1.Pod, error) { t.Fatal("Inject called"); return nil, nil }
			req := podRequest(t, "uid-pass", pod, "shop")
			tc.mutate(req)
			w := post(h, reviewBody(t, req), "application/json")
			resp := answer(t, w)
			if w.Code != http.StatusOK || !resp.Allowed || resp.Patch != nil || resp.UID != "uid-pass" {
				t.Errorf("status %d response %+v: want allowed, no patch, the UID", w.Code, resp)
			}
			for _, r := range []string{injectionInjected, injectionSkipped, injectionDenied, injectionError} {
				if testutil.ToFloat64(m.injections.WithLabelValues(r)) != 0 {
					t.Errorf("counted as an injection %s", r)
				}
			}
		})
	}
}

func TestHandlerDenialListsEveryProblem(t *testing.T) {
	pod := testPod()
	pod.Annotations["ramvault.io/mode"] = "sidecar"
	pod.Annotations["ramvault.io/secrte-api"] = "kv/api"
	pod.Annotations["ramvault.io/vault-addr"] = "https://evil.example:8200"
	pod.Spec.Volumes = []corev1.Volume{{Name: SecretsVolume}}
	_, want := Inject(pod, testConfig)
	var problems spec.ErrorList
	if !errors.As(want, &problems) || len(problems) < 4 {
		t.Fatalf("the test Pod should have at least 4 problems, Inject says %v", want)
	}
	m := NewMetrics(prometheus.NewRegistry())
	client, _ := kubetest.NewAPIServer(t).Client(t)
	events := NewEventRecorder(client, slog.New(slog.DiscardHandler), "replica-0")
	h := NewHandler(testConfig, HandlerOptions{Metrics: m, Events: events})
	w := post(h, reviewBody(t, podRequest(t, "uid-deny", podJSON(t, pod), "shop")), "application/json")
	resp := answer(t, w)
	if w.Code != http.StatusOK || resp.Allowed || resp.UID != "uid-deny" || resp.Patch != nil {
		t.Fatalf("status %d response %+v: want a denial of uid-deny", w.Code, resp)
	}
	if resp.Result == nil || resp.Result.Code != http.StatusForbidden || resp.Result.Message != want.Error() {
		t.Fatalf("result %+v, want 403 and the message %q", resp.Result, want.Error())
	}
	for _, p := range problems {
		if !strings.Contains(resp.Result.Message, p.Error()) {
			t.Errorf("the message lacks %q", p.Error())
		}
	}
	if testutil.ToFloat64(m.requests.WithLabelValues(requestDenied)) != 1 || testutil.ToFloat64(m.injections.WithLabelValues(injectionDenied)) != 1 {
		t.Error("the denial is not counted")
	}
	select {
	case ev := <-events.queue:
		if ev.Reason != ReasonDenied || !strings.Contains(ev.Message, want.Error()) || ev.InvolvedObject.Kind != "Namespace" {
			t.Errorf("event %s %s on %v: %s", ev.Type, ev.Reason, ev.InvolvedObject, ev.Message)
		}
	default:
		t.Error("no event queued")
	}

	// A dry run has no side effects: no event.
	req := podRequest(t, "uid-dry", podJSON(t, pod), "shop")
	req.DryRun = ptr.To(true)
	if resp := answer(t, post(h, reviewBody(t, req), "application/json")); resp.Allowed {
		t.Error("a dry run was allowed")
	}
	if len(events.queue) != 0 {
		t.Error("a dry run queued an event")
	}
}

func TestHandlerUsesTheRequestNamespace(t *testing.T) {
	pod := testPod()
	pod.Namespace = ""
	h := NewHandler(testConfig, HandlerOptions{})
	resp := answer(t, post(h, reviewBody(t, podRequest(t, "uid-ns", podJSON(t, pod), "kube-system")), "application/json"))
	if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, "namespace kube-system") {
		t.Errorf("response %+v: want the kube-system refusal, the namespace taken from the request", resp)
	}
	resp = answer(t, post(h, reviewBody(t, podRequest(t, "uid-ns2", podJSON(t, pod), "shop")), "application/json"))
	if !resp.Allowed || resp.Patch == nil {
		t.Errorf("response %+v: want the Pod injected in shop", resp)
	}
	if out := applyPatch(t, resp, podJSON(t, pod)); out.Namespace != "" {
		t.Errorf("the patch sets the namespace %q: the apiserver does", out.Namespace)
	}
}

func TestHandlerSkipsWhatIsNotOptedInOrInjectedBefore(t *testing.T) {
	plain := testPod()
	plain.Annotations = nil
	injected := testPod()
	injected.Annotations[StatusAnnotation] = "injected v0"
	for name, pod := range map[string]*corev1.Pod{"a Pod without the opt-in": plain, "a Pod injected before": injected} {
		t.Run(name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			h := NewHandler(testConfig, HandlerOptions{Metrics: m})
			resp := answer(t, post(h, reviewBody(t, podRequest(t, "uid", podJSON(t, pod), "shop")), "application/json"))
			if !resp.Allowed || resp.Patch != nil || resp.PatchType != nil {
				t.Errorf("response %+v: want allowed without a patch", resp)
			}
			if testutil.ToFloat64(m.injections.WithLabelValues(injectionSkipped)) != 1 {
				t.Error("not counted as skipped")
			}
		})
	}
}

// TestHandlerGolden runs every Pod of the golden inputs through the webhook:
// the patch, applied to the object as sent, gives what Inject gives, and a
// denial says what Inject says. (TestGolden holds Inject to the CLI and the
// golden files.) The log names neither the Pod's images nor the patch.
func TestHandlerGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	var injected, denied int
	for _, input := range inputs {
		src, err := os.ReadFile(input)
		if err != nil {
			t.Fatal(err)
		}
		opts, err := parseFlags("inject", append([]string{"-f", "x"}, caseArgs(src)...), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		docs, err := readDocuments(bytes.NewReader(src))
		if err != nil {
			t.Fatal(err)
		}
		for i, raw := range docs {
			obj, err := newObject(i+1, raw)
			if err != nil || obj.meta.Kind != "Pod" {
				continue
			}
			t.Run(strings.TrimSuffix(filepath.Base(input), ".yaml")+"/"+obj.label, func(t *testing.T) {
				var pod corev1.Pod
				if err := yaml.UnmarshalStrict(raw, &pod); err != nil {
					t.Fatal(err)
				}
				want, wantErr := Inject(&pod, opts.cfg)
				var logs bytes.Buffer
				h := NewHandler(opts.cfg, HandlerOptions{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
				resp := answer(t, post(h, reviewBody(t, podRequest(t, "uid-golden", raw, pod.Namespace)), "application/json"))
				switch {
				case wantErr != nil:
					denied++
					if resp.Allowed || resp.Result == nil || resp.Result.Message != wantErr.Error() {
						t.Errorf("response %+v, want the denial %q", resp, wantErr)
					}
				case apiequality.Semantic.DeepEqual(&pod, want):
					if !resp.Allowed || resp.Patch != nil {
						t.Errorf("response %+v, want allowed unchanged", resp)
					}
				default:
					injected++
					if !resp.Allowed {
						t.Fatalf("denied: %v", resp.Result)
					}
					if got := applyPatch(t, resp, raw); !apiequality.Semantic.DeepEqual(got, want) {
						a, _ := yaml.Marshal(want)
						b, _ := yaml.Marshal(got)
						t.Errorf("the webhook's Pod differs from Inject's.\nInject:\n%s\nwebhook:\n%s", a, b)
					}
				}
				for _, c := range pod.Spec.Containers {
					if strings.Contains(logs.String(), c.Image) {
						t.Errorf("the log names the image %q of the Pod:\n%s", c.Image, logs.String())
					}
				}
				if strings.Contains(logs.String(), `"op"`) || strings.Contains(logs.String(), opts.cfg.AgentImage) {
					t.Errorf("the log holds the patch:\n%s", logs.String())
				}
			})
		}
	}
	if injected == 0 || denied == 0 {
		t.Errorf("%d injected and %d denied Pods: the inputs should have both", injected, denied)
	}
}

func TestEventRecorder(t *testing.T) {
	owned := testPod()
	owned.Name, owned.GenerateName = "", "web-7d9f-"
	owned.OwnerReferences = []metav1.OwnerReference{
		{APIVersion: "v1", Kind: "ConfigMap", Name: "not-the-controller", UID: "u0"},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f", UID: "u1", Controller: ptr.To(true)},
	}
	bare := testPod()
	api := kubetest.NewAPIServer(t)
	client, _ := api.Client(t)
	r := NewEventRecorder(client, slog.New(slog.DiscardHandler), "replica-0")
	var now atomic.Int64 // the recorder's clock, read by Run
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	r.now = func() time.Time { return time.Unix(0, now.Load()) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	r.Denied(owned, "first")
	r.Denied(owned, "first") // within the minute: not again
	r.Denied(bare, strings.Repeat("x", 2*maxEventMessage))
	list := waitEvents(t, api, 2)
	byKind := map[string]corev1.Event{}
	for _, e := range list {
		byKind[e.InvolvedObject.Kind] = e
	}
	rs, ns := byKind["ReplicaSet"], byKind["Namespace"]
	if rs.InvolvedObject.Name != "web-7d9f" || rs.InvolvedObject.UID != "u1" || rs.Namespace != "shop" || rs.Message != "first" ||
		rs.Reason != ReasonDenied || rs.Type != corev1.EventTypeWarning || rs.ReportingInstance != "replica-0" || rs.Count != 1 {
		t.Errorf("event on the controller: %+v", rs)
	}
	if ns.InvolvedObject.Name != "shop" || ns.Namespace != "shop" || len(ns.Message) != maxEventMessage || !strings.HasSuffix(ns.Message, "…") {
		t.Errorf("event on the namespace: %+v (message of %d bytes)", ns.InvolvedObject, len(ns.Message))
	}
	now.Add(int64(eventRepeat))
	r.Denied(owned, "first")
	waitEvents(t, api, 3)
}

func waitEvents(t *testing.T, api *kubetest.APIServer, n int) []corev1.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list := api.List("/api/v1/namespaces/shop/events")
		if len(list) > n {
			t.Fatalf("%d events, want %d", len(list), n)
		}
		if len(list) == n {
			events := make([]corev1.Event, n)
			for i, b := range list {
				if err := json.Unmarshal(b, &events[i]); err != nil {
					t.Fatal(err)
				}
			}
			return events
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events after 5s, want %d", len(list), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
