package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/patch"
	"github.com/ramvault/ramvault/pkg/spec"
)

// readDocuments splits a stream of YAML documents (separated by ---) or of
// JSON objects into its documents, each as JSON. Empty documents are dropped.
func readDocuments(r io.Reader) ([]json.RawMessage, error) {
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

// templatePath is where an object of kind gk keeps the Pod it runs: nil for
// a Pod itself; ok is false for kinds without Pods.
func templatePath(gk schema.GroupKind) (path []string, ok bool) {
	switch gk {
	case schema.GroupKind{Kind: "Pod"}:
		return nil, true
	case schema.GroupKind{Group: "apps", Kind: "Deployment"}, schema.GroupKind{Group: "apps", Kind: "StatefulSet"},
		schema.GroupKind{Group: "apps", Kind: "DaemonSet"}, schema.GroupKind{Group: "apps", Kind: "ReplicaSet"},
		schema.GroupKind{Kind: "ReplicationController"}, schema.GroupKind{Group: "batch", Kind: "Job"}:
		return []string{"spec", "template"}, true
	case schema.GroupKind{Group: "batch", Kind: "CronJob"}:
		return []string{"spec", "jobTemplate", "spec", "template"}, true
	}
	return nil, false
}

// object is one document of a manifest.
type object struct {
	raw   json.RawMessage
	meta  metav1.PartialObjectMetadata
	label string // for messages: Kind/name
}

func newObject(n int, raw json.RawMessage) (*object, error) {
	o := &object{raw: raw}
	if err := json.Unmarshal(raw, &o.meta); err != nil || o.meta.Kind == "" {
		return nil, fmt.Errorf("document %d: not a Kubernetes object (no kind)", n)
	}
	switch name := o.meta.Name; {
	case name != "":
		o.label = o.meta.Kind + "/" + name
	case o.meta.GenerateName != "":
		o.label = o.meta.Kind + "/" + o.meta.GenerateName + "*"
	default:
		o.label = fmt.Sprintf("%s (document %d)", o.meta.Kind, n)
	}
	return o, nil
}

// inject runs Inject on the Pod of the object, if it has one, and returns
// the object as JSON with the changes merged into the document as written
// (so that nothing else of it changes), or the error of Inject.
func (o *object) inject(cfg injector.Config) (json.RawMessage, error) {
	gv, err := schema.ParseGroupVersion(o.meta.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("apiVersion %q: %w", o.meta.APIVersion, err)
	}
	path, ok := templatePath(gv.WithKind(o.meta.Kind).GroupKind())
	if !ok {
		return o.raw, nil
	}
	var doc any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(o.raw, &doc); err != nil {
		return nil, err
	}
	var parent map[string]any // holds the template at path[len(path)-1]
	tmplDoc := doc
	for i, p := range path {
		m, _ := tmplDoc.(map[string]any)
		if m[p] == nil {
			return nil, fmt.Errorf("no %s", strings.Join(path[:i+1], "."))
		}
		parent, tmplDoc = m, m[p]
	}
	tmplRaw, err := json.Marshal(tmplDoc)
	if err != nil {
		return nil, err
	}
	pod, err := decodePod(tmplRaw, path == nil)
	if err != nil {
		return nil, err
	}
	if pod.Namespace == "" {
		pod.Namespace = o.meta.Namespace
	}
	out, err := injector.Inject(pod, cfg)
	if err != nil {
		return nil, err
	}
	if apiequality.Semantic.DeepEqual(pod, out) {
		return o.raw, nil
	}
	merged, err := patch.Merge(tmplRaw, pod, out)
	if err != nil {
		return nil, err
	}
	if parent == nil {
		return merged, nil
	}
	var v any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(merged, &v); err != nil {
		return nil, err
	}
	parent[path[len(path)-1]] = v
	return json.Marshal(doc)
}

// decodePod reads a Pod, or a pod template as a Pod. Unknown fields are
// errors: a misspelt field would be dropped by the decoding and the Pod
// injected as something else than it is.
func decodePod(raw []byte, isPod bool) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	var target any = pod
	tmpl := &corev1.PodTemplateSpec{}
	if !isPod {
		target = tmpl
	}
	strict, err := kjson.UnmarshalStrict(raw, target)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		where := ""
		if !isPod {
			where = " in the pod template"
		}
		return nil, fmt.Errorf("%s%s", strings.Join(msgs, "; "), where)
	}
	if !isPod {
		pod.ObjectMeta, pod.Spec = tmpl.ObjectMeta, tmpl.Spec
	}
	return pod, nil
}

// errorLines are the lines reporting err about the object: one per problem.
func (o *object) errorLines(err error) []string {
	var list spec.ErrorList
	if !errors.As(err, &list) {
		return []string{o.label + ": " + err.Error()}
	}
	lines := make([]string, len(list))
	for i, e := range list {
		lines[i] = o.label + ": " + e.Error()
	}
	return lines
}
