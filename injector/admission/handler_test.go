package admission

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/internal/injecttest"
	"github.com/ramvault/ramvault/pkg/spec"
)

// goldenDir holds the golden inputs of injector.Inject, whose Pods seed
// the decoders' tests and fuzz targets.
var goldenDir = filepath.Join("..", "testdata")

func TestHandlerHTTP(t *testing.T) {
	ok := injecttest.ReviewBody(t, injecttest.PodRequest("uid-1", injecttest.PodJSON(t, injecttest.Pod()), "shop"))
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
			h := NewHandler(injecttest.Config(), HandlerOptions{Metrics: m, MaxBodyBytes: tc.maxBody})
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

// unreadable is a request body that fails the test if it is read.
type unreadable struct{ t *testing.T }

func (u unreadable) Read([]byte) (int, error) {
	u.t.Error("the body was read")
	return 0, errors.New("read")
}

// A request that announces a body over the limit is answered 413 unread,
// without waiting for a place in the large lane, even when that lane is
// full; a small review still goes through the small lane.
func TestHandlerRefusesAnAnnouncedOversizedBodyUnread(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	h := NewHandler(injecttest.Config(), HandlerOptions{Metrics: m})
	for i := 0; i < largeInFlight; i++ {
		if _, ok := h.lanes.large.enter(context.Background()); !ok {
			t.Fatal("the large lane refused below its capacity")
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/mutate", unreadable{t})
	r.ContentLength = DefaultMaxBodyBytes + 1
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), fmt.Sprintf("over %d bytes", DefaultMaxBodyBytes)) {
		t.Errorf("status %d body %q; want 413 naming the limit", w.Code, w.Body)
	}
	ok := injecttest.Post(h, injecttest.ReviewBody(t, injecttest.PodRequest("uid-small", injecttest.PodJSON(t, injecttest.Pod()), "shop")), "application/json")
	if ok.Code != http.StatusOK {
		t.Errorf("a small review with the large lane full: status %d", ok.Code)
	}
	if n := testutil.CollectAndCount(m.laneWaits); n != 2 {
		t.Errorf("%d lane histograms, want 2 (small, large)", n)
	}
	if n := histogramCount(t, m.laneWaits.WithLabelValues(laneSmall)); n != 1 {
		t.Errorf("%d waits in the small lane, want 1", n)
	}
	if n := histogramCount(t, m.laneWaits.WithLabelValues(laneLarge)); n != 0 {
		t.Errorf("%d waits in the large lane, want 0: the oversized request took a place", n)
	}
}

func histogramCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var d dto.Metric
	if err := o.(prometheus.Metric).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
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
	h := NewHandler(injecttest.Config(), HandlerOptions{Metrics: m, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	h.inject = func(*corev1.Pod) (*corev1.Pod, error) { panic("boom") }
	w := injecttest.Post(h, injecttest.ReviewBody(t, injecttest.PodRequest("uid-panic", injecttest.PodJSON(t, injecttest.Pod()), "shop")), "application/json")
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
	resp := injecttest.Answer(t, w)
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
	pod := injecttest.PodJSON(t, injecttest.Pod())
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
			h := NewHandler(injecttest.Config(), HandlerOptions{Metrics: m})
			h.inject = func(*corev1.Pod) (*corev1.Pod, error) { t.Fatal("Inject called"); return nil, nil }
			req := injecttest.PodRequest("uid-pass", pod, "shop")
			tc.mutate(req)
			w := injecttest.Post(h, injecttest.ReviewBody(t, req), "application/json")
			resp := injecttest.Answer(t, w)
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
	pod := injecttest.Pod()
	pod.Annotations["ramvault.io/mode"] = "sidecar"
	pod.Annotations["ramvault.io/secrte-api"] = "kv/api"
	pod.Annotations["ramvault.io/vault-addr"] = "https://evil.example:8200"
	pod.Spec.Volumes = []corev1.Volume{{Name: injector.SecretsVolume}}
	_, want := injector.Inject(pod, injecttest.Config())
	var problems spec.ErrorList
	if !errors.As(want, &problems) || len(problems) < 4 {
		t.Fatalf("the test Pod should have at least 4 problems, Inject says %v", want)
	}
	m := NewMetrics(prometheus.NewRegistry())
	h := NewHandler(injecttest.Config(), HandlerOptions{Metrics: m})
	w := injecttest.Post(h, injecttest.ReviewBody(t, injecttest.PodRequest("uid-deny", injecttest.PodJSON(t, pod), "shop")), "application/json")
	resp := injecttest.Answer(t, w)
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
	// A dry run is answered the same way.
	req := injecttest.PodRequest("uid-dry", injecttest.PodJSON(t, pod), "shop")
	req.DryRun = ptr.To(true)
	if resp := injecttest.Answer(t, injecttest.Post(h, injecttest.ReviewBody(t, req), "application/json")); resp.Allowed {
		t.Error("a dry run was allowed")
	}
}

func TestHandlerUsesTheRequestNamespace(t *testing.T) {
	pod := injecttest.Pod()
	pod.Namespace = ""
	h := NewHandler(injecttest.Config(), HandlerOptions{})
	resp := injecttest.Answer(t, injecttest.Post(h, injecttest.ReviewBody(t, injecttest.PodRequest("uid-ns", injecttest.PodJSON(t, pod), "kube-system")), "application/json"))
	if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, "namespace kube-system") {
		t.Errorf("response %+v: want the kube-system refusal, the namespace taken from the request", resp)
	}
	resp = injecttest.Answer(t, injecttest.Post(h, injecttest.ReviewBody(t, injecttest.PodRequest("uid-ns2", injecttest.PodJSON(t, pod), "shop")), "application/json"))
	if !resp.Allowed || resp.Patch == nil {
		t.Errorf("response %+v: want the Pod injected in shop", resp)
	}
	if out := injecttest.ApplyPatch(t, resp, injecttest.PodJSON(t, pod)); out.Namespace != "" {
		t.Errorf("the patch sets the namespace %q: the apiserver does", out.Namespace)
	}
}

func TestHandlerSkipsWhatIsNotOptedInOrInjectedBefore(t *testing.T) {
	plain := injecttest.Pod()
	plain.Annotations = nil
	injected, err := injector.Inject(injecttest.Pod(), injecttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	for name, pod := range map[string]*corev1.Pod{"a Pod without the opt-in": plain, "a Pod injected before": injected} {
		t.Run(name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			h := NewHandler(injecttest.Config(), HandlerOptions{Metrics: m})
			resp := injecttest.Answer(t, injecttest.Post(h, injecttest.ReviewBody(t, injecttest.PodRequest("uid", injecttest.PodJSON(t, pod), "shop")), "application/json"))
			if !resp.Allowed || resp.Patch != nil || resp.PatchType != nil {
				t.Errorf("response %+v: want allowed without a patch", resp)
			}
			if testutil.ToFloat64(m.injections.WithLabelValues(injectionSkipped)) != 1 {
				t.Error("not counted as skipped")
			}
		})
	}
}

func TestHandlerDeniesAStatusSetByHand(t *testing.T) {
	pod := injecttest.Pod()
	pod.Annotations[injector.StatusAnnotation] = "injected v0"
	h := NewHandler(injecttest.Config(), HandlerOptions{})
	resp := injecttest.Answer(t, injecttest.Post(h, injecttest.ReviewBody(t, injecttest.PodRequest("uid", injecttest.PodJSON(t, pod), "shop")), "application/json"))
	if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, "remove ramvault.io/status") {
		t.Errorf("response %+v: an opted-in Pod with a status but no agent must be denied, naming the annotation", resp)
	}
}
