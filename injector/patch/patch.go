// Package patch turns what injector.Inject changed into the JSONPatch
// (RFC 6902) a webhook answers, or merges it into a document as written
// (the CLI's manifests). Strict, the webhook's common path, writes the
// operations for the few fields Inject may change (those Shape lists) from
// the typed Pod, each value marshalled once; Typed and Raw, its rare paths,
// replace each changed member of metadata and spec whole. The tests and
// the admission fuzz target apply every patch to the document sent and
// compare the result with Inject's Pod.
package patch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	kjson "sigs.k8s.io/json"

	jsonv1 "github.com/go-json-experiment/json/v1"
)

// Typed is the JSONPatch that turns original into mutated: both Pods are
// marshalled and diffed. No change gives an empty array.
func Typed(original, mutated *corev1.Pod) ([]byte, error) {
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

// diff is the JSONPatch that turns the Pod document a into b: each member
// of metadata and spec that differs (and each other top-level member) is
// added, replaced or removed whole, from b's own bytes, so fields of b that
// the Pod type does not know go through as they are. Coarse on purpose: a
// library's element-by-element diff of a list Inject inserted into gave an
// operation that does not apply (FuzzDecodeAdmissionReview: an add under
// /spec/initContainers/0/resources of an element that has no resources),
// and these are the webhook's rare paths (a Pod with fields this injector
// does not know, or lists with duplicate keys).
func diff(a, b []byte) ([]byte, error) {
	w := &writer{buf: []byte{'['}}
	if !w.object("", a, b) {
		return nil, fmt.Errorf("diff pods: not two JSON objects")
	}
	if w.err != nil {
		return nil, fmt.Errorf("diff pods: %w", w.err)
	}
	return append(w.buf, ']'), nil
}

// descend are the objects diff compares member by member; any other
// value that differs is replaced whole.
var descend = map[string]bool{"/metadata": true, "/spec": true, "/metadata/annotations": true, "/metadata/labels": true}

// object writes the operations for the members of the JSON objects a and b
// at path, or reports false if either is not an object.
func (w *writer) object(path string, a, b json.RawMessage) bool {
	var am, bm map[string]json.RawMessage
	if json.Unmarshal(a, &am) != nil || json.Unmarshal(b, &bm) != nil || am == nil || bm == nil {
		return false
	}
	for _, k := range unionKeys(am, bm) {
		p := path + "/" + pointerToken(k)
		if av, bv := am[k], bm[k]; !descend[p] || av == nil || bv == nil || !w.object(p, av, bv) {
			w.member(p, av, bv)
		}
	}
	return true
}

// member writes the operation that turns the member at path from a into b
// (nil: absent), if they differ as JSON values.
func (w *writer) member(path string, a, b json.RawMessage) {
	switch {
	case a == nil && b == nil:
	case b == nil:
		w.op("remove", path, nil)
	case a == nil:
		w.op("add", path, b)
	case !jsonEqual(a, b):
		w.op("replace", path, b)
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func unionKeys(a, b map[string]json.RawMessage) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// Raw is Typed for raw, the Pod as the apiserver sent it, of which
// original is the decoded form (its namespace perhaps filled in). The
// change from original to mutated is merged into raw as a strategic merge
// patch (lists merge by their keys: container and volume names, mount
// paths), and raw is diffed with the result. So the operations apply to raw
// as it is, and fields of raw the Pod type does not know (an apiserver newer
// than this injector) stay on the container they belong to, where a diff of
// the typed Pods would shift them onto the agent inserted before it. Where
// the merge cannot say it (lists with duplicate keys, which the apiserver
// rejects anyway), it is Typed.
func Raw(raw []byte, original, mutated *corev1.Pod) ([]byte, error) {
	merged, err := Merge(raw, original, mutated)
	if err != nil {
		return Typed(original, mutated)
	}
	check := &corev1.Pod{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(merged, check); err != nil {
		return Typed(original, mutated)
	}
	if check.Namespace == "" {
		check.Namespace = original.Namespace
	}
	if !apiequality.Semantic.DeepEqual(check, mutated) {
		return Typed(original, mutated)
	}
	return diff(raw, merged)
}

// Merge applies the change from pod to out to written, a Pod or a pod
// template as written, as a strategic merge patch: lists merge by their
// keys (container and volume names, mount paths) in the order of out, and
// fields the typed Pod would add (creationTimestamp: null, resources: {})
// stay out.
func Merge(written []byte, pod, out *corev1.Pod) ([]byte, error) {
	orig, err := json.Marshal(corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec})
	if err != nil {
		return nil, err
	}
	mod, err := json.Marshal(corev1.PodTemplateSpec{ObjectMeta: out.ObjectMeta, Spec: out.Spec})
	if err != nil {
		return nil, err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(orig, mod, corev1.PodTemplateSpec{})
	if err != nil {
		return nil, fmt.Errorf("diff pod: %w", err)
	}
	merged, err := strategicpatch.StrategicMergePatch(written, patch, corev1.PodTemplateSpec{})
	if err != nil {
		return nil, fmt.Errorf("merge the injection into the document: %w", err)
	}
	return merged, nil
}

// Strict is the patch for a Pod decoded strictly from the document the
// apiserver sent (no field unknown, none twice), so that the typed Pod says
// what the document holds, up to zero values the document may leave out or
// restate. before is the shape of that Pod (ShapeOf), taken before Inject
// changed it in place. Inject only adds annotations, appends volumes,
// containers and volume mounts, sets shareProcessNamespace and a liveness
// probe, and changes the init containers: the operations say exactly that.
// Where the document may hold something other than the typed Pod (a
// container sent as null, a replaced liveness probe or init container list
// that restates or leaves out zero fields) the whole value is replaced, so
// no operation touches a field of it the document may not have. Cheaper
// than Raw by a strategic merge and two decodes, and than a diff by the
// marshalling of both sides and the diff itself.
func Strict(before *Shape, pod *corev1.Pod) ([]byte, error) {
	s, ps := before, &pod.Spec
	if len(ps.Containers) < len(s.containers) || len(ps.Volumes) < s.volumes {
		return nil, fmt.Errorf("diff pods: the injection removed a container or a volume")
	}
	w := &writer{buf: append(make([]byte, 0, 8<<10), '[')}
	if len(s.annotations) > 0 {
		// Inject adds annotations (the status; for a vault-k8s Pod its
		// translation and vault-k8s's status) and removes none; add sets
		// a member that is there too.
		keys := make([]string, 0, 4)
		for k, v := range pod.Annotations {
			if old, ok := s.annotations[k]; !ok || old != v {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			w.op("add", "/metadata/annotations/"+pointerToken(k), pod.Annotations[k])
		}
	} else if len(pod.Annotations) > 0 {
		w.op("add", "/metadata/annotations", pod.Annotations)
	}
	if len(ps.InitContainers) != s.initContainers {
		w.set("/spec/initContainers", s.initContainers > 0, len(ps.InitContainers) > 0, ps.InitContainers)
	}
	if !ptrEqual(ps.ShareProcessNamespace, s.shareProcessNamespace) {
		w.set("/spec/shareProcessNamespace", s.shareProcessNamespace != nil, ps.ShareProcessNamespace != nil, ps.ShareProcessNamespace)
	}
	w.appended("/spec/volumes", s.volumes, len(ps.Volumes), func(i int) any { return &ps.Volumes[i] })
	for i := range ps.Containers {
		c := &ps.Containers[i]
		path := "/spec/containers/" + strconv.Itoa(i)
		switch {
		case i >= len(s.containers):
			w.op("add", path, c)
		case !s.containers[i].named:
			w.op("replace", path, c) // perhaps null in the document sent
		default:
			cs := s.containers[i]
			w.appended(path+"/volumeMounts", cs.mounts, len(c.VolumeMounts), func(j int) any { return &c.VolumeMounts[j] })
			if c.LivenessProbe != cs.livenessProbe && !apiequality.Semantic.DeepEqual(c.LivenessProbe, cs.livenessProbe) {
				w.set(path+"/livenessProbe", cs.livenessProbe != nil, c.LivenessProbe != nil, c.LivenessProbe)
			}
		}
	}
	if w.err != nil {
		return nil, fmt.Errorf("marshal the patch: %w", w.err)
	}
	return append(w.buf, ']'), nil
}

// writer writes a JSONPatch, one operation at a time.
type writer struct {
	buf []byte
	err error
}

// op writes one operation; value is marshalled unless op is remove, by
// the JSON v2 engine in its v1 mode: encoding/json's bytes (TestStrict
// holds it to that), and BenchmarkHandlerApiserverPod fell from ~165 to
// ~150 µs per Pod with it.
func (w *writer) op(op, path string, value any) {
	if w.err != nil {
		return
	}
	if len(w.buf) > 1 {
		w.buf = append(w.buf, ',')
	}
	w.buf = append(w.buf, `{"op":"`...)
	w.buf = append(w.buf, op...)
	w.buf = append(w.buf, `","path":`...)
	w.buf = appendString(w.buf, path)
	if op != "remove" {
		v, err := jsonv1.Marshal(value)
		if err != nil {
			w.err = err
			return
		}
		w.buf = append(w.buf, `,"value":`...)
		w.buf = append(w.buf, v...)
	}
	w.buf = append(w.buf, '}')
}

// set writes the operation that gives path its new value: replace where
// the document has it (had), add where it may not, remove where Inject
// cleared it (has false).
func (w *writer) set(path string, had, has bool, value any) {
	switch {
	case !has:
		w.op("remove", path, nil)
	case had:
		w.op("replace", path, value)
	default:
		w.op("add", path, value)
	}
}

// appended writes the operations for a list Inject only appends to, from n
// elements to m: the whole list where the Pod had none (the document may
// have no list there, or null, or []), else each element added at its
// index.
func (w *writer) appended(path string, n, m int, elem func(int) any) {
	if m == n {
		return
	}
	if n == 0 {
		all := make([]any, m)
		for i := range all {
			all[i] = elem(i)
		}
		w.op("add", path, all)
		return
	}
	for i := n; i < m; i++ {
		w.op("add", path+"/"+strconv.Itoa(i), elem(i))
	}
}

// appendString appends s as a JSON string, as encoding/json writes it: a
// path of plain characters (every path Inject writes but an annotation key
// with odd characters) as is, anything else through the encoder.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(buf, q...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// pointerToken escapes a JSON Pointer reference token (RFC 6901).
func pointerToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return pointerEscaper.Replace(s)
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// Shape is what Strict needs of a Pod before Inject changes it: the
// fields Inject changes (injection.apply), and the lengths of the lists it
// appends to or inserts into.
type Shape struct {
	annotations           map[string]string
	initContainers        int
	containers            []containerShape
	volumes               int
	shareProcessNamespace *bool
}

type containerShape struct {
	named         bool // then the document sent has an object there, not null
	mounts        int
	livenessProbe *corev1.Probe
}

// ShapeOf is the Shape of pod.
func ShapeOf(pod *corev1.Pod) *Shape {
	ps := &pod.Spec
	s := &Shape{annotations: maps.Clone(pod.Annotations), initContainers: len(ps.InitContainers),
		containers: make([]containerShape, len(ps.Containers)), volumes: len(ps.Volumes), shareProcessNamespace: ps.ShareProcessNamespace}
	for i, c := range ps.Containers {
		s.containers[i] = containerShape{named: c.Name != "", mounts: len(c.VolumeMounts), livenessProbe: c.LivenessProbe}
	}
	return s
}

func ptrEqual[T comparable](a, b *T) bool {
	return a == b || a != nil && b != nil && *a == *b
}
