package injector

import (
	"encoding/json"
	"fmt"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	kjson "sigs.k8s.io/json"
)

// Patch is the JSONPatch (RFC 6902) that turns original into mutated, as the
// webhook answers it: both Pods are marshalled and diffed, no operation is
// written by hand. No change gives an empty array.
func Patch(original, mutated *corev1.Pod) ([]byte, error) {
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
	if ops == nil {
		ops = []jsonpatch.Operation{}
	}
	return json.Marshal(ops)
}

// PatchRaw is Patch for raw, the Pod as the apiserver sent it, of which
// original is the decoded form (its namespace perhaps filled in). The
// change from original to mutated is merged into raw as a strategic merge
// patch (lists merge by their keys: container and volume names, mount
// paths), and raw is diffed with the result. So the operations apply to raw
// as it is, and fields of raw the Pod type does not know (an apiserver newer
// than this injector) stay on the container they belong to, where a diff of
// the typed Pods would shift them onto the agent inserted before it. Where
// the merge cannot say it (lists with duplicate keys, which the apiserver
// rejects anyway), it is Patch.
func PatchRaw(raw []byte, original, mutated *corev1.Pod) ([]byte, error) {
	merged, err := mergeTemplate(raw, original, mutated)
	if err != nil {
		return Patch(original, mutated)
	}
	check := &corev1.Pod{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(merged, check); err != nil {
		return Patch(original, mutated)
	}
	if check.Namespace == "" {
		check.Namespace = original.Namespace
	}
	if !apiequality.Semantic.DeepEqual(check, mutated) {
		return Patch(original, mutated)
	}
	return diff(raw, merged)
}

// patchSent diffs the Pod as the apiserver sent it with the mutated Pod. It
// is right only when raw holds no field the Pod type does not know (the
// caller checked, with the decode it did anyway): then the typed form loses
// nothing of raw. And it diffs only what Inject may change (sentPod and
// mutatedPod), as raw has it against the mutated Pod's, which keeps the
// diff off the rest of the Pod, a few kilobytes decoded twice into maps:
// the rest of the mutated Pod is raw decoded. Cheaper than PatchRaw by a
// strategic merge and two decodes, and than Patch by most of the diff.
func patchSent(raw []byte, mutated *corev1.Pod) ([]byte, error) {
	var sent sentPod
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &sent); err != nil {
		return nil, fmt.Errorf("decode the Pod sent: %w", err)
	}
	a, err := json.Marshal(&sent)
	if err != nil {
		return nil, fmt.Errorf("marshal the Pod sent: %w", err)
	}
	b, err := json.Marshal(newMutatedPod(mutated, &sent))
	if err != nil {
		return nil, fmt.Errorf("marshal mutated pod: %w", err)
	}
	return diff(a, b)
}

// sentPod is what Inject may change of a Pod (injection.apply), as the
// apiserver sent it: the annotations, the init containers, the volume
// mounts and liveness probe of each container, the containers after them,
// the volumes after them and shareProcessNamespace. Of the volumes, and of a
// container, it keeps the place only (an object, or JSON null): Inject
// appends volumes and changes no other field of a container. A field
// Inject comes to change must be added here and to mutatedPod, or the
// webhook's patch misses it (TestHandlerGolden then says so).
type sentPod struct {
	Metadata *struct {
		Annotations json.RawMessage `json:"annotations,omitempty"`
	} `json:"metadata,omitempty"`
	Spec *struct {
		InitContainers        json.RawMessage  `json:"initContainers,omitempty"`
		Containers            []*sentContainer `json:"containers,omitempty"`
		Volumes               []*struct{}      `json:"volumes,omitempty"`
		ShareProcessNamespace json.RawMessage  `json:"shareProcessNamespace,omitempty"`
	} `json:"spec,omitempty"`
}

type sentContainer struct {
	VolumeMounts  json.RawMessage `json:"volumeMounts,omitempty"`
	LivenessProbe json.RawMessage `json:"livenessProbe,omitempty"`
}

// mutatedPod is sentPod of the mutated Pod, with corev1's JSON names and
// omissions. Where the Pod sent has no object, at the place of a container
// or volume, it holds the whole container or volume of the mutated Pod.
type mutatedPod struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"metadata"`
	Spec struct {
		InitContainers        []corev1.Container `json:"initContainers,omitempty"`
		Containers            []any              `json:"containers"`
		Volumes               []any              `json:"volumes,omitempty"`
		ShareProcessNamespace *bool              `json:"shareProcessNamespace,omitempty"`
	} `json:"spec"`
}

type mutatedContainer struct {
	VolumeMounts  []corev1.VolumeMount `json:"volumeMounts,omitempty"`
	LivenessProbe *corev1.Probe        `json:"livenessProbe,omitempty"`
}

func newMutatedPod(pod *corev1.Pod, sent *sentPod) *mutatedPod {
	var m mutatedPod
	m.Metadata.Annotations = pod.Annotations
	ps := &pod.Spec
	m.Spec.InitContainers, m.Spec.ShareProcessNamespace = ps.InitContainers, ps.ShareProcessNamespace
	var sentContainers []*sentContainer
	var sentVolumes []*struct{}
	if sent.Spec != nil {
		sentContainers, sentVolumes = sent.Spec.Containers, sent.Spec.Volumes
	}
	if ps.Containers != nil {
		m.Spec.Containers = make([]any, len(ps.Containers))
	}
	for i := range ps.Containers {
		c := &ps.Containers[i]
		if i < len(sentContainers) && sentContainers[i] != nil {
			m.Spec.Containers[i] = mutatedContainer{VolumeMounts: c.VolumeMounts, LivenessProbe: c.LivenessProbe}
		} else {
			m.Spec.Containers[i] = c
		}
	}
	if len(ps.Volumes) > 0 {
		m.Spec.Volumes = make([]any, len(ps.Volumes))
	}
	for i := range ps.Volumes {
		if i < len(sentVolumes) && sentVolumes[i] != nil {
			m.Spec.Volumes[i] = struct{}{}
		} else {
			m.Spec.Volumes[i] = &ps.Volumes[i]
		}
	}
	return &m
}
