package injector

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ramvault/ramvault/pkg/spec"
)

// StatusAnnotation marks an injected Pod; a Pod carrying it is never
// injected again.
const StatusAnnotation = spec.Prefix + "status"

// Names of what the injector adds. A Pod that already uses one is denied.
const (
	AgentContainer = "ramvault-agent" // native sidecar, or classic sidecar
	// AgentMetricsPortName names the sidecar agent's metrics port, so that
	// Prometheus's Kubernetes discovery finds it (docs/operations.md).
	AgentMetricsPortName = "rv-metrics"
	AgentInitContainer   = "ramvault-agent-init" // classic and init-only
	SecretsVolume        = "ramvault-secrets"    // Memory emptyDir: the secret files
	StateVolume          = "ramvault-state"      // Memory emptyDir: the agent's token and leases
	TokenVolume          = "ramvault-token"      // projected service-account token
	VaultCAVolume        = "ramvault-vault-ca"   // ConfigMap: the CA bundle of Vault's certificate, when set
)

// vaultCADir is where agent containers mount the Vault CA bundle.
const vaultCADir = "/ramvault/vault-ca"

const (
	tokenFile       = "token"
	stateVolumeSize = "1Mi"
	maxCommLen      = 15 // a process name in /proc/<pid>/comm
	flagAuthPath    = "auth-path"
)

// Inject returns a copy of pod with the ramvault agent added, or pod itself
// (copied) when it has not opted in or was injected before. It reports every
// problem at once as a spec.ErrorList, each entry naming the annotation (or,
// when the Pod itself must change, the field) at fault and saying what to do.
// pod.Namespace must be set (the webhook takes it from the request).
func Inject(pod *corev1.Pod, cfg Config) (*corev1.Pod, error) {
	in, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("injector configuration: %w", err)
	}
	return in.InjectInPlace(pod.DeepCopy())
}

// Injector is a Config defaulted and checked once, for a caller that
// injects many Pods (the webhook), not once per Pod.
type Injector struct {
	cfg Config
}

// New returns the Injector of cfg, or Validate's error.
func New(cfg Config) (*Injector, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Injector{cfg: cfg}, nil
}

// InjectInPlace is Inject on pod itself, which it returns, changed only
// when there is no error: the Pod the webhook decoded is its own to change.
func (i *Injector) InjectInPlace(pod *corev1.Pod) (*corev1.Pod, error) {
	cfg := i.cfg
	// Checked before parsing: an injected Pod stays as it is, even if a
	// later injector would read its annotations differently.
	if _, done := pod.Annotations[StatusAnnotation]; done {
		if pod.Annotations[key("inject")] == "true" {
			if err := checkInjected(pod); err != nil {
				return nil, err
			}
		}
		return pod, nil
	}
	annotations, vk, leave, err := vaultK8sAnnotations(pod, cfg)
	if leave {
		return pod, nil
	}
	if err != nil {
		return nil, err
	}
	ann, err := spec.Parse(annotations)
	var errs spec.ErrorList
	if err != nil && !errors.As(err, &errs) {
		return nil, err
	}
	if !ann.Inject {
		// Invalid ramvault.io/ annotations are denied even without an
		// opt-in: `inject: "yes"` or a misspelt key must not pass silently.
		if len(errs) > 0 {
			return nil, errs
		}
		return pod, nil
	}
	in := &injection{pod: pod, cfg: cfg, ann: ann, invalid: map[string]bool{}, vk: vk}
	for _, e := range errs {
		in.invalid[e.Field] = true
	}
	in.check()
	if errs = append(errs, in.errs...); len(errs) > 0 {
		return nil, vk.origin(errs)
	}
	in.apply()
	vk.apply(pod)
	return pod, nil
}

// injection is one Pod on its way through Inject: check decides everything
// and collects the errors, apply changes the Pod.
type injection struct {
	pod     *corev1.Pod
	cfg     Config
	ann     *spec.Annotations
	invalid map[string]bool // annotations spec.Parse rejected: checks that read them are skipped
	errs    spec.ErrorList

	mode          spec.Mode
	targets       []int // indexes into pod.Spec.Containers
	initTargets   []int // indexes into pod.Spec.InitContainers (named in ramvault.io/containers)
	vaultAddr     string
	role          string
	uid           int64
	gid           *int64
	signalProcess string // set when some secret reloads by signal
	signal        bool
	restart       bool
	volumeSize    resource.Quantity
	frozen        string // the agent's --spec
	// agentRes are the configured resources with the Pod's
	// agent-requests-* and agent-limits-*; vk is a vault-k8s Pod's
	// translation, or nil.
	agentRes corev1.ResourceRequirements
	vk       *fromVaultK8s
}

func key(name string) string { return spec.Prefix + name }

func (in *injection) fail(subject, format string, args ...any) {
	in.errs = append(in.errs, spec.Error{Field: subject, Message: fmt.Sprintf(format, args...)})
}

func (in *injection) check() {
	if ns := in.pod.Namespace; !in.cfg.namespaceAllowed(ns) {
		in.fail(key("inject"), "ramvault does not inject Pods in namespace %s: the cluster's own components must not depend on Vault (the injector's --allowed-namespaces can allow it)", ns)
	}
	in.checkMode()
	in.checkNames()
	in.checkMounts()
	in.checkHostNetwork()
	in.checkTargets()
	in.checkVaultAddr()
	in.checkUser()
	in.checkReload()
	in.role = in.ann.Role
	if in.role == "" {
		in.role = cmp.Or(in.pod.Spec.ServiceAccountName, "default")
	}
	frozen, err := spec.EncodeFrozen(in.specAnnotations())
	if err != nil {
		in.fail(key("inject"), "%v", err)
	}
	in.frozen = frozen
	if !in.invalid[key("volume-size")] {
		q, err := resource.ParseQuantity(in.ann.VolumeSize)
		if err != nil {
			in.fail(key("volume-size"), "%q is not a size: write it like 512Ki or 4Mi", in.ann.VolumeSize)
		}
		in.volumeSize = q
	}
	in.checkResources()
}

func (in *injection) checkMode() {
	in.mode = in.ann.Mode
	switch {
	case in.mode == "" && in.cfg.NativeSidecars:
		in.mode = spec.ModeNative
	case in.mode == "":
		in.mode = spec.ModeClassic
	case in.mode == spec.ModeNative && !in.cfg.NativeSidecars:
		in.fail(key("mode"), "native needs native sidecars (Kubernetes ≥ 1.29), and this injector runs with --native-sidecars=false: use mode classic, or remove the annotation")
	}
	if rp := in.pod.Spec.RestartPolicy; in.mode == spec.ModeClassic && rp != "" && rp != corev1.RestartPolicyAlways {
		in.fail(key("mode"), "classic adds a sidecar container that runs until the Pod ends, and this Pod (restartPolicy %s, a Job's, say) would then never complete: use mode init-only, or native where the cluster has native sidecars", rp)
	}
}

// agentNames are the containers this injection adds.
func (in *injection) agentNames() []string {
	switch in.mode {
	case spec.ModeNative:
		return []string{AgentContainer}
	case spec.ModeClassic:
		return []string{AgentInitContainer, AgentContainer}
	}
	return []string{AgentInitContainer}
}

// checkNames denies Pods that already use a name or port the agent needs.
func (in *injection) checkNames() {
	for i, v := range in.pod.Spec.Volumes {
		if slices.Contains(ownVolumes, v.Name) {
			in.fail(fmt.Sprintf("spec.volumes[%d]", i), "the Pod already has a volume named %q, a name the injector needs: rename that volume (and the volumeMounts that use it)", v.Name)
		}
	}
	agents := in.agentNames()
	lists := []struct {
		field      string
		containers []corev1.Container
	}{{"spec.initContainers", in.pod.Spec.InitContainers}, {"spec.containers", in.pod.Spec.Containers}}
	for _, l := range lists {
		for i, c := range l.containers {
			field := fmt.Sprintf("%s[%d]", l.field, i)
			if slices.Contains(agents, c.Name) {
				in.fail(field, "the Pod already has a container named %q, a name the injector needs: rename that container (or remove it, if it is an agent added by hand)", c.Name)
			}
			for j, p := range c.Ports {
				if p.ContainerPort == spec.AgentHealthPort || p.ContainerPort == spec.AgentMetricsPort {
					in.fail(fmt.Sprintf("%s.ports[%d]", field, j), "container %q listens on port %d, which the agent uses in the same network namespace (ports %d and %d): move the app to another port", c.Name, p.ContainerPort, spec.AgentHealthPort, spec.AgentMetricsPort)
				}
			}
		}
	}
}

// checkTargets finds the app containers that get the secrets volume.
func (in *injection) checkTargets() {
	cs := in.pod.Spec.Containers
	if len(cs) == 0 {
		in.fail("spec.containers", "the Pod has no containers")
		return
	}
	if len(in.ann.Containers) == 0 {
		in.defaultTargets()
	} else {
		var missing []string
		named := func(name string) func(corev1.Container) bool {
			return func(c corev1.Container) bool { return c.Name == name }
		}
		for _, name := range in.ann.Containers {
			if i := slices.IndexFunc(cs, named(name)); i >= 0 {
				if !slices.Contains(in.targets, i) {
					in.targets = append(in.targets, i)
				}
			} else if j := slices.IndexFunc(in.pod.Spec.InitContainers, named(name)); j >= 0 {
				if !slices.Contains(in.initTargets, j) {
					in.initTargets = append(in.initTargets, j)
				}
			} else {
				missing = append(missing, fmt.Sprintf("%q", name))
			}
		}
		if len(in.initTargets) > 0 && in.ann.Placement == "last" {
			in.fail(key("containers"), "init container %q gets the secrets, so the agent must run before it, and %s is last: remove %s, or that init container from %s",
				in.pod.Spec.InitContainers[in.initTargets[0]].Name, key("agent-placement"), key("agent-placement"), key("containers"))
		}
		if len(missing) > 0 {
			names := make([]string, len(cs))
			for i, c := range cs {
				names[i] = c.Name
			}
			for _, c := range in.pod.Spec.InitContainers {
				names = append(names, c.Name+" (init)")
			}
			noun := "container"
			if len(missing) > 1 {
				noun = "containers"
			}
			in.fail(key("containers"), "no %s %s in the Pod; its containers are %s", noun, strings.Join(missing, ", "), strings.Join(names, ", "))
		}
	}
	if in.invalid[key("mount-path")] {
		return
	}
	for _, c := range in.targetContainers() {
		for _, m := range c.VolumeMounts {
			for _, sm := range in.ann.Mounts() {
				if path.Clean(m.MountPath) == sm.Path {
					k := in.mountPathKey(sm)
					in.fail(k, "container %q already mounts volume %q at %s: set %s to a free path", c.Name, m.Name, sm.Path, k)
				}
			}
		}
	}
}

// targetContainers are the containers that get the secrets volume: the app
// containers, then the init containers named in ramvault.io/containers.
func (in *injection) targetContainers() []corev1.Container {
	out := make([]corev1.Container, 0, len(in.targets)+len(in.initTargets))
	for _, i := range in.targets {
		out = append(out, in.pod.Spec.Containers[i])
	}
	for _, i := range in.initTargets {
		out = append(out, in.pod.Spec.InitContainers[i])
	}
	return out
}

func (in *injection) checkVaultAddr() {
	if in.invalid[key("vault-addr")] {
		return
	}
	if in.cfg.VaultAddrsUnknown && in.cfg.VaultAddr == "" && len(in.cfg.AllowedVaultAddrs) == 0 {
		in.vaultAddr = in.ann.VaultAddr
		return
	}
	allowed := in.cfg.vaultAddrs()
	switch {
	case in.ann.VaultAddr != "" && slices.Contains(allowed, in.ann.VaultAddr):
		in.vaultAddr = in.ann.VaultAddr
	case in.ann.VaultAddr != "" && len(allowed) == 0:
		in.fail(key("vault-addr"), "%q is not allowed: this injector allows no Vault address (start it with --vault-addr)", in.ann.VaultAddr)
	case in.ann.VaultAddr != "":
		hint := ""
		if in.cfg.VaultAddr != "" {
			hint = ", or remove the annotation to use the default " + in.cfg.VaultAddr
		}
		in.fail(key("vault-addr"), "%q is not allowed by this injector: use one of %s%s", in.ann.VaultAddr, strings.Join(allowed, ", "), hint)
	case in.cfg.VaultAddr != "":
		in.vaultAddr = in.cfg.VaultAddr
	case len(allowed) > 0:
		in.fail(key("vault-addr"), "this injector has no default Vault address: set the annotation to one of %s", strings.Join(allowed, ", "))
	default:
		in.fail(key("vault-addr"), "this injector has no Vault address: start it with --vault-addr")
	}
}

// checkUser decides the UID of the agent, which owns the secret files (mode
// 0400): the app's UID, so that the app, and only the app, can read them.
func (in *injection) checkUser() {
	targets := in.targetContainers()
	if in.invalid[key("run-as-user")] || len(targets) == 0 {
		return
	}
	type target struct {
		name     string
		uid, gid *int64
	}
	ts := make([]target, len(targets))
	for k, c := range targets {
		ts[k] = target{name: c.Name, uid: effective(in.pod, c, func(s *corev1.SecurityContext) *int64 { return s.RunAsUser }, func(s *corev1.PodSecurityContext) *int64 { return s.RunAsUser }),
			gid: effective(in.pod, c, func(s *corev1.SecurityContext) *int64 { return s.RunAsGroup }, func(s *corev1.PodSecurityContext) *int64 { return s.RunAsGroup })}
	}
	defer in.runAsGroup()
	if u := in.ann.RunAsUser; u != nil {
		in.uid = *u
		var wrong []string
		for _, t := range ts {
			if t.uid != nil && *t.uid != 0 && *t.uid != *u { // root reads anything
				wrong = append(wrong, fmt.Sprintf("container %q runs as %d", t.name, *t.uid))
			}
		}
		if len(wrong) > 0 {
			in.fail(key("run-as-user"), "%d, but %s: the secret files (mode 0400, owned by %d) would be unreadable there; remove the annotation or make the UIDs the same", *u, strings.Join(wrong, " and "), *u)
		}
	} else {
		var unset []string
		var uids []int64
		for _, t := range ts {
			switch {
			case t.uid == nil:
				unset = append(unset, fmt.Sprintf("%q", t.name))
			case !slices.Contains(uids, *t.uid):
				uids = append(uids, *t.uid)
			}
		}
		switch {
		case len(unset) > 0:
			in.fail(key("run-as-user"), "container %s has no runAsUser (neither in its securityContext nor in the Pod's), so the owner of the secret files is unknown: set securityContext.runAsUser on the Pod or the container, or set %s to the app's UID", strings.Join(unset, ", "), key("run-as-user"))
			return
		case len(uids) > 1:
			who := make([]string, len(ts))
			for k, t := range ts {
				who[k] = fmt.Sprintf("%s: %d", t.name, *t.uid)
			}
			in.fail(key("run-as-user"), "the target containers run as different users (%s), and the secret files (mode 0400) can belong to one only: give them the same runAsUser, or list those sharing one in %s", strings.Join(who, ", "), key("containers"))
			return
		case uids[0] == 0:
			in.fail(key("run-as-user"), "the target containers run as root (runAsUser 0) and the agent never does: set %s to the non-root UID that should own the files", key("run-as-user"))
			return
		}
		in.uid = uids[0]
	}
	// The group of the files does not matter (mode 0400), but the agent
	// runs like the app where the app says how.
	in.gid = ts[0].gid
	for _, t := range ts[1:] {
		if in.gid == nil || t.gid == nil || *t.gid != *in.gid {
			in.gid = nil
			break
		}
	}
}

// effective reads a security setting of container c, else of the Pod.
func effective(pod *corev1.Pod, c corev1.Container, fromContainer func(*corev1.SecurityContext) *int64, fromPod func(*corev1.PodSecurityContext) *int64) *int64 {
	if c.SecurityContext != nil {
		if v := fromContainer(c.SecurityContext); v != nil {
			return v
		}
	}
	if pod.Spec.SecurityContext != nil {
		return fromPod(pod.Spec.SecurityContext)
	}
	return nil
}

// checkReload wires what the reloads of the Pod's secrets need.
func (in *injection) checkReload() {
	var signalKey, restartKey string
	for _, s := range in.ann.Secrets {
		k := key("reload")
		if s.Reload != nil {
			k = key("reload-" + s.Name)
		}
		switch in.ann.ReloadFor(s).Kind {
		case spec.ReloadSignal:
			signalKey = cmp.Or(signalKey, k)
		case spec.ReloadRestart:
			restartKey = cmp.Or(restartKey, k)
		}
	}
	if in.mode == spec.ModeInitOnly {
		// Nothing runs beside the app to reload it. spec.Parse reports a
		// Pod-wide restart; a secret's own is reported here.
		if restartKey != "" && restartKey != key("reload") {
			in.fail(restartKey, "restart needs the agent running beside the app; mode init-only has none (use mode native or classic, or another reload)")
		}
		return
	}
	if signalKey != "" {
		in.signal = true
		if sp := in.pod.Spec.ShareProcessNamespace; sp != nil && !*sp {
			in.fail(signalKey, "a signal reload needs a process namespace shared with the app, and the Pod sets spec.shareProcessNamespace: false: remove that field, or choose another reload")
		}
		in.checkSignalProcess()
		in.checkSharedProcesses(signalKey)
	}
	if restartKey != "" {
		in.restart = true
		if in.invalid[key("replace-liveness")] || in.ann.ReplaceLiveness {
			return
		}
		for _, i := range in.targets {
			if c := in.pod.Spec.Containers[i]; c.LivenessProbe != nil {
				in.fail(restartKey, "restart takes over the liveness probe of container %q, which already has one: set %s: \"true\" to replace it, or choose another reload", c.Name, key("replace-liveness"))
			}
		}
	}
}

func (in *injection) checkSignalProcess() {
	if in.invalid[key("signal-process")] || len(in.targets) == 0 {
		return
	}
	if in.signalProcess = in.ann.SignalProcess; in.signalProcess != "" {
		return
	}
	c := in.pod.Spec.Containers[in.targets[0]]
	if len(c.Command) > 0 {
		name := path.Base(c.Command[0])
		if len(name) > maxCommLen {
			name = name[:maxCommLen]
		}
		if name != "" && name != "/" && name != "." {
			in.signalProcess = name
			return
		}
	}
	// No name to give (the image's entrypoint is not known at
	// admission): the agent signals the main process of each container
	// that mounts the secrets (signalArgs).
}

// apply changes the Pod. The webhook's patch writes operations for only
// the fields it changes (patch.Strict, whose Shape lists them): a new one
// must be added there.
func (in *injection) apply() {
	ps := &in.pod.Spec
	ps.Volumes = append(ps.Volumes, in.volumes()...)
	for _, i := range in.targets {
		c := &ps.Containers[i]
		c.VolumeMounts = append(c.VolumeMounts, in.secretsMounts()...)
		if in.restart {
			c.LivenessProbe = restartProbe(c.Name)
		}
	}
	for _, i := range in.initTargets { // before the agent goes in front of them
		c := &ps.InitContainers[i]
		c.VolumeMounts = append(c.VolumeMounts, in.secretsMounts()...)
	}
	if in.signal {
		ps.ShareProcessNamespace = new(true)
	}
	var first corev1.Container
	switch in.mode {
	case spec.ModeNative:
		first = in.sidecarAgent()
		first.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
		// The kubelet starts the next containers once this hook returns:
		// when every secret has been written once. A startup probe would do
		// the same a tick of its period later (up to 1 s on every Pod).
		// After 2 min the hook fails, and the kubelet restarts the agent.
		first.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{spec.AgentBinary, spec.AwaitStartup, "--timeout=2m"}}}}
		first.LivenessProbe = agentLiveness()
	case spec.ModeClassic:
		first = in.agent(AgentInitContainer, "init")
		sidecar := in.sidecarAgent()
		sidecar.LivenessProbe = agentLiveness()
		if d := classicRevokeDelay(in.pod); d > 0 {
			sidecar.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
				Command: []string{spec.AgentBinary, spec.AgentSleep, strconv.FormatInt(d, 10) + "s"}}}}
		}
		ps.Containers = append(ps.Containers, sidecar)
	default:
		first = in.agent(AgentInitContainer, "init")
	}
	if in.ann.Placement == "last" {
		ps.InitContainers = append(ps.InitContainers, first)
	} else {
		ps.InitContainers = append([]corev1.Container{first}, ps.InitContainers...)
	}
	in.pod.Annotations[StatusAnnotation] = strings.TrimSpace("injected " + in.cfg.Version)
}

func (in *injection) volumes() []corev1.Volume {
	audience := in.cfg.Audience
	if _, set := in.pod.Annotations[key("audience")]; set {
		audience = in.ann.Audience
	}
	vols := []corev1.Volume{
		{Name: SecretsVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: new(in.volumeSize)}}},
		{Name: StateVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: new(resource.MustParse(stateVolumeSize))}}},
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: audience, ExpirationSeconds: new(in.cfg.TokenExpirationSeconds), Path: tokenFile}}}}}},
	}
	if v := in.vaultCAVolume(); v != nil {
		vols = append(vols, *v)
	}
	return vols
}

// vaultCAFile is the ConfigMap key, and the file, of the Vault CA bundle.
const vaultCAFile = "ca.crt"

// vaultCAConfigMap is the Pod's choice, else the cluster default (unless
// the Pod's CA is in a Secret), else "".
func (in *injection) vaultCAConfigMap() string {
	if in.ann.VaultCASecret != "" {
		return ""
	}
	return cmp.Or(in.ann.VaultCAConfigMap, in.cfg.VaultCAConfigMap)
}

// sidecarAgent is the agent container that keeps running beside the app,
// with its metrics port declared by name (an init container serves none).
func (in *injection) sidecarAgent() corev1.Container {
	c := in.agent(AgentContainer, "sidecar")
	c.Ports = []corev1.ContainerPort{{Name: AgentMetricsPortName, ContainerPort: spec.AgentMetricsPort, Protocol: corev1.ProtocolTCP}}
	return c
}

// agent is an agent container in the given --mode.
func (in *injection) agent(name, mode string) corev1.Container {
	arg := func(flag, value string) string { return "--" + flag + "=" + value }
	args := []string{
		arg(spec.FlagMode, mode),
		arg(spec.FlagVaultAddr, in.vaultAddr),
		arg(spec.FlagRole, in.role),
		// Not yet a constant of the contract; the agent has the flag, and
		// ramvault.io/auth-path wins over it like the others.
		arg(flagAuthPath, in.cfg.AuthPath),
	}
	args = append(args, in.signalArgs()...)
	if n := in.ann.VaultTLSServerName; n != "" {
		args = append(args, arg(spec.FlagVaultTLSName, n))
	}
	mounts := []corev1.VolumeMount{
		{Name: SecretsVolume, MountPath: spec.AgentSecretsDir},
		{Name: StateVolume, MountPath: spec.AgentStateDir},
		{Name: TokenVolume, MountPath: spec.AgentTokenDir, ReadOnly: true},
	}
	if in.vaultCAConfigMap() != "" || in.ann.VaultCASecret != "" {
		args = append(args, arg(spec.FlagVaultCACert, path.Join(vaultCADir, vaultCAFile)))
		mounts = append(mounts, corev1.VolumeMount{Name: VaultCAVolume, MountPath: vaultCADir, ReadOnly: true})
	}
	args = append(args,
		// What was checked, frozen: the agent never reads the live
		// annotations, which `kubectl annotate` could change.
		arg(spec.FlagSpec, in.frozen),
		arg(spec.FlagTokenFile, path.Join(spec.AgentTokenDir, tokenFile)),
		arg(spec.FlagSecretsDir, spec.AgentSecretsDir),
		arg(spec.FlagStateDir, spec.AgentStateDir),
	)
	return corev1.Container{
		Name:                     name,
		Image:                    in.cfg.AgentImage,
		Args:                     args,
		Resources:                in.resources(),
		VolumeMounts:             mounts,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// Pod Security "restricted", and the app's UID so that the files
		// are the app's.
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                new(in.uid),
			RunAsGroup:               in.gid,
			RunAsNonRoot:             new(true),
			AllowPrivilegeEscalation: new(false),
			ReadOnlyRootFilesystem:   new(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// resources are the configured ones, the memory limit raised by the Memory
// volumes the agent fills: tmpfs pages count against the writer's cgroup.
func (in *injection) resources() corev1.ResourceRequirements {
	r := *in.agentRes.DeepCopy()
	if limit, ok := r.Limits[corev1.ResourceMemory]; ok {
		limit.Add(in.volumeSize)
		limit.Add(resource.MustParse(stateVolumeSize))
		r.Limits[corev1.ResourceMemory] = limit
	}
	return r
}

// agentLiveness is the agent container's liveness probe: every 30 s, a
// restart after 3 unanswered (the kubelet's default period is 10 s). Each
// probe wakes an otherwise idle agent: on the 2-core development VM one
// answer cost the agent 3-4 ms of CPU (a bare net/http server the same),
// so at 10 s the probes were most of an idle agent's CPU (issue 13's
// bench-scale). A hung agent is restarted after about 90 s instead of
// 30 s; its files stay on the volume meanwhile.
func agentLiveness() *corev1.Probe { return agentProbe("/healthz", 30, 3) }

// agentProbe asks the agent's health endpoint.
func agentProbe(path string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(spec.AgentHealthPort)}},
		PeriodSeconds:    period,
		FailureThreshold: failures,
	}
}

// agentShutdownGrace is the agent's --shutdown-grace (its default): how long
// it may take to revoke after SIGTERM.
const agentShutdownGrace = 10

// classicRevokeDelay is how long, in seconds, the classic sidecar's preStop
// hook holds back its SIGTERM. The kubelet stops the app and the classic
// sidecar together, and the agent revokes the Pod's leases and token at once
// on SIGTERM: without the delay an app still finishing its work would lose
// its database credentials. 5 s (vault-k8s's agent-revoke-grace default),
// less where the Pod's grace period would then leave the agent under
// agentShutdownGrace to revoke; none where it leaves nothing. Native sidecars
// need none: the kubelet stops them after the app.
func classicRevokeDelay(pod *corev1.Pod) int64 {
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	return max(0, min(5, grace-agentShutdownGrace))
}

// restartProbe is the liveness probe of an app container under reload
// restart: the agent fails it once when that container must restart, so one
// failure must be enough. The delay covers a classic sidecar that starts
// beside the app and is not listening yet.
func restartProbe(container string) *corev1.Probe {
	p := agentProbe("/restart-probe?"+url.Values{"container": {container}}.Encode(), 5, 1)
	p.InitialDelaySeconds = 10
	return p
}
