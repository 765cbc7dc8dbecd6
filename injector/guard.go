package injector

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/ramvault/ramvault/pkg/spec"
)

// The checks of this file close ways around the injector's other checks:
// what a Pod could claim or reference so that, once injected, one of its
// containers gets what only the agent or the targets may have.

// ownVolumes are the volumes the injector adds.
var ownVolumes = []string{SecretsVolume, StateVolume, TokenVolume, VaultCAVolume,
	"ramvault-podinfo", // the Pods injected before --spec have it: keep the name reserved
}

// checkMounts denies a Pod whose containers mount a volume by one of the
// injector's names. The apiserver accepts a mount of a volume the Pod does
// not have yet when a webhook adds the volume: without this check, such a
// container would get the agent's token or state volume, read-write.
func (in *injection) checkMounts() {
	lists := []struct {
		field      string
		containers []corev1.Container
	}{{"spec.initContainers", in.pod.Spec.InitContainers}, {"spec.containers", in.pod.Spec.Containers}}
	own := func(name string) bool {
		// A volume of the Pod's own by that name is denied by checkNames.
		return slices.Contains(ownVolumes, name) &&
			!slices.ContainsFunc(in.pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
	}
	for _, l := range lists {
		for i, c := range l.containers {
			for j, m := range c.VolumeMounts {
				if own(m.Name) {
					in.fail(fmt.Sprintf("%s[%d].volumeMounts[%d]", l.field, i, j),
						"container %q mounts volume %q, a volume the injector adds for the agent: remove that volumeMount (the injector mounts the secrets into the containers of %s itself, read-only)",
						c.Name, m.Name, key("containers"))
				}
			}
			for j, d := range c.VolumeDevices {
				if own(d.Name) {
					in.fail(fmt.Sprintf("%s[%d].volumeDevices[%d]", l.field, i, j),
						"container %q uses volume %q as a device, a volume the injector adds for the agent: remove it", c.Name, d.Name)
				}
			}
		}
	}
}

// checkSharedProcesses denies, when a signal reload shares the Pod's process
// namespace, every container that is not a target and may run as the UID
// that owns the secrets: with one process namespace, a process of the same
// UID reaches the app's mounts through /proc/<app pid>/root, so not mounting
// the volume would not keep it from reading the files. A container with
// another explicit runAsUser (a mesh proxy, say) is fine.
func (in *injection) checkSharedProcesses(signalKey string) {
	if in.invalid[key("run-as-user")] || in.uid == 0 {
		return
	}
	shares := fmt.Sprintf("the signal reload of %s shares the Pod's process namespace", signalKey)
	for i, c := range in.pod.Spec.Containers {
		field := fmt.Sprintf("spec.containers[%d]", i)
		if hasCapability(c, "SYS_PTRACE") {
			in.fail(field, "container %q adds capability SYS_PTRACE; %s, where it could read the agent's memory (its Vault token) and every container's files: drop SYS_PTRACE, or use another reload (http, restart)",
				c.Name, shares)
			continue
		}
		if slices.Contains(in.targets, i) {
			continue
		}
		uid := effective(in.pod, c, func(s *corev1.SecurityContext) *int64 { return s.RunAsUser }, func(s *corev1.PodSecurityContext) *int64 { return s.RunAsUser })
		switch {
		case uid == nil:
			in.fail(field, "container %q is not in %s and sets no runAsUser, so it may run as %d, the owner of the secrets; %s, through which such a container reads the app's files: give it another runAsUser, add it to %s, or use another reload (http, restart)",
				c.Name, key("containers"), in.uid, shares, key("containers"))
		case *uid == in.uid:
			in.fail(field, "container %q is not in %s but runs as %d, the owner of the secrets; %s, through which it would read the app's files: give it another runAsUser, add it to %s, or use another reload (http, restart)",
				c.Name, key("containers"), in.uid, shares, key("containers"))
		}
	}
}

func hasCapability(c corev1.Container, name corev1.Capability) bool {
	if c.SecurityContext == nil || c.SecurityContext.Capabilities == nil {
		return false
	}
	return slices.ContainsFunc(c.SecurityContext.Capabilities.Add, func(a corev1.Capability) bool {
		return strings.TrimPrefix(strings.ToUpper(string(a)), "CAP_") == string(name)
	})
}

// checkInjected is the check of a Pod that carries ramvault.io/status: it
// is left as it is only when it holds what an injection adds (the Pod
// of `kubectl get pod -o yaml`, applied again). A status set by hand on a
// Pod without the agent would otherwise skip every other check.
func checkInjected(pod *corev1.Pod) error {
	has := func(cs []corev1.Container, name string) bool {
		return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	}
	agent := has(pod.Spec.InitContainers, AgentContainer) || has(pod.Spec.InitContainers, AgentInitContainer) || has(pod.Spec.Containers, AgentContainer)
	secrets := slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Name == SecretsVolume && v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory
	})
	if agent && secrets {
		return nil
	}
	return spec.ErrorList{{Field: StatusAnnotation, Message: fmt.Sprintf(
		"the Pod says it was injected, but it has no ramvault agent container or no in-memory %s volume: remove %s (the injector sets it)", SecretsVolume, StatusAnnotation)}}
}

// checkHostNetwork denies Pods on the node's network: the agent listens on
// fixed ports (health, metrics), which would clash with those of every
// other such Pod on the node, and would be open on the node's addresses.
func (in *injection) checkHostNetwork() {
	if in.pod.Spec.HostNetwork {
		in.fail("spec.hostNetwork", "the agent listens on ports %d and %d of the Pod's network, which hostNetwork makes the node's, where they clash with every other injected hostNetwork Pod and are open to the node's networks: remove hostNetwork, or deliver this Pod's secrets another way",
			spec.AgentHealthPort, spec.AgentMetricsPort)
	}
}
