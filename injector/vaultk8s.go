package injector

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/ramvault/ramvault/injector/vaultk8s"
	"github.com/ramvault/ramvault/pkg/spec"
)

// fromVaultK8s is what the injection of a Pod opted in to vault-k8s's
// injection takes from its translation.
type fromVaultK8s struct {
	added map[string]string // ramvault.io/ annotations to write onto the Pod
	from  map[string]string // ramvault.io/ key -> the vault-k8s annotation it comes from
}

// vaultK8sAnnotations are the annotations Inject parses. Without
// Config.VaultK8sAnnotations, or for a Pod not opted in to vault-k8s, they
// are the Pod's own, and vk is nil. For a vault-k8s Pod, they are the
// Pod's with the ramvault.io/ translation of its vault.hashicorp.com/ ones
// (ramvault.io/ annotations the Pod sets itself win: a way to add what
// vault-k8s has no annotation for). leave says the Pod is vault-k8s's to
// inject, or already was: Inject returns it unchanged.
func vaultK8sAnnotations(pod *corev1.Pod, cfg Config) (annotations map[string]string, vk *fromVaultK8s, leave bool, err error) {
	if !cfg.VaultK8sAnnotations {
		return pod.Annotations, nil, false, nil
	}
	opted, err := vaultk8s.OptedIn(pod.Annotations)
	if err != nil || !opted {
		return pod.Annotations, nil, false, err
	}
	own, hasOwn := pod.Annotations[spec.Prefix+"inject"]
	switch {
	case vaultk8s.Injected(pod.Annotations):
		return nil, nil, true, nil // vault-k8s's webhook came first
	case hasOwn && own == "false":
		return nil, nil, true, nil // the Pod stays with vault-k8s
	case hasOwn:
		return nil, nil, false, spec.ErrorList{{Field: vaultk8s.InjectAnnotation, Message: fmt.Sprintf(
			"the Pod opts in to both injectors (and %s), and would be injected twice: remove one opt-in (with --vault-k8s-annotations ramvault serves the vault.hashicorp.com/ annotations; `ramvault migrate` rewrites them)", key("inject"))}}
	}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if slices.Contains(vaultk8s.Containers, c.Name) {
				return nil, nil, false, spec.ErrorList{{Field: vaultk8s.InjectAnnotation, Message: fmt.Sprintf(
					"the Pod already has vault-k8s's container %q, without %s: %s: remove the container (an injected Pod copied as it was?), or the opt-in", c.Name, vaultk8s.StatusAnnotation, vaultk8s.StatusInjected)}}
			}
		}
	}
	res, err := vaultk8s.Translate(pod.Annotations)
	if err != nil {
		return nil, nil, false, err
	}
	annotations = maps.Clone(pod.Annotations)
	vk = &fromVaultK8s{added: map[string]string{}, from: res.From}
	for k, v := range res.Annotations {
		if _, set := annotations[k]; !set {
			annotations[k] = v
			vk.added[k] = v
		}
	}
	return annotations, vk, false, nil
}

// origin rewrites the subjects of errs that are translated annotations to
// the vault-k8s annotation the user wrote.
func (vk *fromVaultK8s) origin(errs spec.ErrorList) spec.ErrorList {
	if vk == nil {
		return errs
	}
	out := make(spec.ErrorList, len(errs))
	for i, e := range errs {
		if from, ok := vk.from[e.Field]; ok && vk.added[e.Field] != "" {
			e.Field, e.Message = from, fmt.Sprintf("%s (as %s)", e.Message, strings.TrimSpace(e.Field))
		}
		out[i] = e
	}
	return out
}

// apply writes the translation onto the Pod (the agent gets it in --spec,
// specAnnotations; on the Pod it says what was injected, and checkInjected
// reads ramvault.io/inject), and vault-k8s's status, so that vault-k8s's
// webhook, if installed, leaves the Pod alone.
func (vk *fromVaultK8s) apply(pod *corev1.Pod) {
	if vk == nil {
		return
	}
	maps.Copy(pod.Annotations, vk.added)
	pod.Annotations[vaultk8s.StatusAnnotation] = vaultk8s.StatusInjected
}

// specAnnotations are the annotations the agent gets in --spec (of which
// EncodeFrozen keeps the ramvault.io/ ones): the Pod's, with a vault-k8s
// Pod's translation.
func (in *injection) specAnnotations() map[string]string {
	if in.vk == nil {
		return in.pod.Annotations
	}
	m := maps.Clone(in.pod.Annotations)
	maps.Copy(m, in.vk.added)
	return m
}

// Annotations of other injectors that say which containers they added.
const (
	istioStatusAnnotation  = "sidecar.istio.io/status"  // JSON: {"initContainers":[…],"containers":[…],…}
	linkerdProxyAnnotation = "linkerd.io/proxy-version" // set by Linkerd's proxy injector
	linkerdProxyContainer  = "linkerd-proxy"
	istioProxyContainer    = "istio-proxy"
)

// injectedByOthers are the app containers another injector added to the
// Pod, known from that injector's own annotations: a mesh's proxy (Istio's
// istio-proxy, Linkerd's linkerd-proxy) or vault-k8s's agent. They run as
// their own UIDs and read no secrets, so they are not default targets.
func injectedByOthers(pod *corev1.Pod) []string {
	var out []string
	if status, ok := pod.Annotations[istioStatusAnnotation]; ok {
		var s struct {
			Containers []string `json:"containers"`
		}
		if err := json.Unmarshal([]byte(status), &s); err != nil || len(s.Containers) == 0 {
			s.Containers = []string{istioProxyContainer}
		}
		out = append(out, s.Containers...)
	}
	if _, ok := pod.Annotations[linkerdProxyAnnotation]; ok {
		out = append(out, linkerdProxyContainer)
	}
	if vaultk8s.Injected(pod.Annotations) {
		out = append(out, vaultk8s.Containers...)
	}
	return out
}
