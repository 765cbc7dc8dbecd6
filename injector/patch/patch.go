// Package patch turns what injector.Inject changed into the JSONPatch
// (RFC 6902) a webhook answers, or merges it into a document as written
// (the CLI's manifests). Every patch is a diff made by a library
// (gomodules.xyz/jsonpatch/v2); no operation is written by hand.
package patch

import (
	"encoding/json"
	"fmt"
	"maps"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	kjson "sigs.k8s.io/json"
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

func diff(a, b []byte) ([]byte, error) {
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		return nil, fmt.Errorf("diff pods: %w", err)
	}
	// The library marshals each operation; an array of them needs no
	// reflection, nor a second pass over what it wrote.
	each := make([][]byte, len(ops))
	size := 2 + len(ops)
	for i := range ops {
		if each[i], err = ops[i].MarshalJSON(); err != nil {
			return nil, fmt.Errorf("marshal the patch: %w", err)
		}
		size += len(each[i])
	}
	out := make([]byte, 0, size)
	out = append(out, '[')
	for i, op := range each {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, op...)
	}
	return append(out, ']'), nil
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
// changed it in place. The library diffs two small documents in the Pod's JSON shape
// (podView), what Inject may change before and after, instead of two whole
// Pods. Where the document may hold something other than the typed Pod (a
// container sent as null, a replaced liveness probe or init container list
// that restates or leaves out zero fields) the view before is null: the
// library then replaces the whole value, and never touches a field of it
// the document may not have. Cheaper than Raw by a strategic merge and
// two decodes, and than Typed by most of the diff.
func Strict(before *Shape, mutated *corev1.Pod) ([]byte, error) {
	v, w := views(before, mutated)
	a, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal original pod: %w", err)
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("marshal mutated pod: %w", err)
	}
	return diff(a, b)
}

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

// podView is the part of a Pod that Inject may change, in the Pod's JSON
// shape, so that the library's paths are the Pod's. Inject changes no
// element of the volumes and mounts already there, and removes no
// annotation: those elements are null in both views (the library
// skips a pair of nulls) and the annotations an empty object before. What
// Inject adds is whole. Unset fields are left out, as in corev1. An opted-in
// Pod has annotations, so the document sent has metadata; a Pod with
// containers has a spec.
type podView struct {
	Metadata struct {
		Annotations any `json:"annotations,omitempty"`
	} `json:"metadata"`
	Spec struct {
		InitContainers        any   `json:"initContainers,omitempty"`
		Containers            []any `json:"containers,omitempty"`
		Volumes               []any `json:"volumes,omitempty"`
		ShareProcessNamespace any   `json:"shareProcessNamespace,omitempty"`
	} `json:"spec"`
}

type containerView struct {
	VolumeMounts  []any `json:"volumeMounts,omitempty"`
	LivenessProbe any   `json:"livenessProbe,omitempty"`
}

// null is a JSON null in a view: the value before, which the library
// replaces whole.
type null struct{}

func (null) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// views are the podViews of the Pod of shape s and of pod, that Pod after
// Inject.
func views(s *Shape, pod *corev1.Pod) (before, after *podView) {
	before, after = &podView{}, &podView{}
	if len(s.annotations) > 0 {
		// Inject adds annotations (the status; for a vault-k8s Pod its
		// translation and vault-k8s's status) and removes none.
		added := map[string]string{}
		for k, v := range pod.Annotations {
			if old, ok := s.annotations[k]; !ok || old != v {
				added[k] = v
			}
		}
		before.Metadata.Annotations = struct{}{}
		after.Metadata.Annotations = added
	} else if len(pod.Annotations) > 0 {
		after.Metadata.Annotations = pod.Annotations
	}
	ps := &pod.Spec
	if len(ps.InitContainers) != s.initContainers {
		if s.initContainers > 0 {
			before.Spec.InitContainers = null{}
		}
		if len(ps.InitContainers) > 0 {
			after.Spec.InitContainers = ps.InitContainers
		}
	}
	if !ptrEqual(ps.ShareProcessNamespace, s.shareProcessNamespace) {
		if s.shareProcessNamespace != nil {
			before.Spec.ShareProcessNamespace = *s.shareProcessNamespace
		}
		if ps.ShareProcessNamespace != nil {
			after.Spec.ShareProcessNamespace = *ps.ShareProcessNamespace
		}
	}
	before.Spec.Volumes, after.Spec.Volumes = make([]any, s.volumes), appended(s.volumes, ps.Volumes)
	before.Spec.Containers, after.Spec.Containers = make([]any, len(s.containers)), make([]any, len(ps.Containers))
	for i := range ps.Containers {
		c := &ps.Containers[i]
		if i >= len(s.containers) || !s.containers[i].named {
			after.Spec.Containers[i] = c // appended, or perhaps null in the document sent
			continue
		}
		cs := s.containers[i]
		b, a := &containerView{VolumeMounts: make([]any, cs.mounts)}, &containerView{VolumeMounts: appended(cs.mounts, c.VolumeMounts)}
		if c.LivenessProbe != cs.livenessProbe && !apiequality.Semantic.DeepEqual(c.LivenessProbe, cs.livenessProbe) {
			if cs.livenessProbe != nil {
				b.LivenessProbe = null{}
			}
			if c.LivenessProbe != nil {
				a.LivenessProbe = c.LivenessProbe
			}
		}
		before.Spec.Containers[i], after.Spec.Containers[i] = b, a
	}
	return before, after
}

func ptrEqual[T comparable](a, b *T) bool {
	return a == b || a != nil && b != nil && *a == *b
}

// appended is the view of a list Inject only appends to, of which the Pod
// had n elements before: n nulls, then the elements appended.
func appended[T any](n int, list []T) []any {
	if len(list) == 0 {
		return nil
	}
	v := make([]any, len(list))
	for i := n; i < len(list); i++ {
		v[i] = &list[i]
	}
	return v
}
