package injector

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/ramvault/ramvault/pkg/spec"
)

// defaultTargets are the app containers without ramvault.io/containers:
// all of them but those another injector added (injectedByOthers).
func (in *injection) defaultTargets() {
	others := injectedByOthers(in.pod)
	var skipped []string
	for i, c := range in.pod.Spec.Containers {
		if slices.Contains(others, c.Name) {
			skipped = append(skipped, c.Name)
			continue
		}
		in.targets = append(in.targets, i)
	}
	if len(in.targets) == 0 {
		in.fail(key("containers"), "every container of the Pod (%s) was added by another injector, so none gets the secrets by default: name the containers in %s", strings.Join(skipped, ", "), key("containers"))
	}
}

// secretsMounts are the secrets volume's mounts in a target container:
// the Pod's mount-path, and the directory of each other mount path.
func (in *injection) secretsMounts() []corev1.VolumeMount {
	var out []corev1.VolumeMount
	for _, m := range in.ann.Mounts() {
		out = append(out, corev1.VolumeMount{Name: SecretsVolume, MountPath: m.Path, SubPath: m.SubPath, ReadOnly: true})
	}
	return out
}

// mountPathKey is the annotation that sets mount m: mount-path, or the
// first mount-path-<name> with its path.
func (in *injection) mountPathKey(m spec.Mount) string {
	if m.SubPath == "" {
		return key("mount-path")
	}
	for _, s := range in.ann.Secrets {
		if s.MountPath == m.Path {
			return key("mount-path-" + s.Name)
		}
	}
	return key("mount-path")
}

// signalArgs are the agent's flags of a signal reload: the process name,
// or, when none is known, the mount path by which the agent finds the
// target containers' main processes.
func (in *injection) signalArgs() []string {
	switch {
	case !in.signal:
		return nil
	case in.signalProcess != "":
		return []string{"--" + spec.FlagSignalProcess + "=" + in.signalProcess}
	}
	return []string{"--" + spec.FlagSignalMountPath + "=" + in.ann.MountPath}
}

// runAsGroup applies ramvault.io/run-as-group over the targets' group.
func (in *injection) runAsGroup() {
	if g := in.ann.RunAsGroup; g != nil && !in.invalid[key("run-as-group")] {
		in.gid = new(*g)
	}
}

// vaultCAVolume is the volume of the Vault CA bundle: the Pod's Secret, or
// its ConfigMap (or the cluster's), or none.
func (in *injection) vaultCAVolume() *corev1.Volume {
	items := []corev1.KeyToPath{{Key: in.ann.VaultCAKey, Path: vaultCAFile}}
	// Optional: without it the Pod would wait in ContainerCreating
	// forever, saying nothing; the agent then fails with an error naming
	// the ConfigMap or Secret (its termination message).
	if s := in.ann.VaultCASecret; s != "" {
		return &corev1.Volume{Name: VaultCAVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: s, Items: items, Optional: new(true)}}}
	}
	if cm := in.vaultCAConfigMap(); cm != "" {
		return &corev1.Volume{Name: VaultCAVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cm}, Items: items, Optional: new(true)}}}
	}
	return nil
}

// checkResources applies the Pod's agent-requests-* and agent-limits-* over
// the configured resources, and checks that no request is above its limit
// (the memory limit as it will be, grown by the Memory volumes).
func (in *injection) checkResources() {
	r := *in.cfg.Resources.DeepCopy()
	set := func(kind string, list *corev1.ResourceList, values map[string]string) {
		for name, v := range values {
			k := key("agent-" + kind + "-" + name)
			q, err := resource.ParseQuantity(v)
			if err != nil {
				in.fail(k, "%q is not a Kubernetes quantity: write it like 250m, 64Mi or 1G", v)
				continue
			}
			if *list == nil {
				*list = corev1.ResourceList{}
			}
			(*list)[corev1.ResourceName(name)] = q
		}
	}
	set("requests", &r.Requests, in.ann.AgentRequests)
	set("limits", &r.Limits, in.ann.AgentLimits)
	in.agentRes = r
	final := in.resources()
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		req, okR := final.Requests[name]
		lim, okL := final.Limits[name]
		if okR && okL && req.Cmp(lim) > 0 {
			k := key("agent-requests-" + string(name))
			if _, set := in.ann.AgentRequests[string(name)]; !set {
				k = key("agent-limits-" + string(name))
			}
			in.fail(k, "the agent's %s request %s would be above its limit %s: raise %s, or lower %s", name, req.String(), lim.String(),
				key("agent-limits-"+string(name)), key("agent-requests-"+string(name)))
		}
	}
}
