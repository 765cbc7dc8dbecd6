// Package admission serves injector.Inject as a mutating admission webhook:
// the HTTP handler of AdmissionReviews, its decoders and the webhook's
// metrics.
package admission

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/patch"
	"github.com/ramvault/ramvault/pkg/spec"
)

// DefaultMaxBodyBytes bounds the body of an AdmissionReview. A Pod's
// annotations are limited to 256 KiB and a whole Pod is rarely a tenth of
// this; a larger body is refused with 413: unread when its length is
// announced, else when the limit is reached.
const DefaultMaxBodyBytes = 1 << 20

var (
	podKind     = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	podResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	reviewType  = metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"}
)

// DefaultBodyTimeout is how long a request may take to send its body once
// it has its place in a lane. The apiserver sends a review in one write
// (milliseconds, even at 1 MiB); without this bound, a client that sends a
// few bytes a second kept its place for the server's whole ReadTimeout, and
// 64 such connections held every place of the small lane, so real Pods'
// reviews waited behind them.
const DefaultBodyTimeout = 2 * time.Second

// HandlerOptions are what a Handler needs besides the injection defaults.
// Zero fields are valid: no log, no metrics, no events, DefaultMaxBodyBytes,
// DefaultBodyTimeout.
type HandlerOptions struct {
	Log          *slog.Logger
	Metrics      *Metrics
	MaxBodyBytes int64
	BodyTimeout  time.Duration
}

// Handler answers AdmissionReviews (admission.k8s.io/v1) at /mutate. The
// CREATE of a Pod goes through Inject; the change is answered as a
// JSONPatch (patch.Strict, or patch.Raw for a Pod with fields this injector
// does not know), a denial with every problem Inject found. It writes
// nothing to the API: anyone who reaches it can post a review. Every other
// request is allowed unchanged.
type Handler struct {
	opts   HandlerOptions
	lanes  lanes
	inject func(*corev1.Pod) (*corev1.Pod, error) // Injector.InjectInPlace, or Inject; tests replace it
}

// NewHandler returns the handler for cfg, which must be valid (Validate).
func NewHandler(cfg injector.Config, opts HandlerOptions) *Handler {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	// A valid configuration is checked here once; an invalid one keeps
	// failing every request with the message saying what is wrong.
	h := &Handler{opts: opts, lanes: newLanes(), inject: func(pod *corev1.Pod) (*corev1.Pod, error) { return injector.Inject(pod, cfg) }}
	if in, err := injector.New(cfg); err == nil {
		h.inject = in.InjectInPlace
	}
	return h
}

// ServeHTTP answers one AdmissionReview.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := h.serve(w, r, start)
	h.opts.Metrics.request(result, time.Since(start))
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, start time.Time) string {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return requestInvalid
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, fmt.Sprintf("content type %q: want application/json", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
		return requestInvalid
	}
	if r.ContentLength > h.opts.MaxBodyBytes {
		// Said before it is sent: refused unread, without a place in a lane.
		http.Error(w, fmt.Sprintf("request body over %d bytes", h.opts.MaxBodyBytes), http.StatusRequestEntityTooLarge)
		return requestInvalid
	}
	lane, waiting := h.lanes.of(r.ContentLength), time.Now()
	release, ok := lane.enter(r.Context())
	h.opts.Metrics.laneWait(lane.name, time.Since(waiting))
	if !ok {
		http.Error(w, "too many large admission reviews at once; try again", http.StatusServiceUnavailable)
		return requestInvalid
	}
	defer release()
	// The place is held while the body arrives: bound that. (A server
	// without connection deadlines, e.g. httptest's recorder, has none.)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.opts.BodyTimeout))
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= h.opts.MaxBodyBytes {
		// One allocation (the apiserver says the length): ReadFrom grows
		// the buffer only when less than MinRead is free.
		buf.Grow(int(n) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	body := buf.Bytes()
	if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
		http.Error(w, fmt.Sprintf("request body over %d bytes", tooBig.Limit), http.StatusRequestEntityTooLarge)
		return requestInvalid
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		http.Error(w, fmt.Sprintf("request body not received within %v", h.opts.BodyTimeout), http.StatusRequestTimeout)
		return requestInvalid
	}
	if err != nil {
		http.Error(w, "read request body: "+err.Error(), http.StatusBadRequest)
		return requestInvalid
	}
	review, err := decodeAdmissionReview(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return requestInvalid
	}
	req := review.Request
	o := h.review(req)
	h.opts.Metrics.injection(o.injection)
	respond(w, o.status, req.UID, o.resp)
	result := requestAllowed
	switch {
	case o.status != http.StatusOK:
		result = requestError
	case !o.resp.Allowed:
		result = requestDenied
	}
	// Never the Pod nor the patch: the problems of a denial at most.
	attrs := []any{"uid", req.UID, "operation", req.Operation, "resource", req.Resource.Resource, "namespace", req.Namespace,
		"name", o.name, "dryRun", req.DryRun != nil && *req.DryRun, "result", result, "injection", o.injection,
		"seconds", time.Since(start).Seconds()}
	if !o.resp.Allowed && o.resp.Result != nil {
		attrs = append(attrs, "message", o.resp.Result.Message)
	}
	h.opts.Log.Info("admission review", attrs...)
	return result
}

// outcome is the answer to one request.
type outcome struct {
	status    int // HTTP status
	resp      *admissionv1.AdmissionResponse
	injection string // result for ramvault_injector_injections_total; "" if not a Pod CREATE
	name      string // of the object, for the log: its generateName and * when it has no name yet
}

// decodeAdmissionReview reads the one AdmissionReview of a request body.
func decodeAdmissionReview(body []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	if err := decodeReview(body, &review); err != nil {
		return nil, fmt.Errorf("decode AdmissionReview: %w", err)
	}
	if review.TypeMeta != reviewType {
		return nil, fmt.Errorf("got apiVersion %q kind %q: want an AdmissionReview of admission.k8s.io/v1 (admissionReviewVersions: [v1])", review.APIVersion, review.Kind)
	}
	if review.Request == nil || review.Request.UID == "" {
		return nil, errors.New("AdmissionReview without a request, or a request without a uid")
	}
	return &review, nil
}

// review decides one request. A panic becomes a 500 that still carries the
// request's UID (respond sets it).
func (h *Handler) review(req *admissionv1.AdmissionRequest) (o outcome) {
	o.name = req.Name
	defer func() {
		if p := recover(); p != nil {
			h.opts.Log.Error("panic answering an admission review", "uid", req.UID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			o.status = http.StatusInternalServerError
			o.resp = errored(o.status, fmt.Errorf("internal error in the ramvault injector; its log has the details of request %s", req.UID))
			o.injection = injectionError
		}
	}()
	o.status = http.StatusOK
	if req.Kind != metav1.GroupVersionKind(podKind) || req.Resource != metav1.GroupVersionResource(podResource) ||
		req.SubResource != "" || req.Operation != admissionv1.Create {
		o.resp = allowed()
		return o
	}
	pod := &corev1.Pod{}
	// One decode that also tells whether the Pod has fields this injector's
	// Pod type does not know (an apiserver newer than it): only then does the
	// patch need the slower merge into the document as sent (patch.Raw).
	strict, err := decodeAdmittedPod(req.Object.Raw, pod)
	if err != nil {
		o.resp, o.injection = errored(http.StatusBadRequest, fmt.Errorf("decode the Pod: %w", err)), injectionError
		return o
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	if o.name == "" && pod.GenerateName != "" {
		o.name = pod.GenerateName + "*"
	}
	_, before := pod.Annotations[injector.StatusAnnotation]
	// patch.Strict needs the shape of the Pod only, so the injection may
	// change the Pod decoded (InjectInPlace); patch.Raw needs it as it was.
	target, shape := pod, (*patch.Shape)(nil)
	if strict {
		shape = patch.ShapeOf(pod)
	} else {
		target = pod.DeepCopy()
	}
	out, err := h.inject(target)
	if problems := (spec.ErrorList)(nil); errors.As(err, &problems) {
		o.resp, o.injection = denied(err.Error()), injectionDenied
		return o
	}
	if err != nil {
		h.opts.Log.Error("inject", "uid", req.UID, "err", err)
		o.resp, o.injection = errored(http.StatusInternalServerError, err), injectionError
		return o
	}
	if _, after := out.Annotations[injector.StatusAnnotation]; before || !after {
		o.resp, o.injection = allowed(), injectionSkipped
		return o
	}
	var p []byte
	if shape != nil {
		p, err = patch.Strict(shape, out)
	} else {
		p, err = patch.Raw(req.Object.Raw, pod, out)
	}
	if err != nil {
		h.opts.Log.Error("patch", "uid", req.UID, "err", err)
		o.resp, o.injection = errored(http.StatusInternalServerError, err), injectionError
		return o
	}
	o.resp, o.injection = patched(p), injectionInjected
	return o
}

// allowed is a response allowing the request unchanged.
func allowed() *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true}
}

// patched is a response allowing the request changed by the JSONPatch p.
func patched(p []byte) *admissionv1.AdmissionResponse {
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: p, PatchType: &pt}
}

// denied is a response refusing the request (403) with msg, every problem
// with it.
func denied(msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: msg}}
}

// errored is a response refusing the request because of err.
func errored(code int, err error) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: int32(code), Message: err.Error()}}
}

// respond writes resp as the answer to request uid: the one place that sets
// the response's UID.
func respond(w http.ResponseWriter, status int, uid types.UID, resp *admissionv1.AdmissionResponse) {
	resp.UID = uid
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: reviewType, Response: resp})
	if err != nil {
		http.Error(w, "encode AdmissionReview: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// Said, else net/http chunks an answer over 2 KiB (one with a patch).
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
