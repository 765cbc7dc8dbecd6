package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

const kvPolicy = `path "secret/data/e2e/*" { capabilities = ["read"] }
path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }`

func (w *world) kv() string {
	w.t.Helper()
	plant(w.env, "planted-"+w.ns)
	if _, err := w.vc.KVv2("secret").Put(context.Background(), "e2e/"+w.ns, map[string]any{"password": "planted-" + w.ns}); err != nil {
		w.t.Fatal(err)
	}
	return "secret/data/e2e/" + w.ns
}

func (w *world) dbRole(ttl, maxTTL string) string {
	w.t.Helper()
	return stack.DBRoleFor(w.t, w.env, w.role, ttl, maxTTL)
}

func appSpec(script string) corev1.PodSpec {
	return corev1.PodSpec{
		ServiceAccountName:            "app",
		TerminationGracePeriodSeconds: ptr.To[int64](5),
		SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsNonRoot: ptr.To(true)},
		Containers: []corev1.Container{{Name: "app", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", script}}},
	}
}

// A Job in native mode completes (the native sidecar does not hold it), and
// so does one in init-only mode.
func TestJobsCompleteInNativeAndInitOnlyModes(t *testing.T) {
	w := newWorld(t, kvPolicy)
	path := w.kv()
	for _, mode := range []string{"native", "init-only"} {
		tmpl := corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
				"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/mode": mode,
				"ramvault.io/secret-kv": path, "ramvault.io/key-kv": "password"}},
			Spec: appSpec(`test -s /var/run/secrets/ramvault/kv && echo has-secret`),
		}
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "job-" + mode},
			Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: tmpl}}
		if _, err := w.cs.BatchV1().Jobs(w.ns).Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
	}
	for _, mode := range []string{"native", "init-only"} {
		stack.WaitFor(t, 90*time.Second, "job-"+mode+" to complete", func() bool {
			j, err := w.cs.BatchV1().Jobs(w.ns).Get(context.Background(), "job-"+mode, metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, c := range j.Status.Conditions {
				if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
					t.Fatalf("job-%s failed: %s", mode, c.Message)
				}
			}
			return j.Status.Succeeded == 1
		})
		pods, err := w.cs.CoreV1().Pods(w.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=job-" + mode})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("pods of job-%s: %v", mode, err)
		}
		if !injected(pods.Items[0].Spec) {
			t.Errorf("the Pod of job-%s was not injected", mode)
		}
		if log := w.logs(pods.Items[0].Name, "app"); !strings.Contains(log, "has-secret") {
			t.Errorf("job-%s: the app did not find its secret:\n%s", mode, log)
		}
	}
}

// Killing the agent: the kubelet restarts it, and it continues with the
// Pod's token from the state tmpfs — Vault still holds one token for the Pod.
func TestAKilledAgentIsRestartedAndKeepsThePodsOneToken(t *testing.T) {
	w := newWorld(t, kvPolicy)
	if w.env.External() {
		t.Skip("kills the agent through the node's /proc: on the local stack only")
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-kv": w.kv()}},
		Spec: appSpec("sleep 3600")}
	w.create(pod)
	p := stack.WaitPod(t, w.cs, w.ns, "app", 90*time.Second, stack.PodRunningReady)
	if n := len(w.podTokens()); n != 1 {
		t.Fatalf("%d tokens before the kill, want 1", n)
	}
	pid := agentPID(t, string(p.UID))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	stack.WaitFor(t, 60*time.Second, "the kubelet to restart the agent", func() bool {
		p, err := w.cs.CoreV1().Pods(w.ns).Get(context.Background(), "app", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, s := range p.Status.InitContainerStatuses {
			if s.Name == "ramvault-agent" && s.RestartCount >= 1 && s.Started != nil && *s.Started {
				return true
			}
		}
		return false
	})
	if log := w.logs("app", "ramvault-agent"); !strings.Contains(log, "reusing the Pod's Vault token") {
		t.Errorf("the restarted agent did not reuse the token:\n%s", log)
	}
	if n := len(w.podTokens()); n != 1 {
		t.Errorf("%d Vault tokens for the Pod after the agent's restart, want 1", n)
	}
}

// agentPID finds the agent process of a Pod on this host (the stack's
// kubelet runs here) by its cgroup, which names the Pod's UID.
func agentPID(t *testing.T, podUID string) int {
	t.Helper()
	pid := findAgentPID(podUID)
	if pid == 0 {
		t.Fatalf("no ramvault-agent process of pod %s on this host", podUID)
	}
	return pid
}

// findAgentPID is agentPID's search: 0 when there is no such process (yet).
func findAgentPID(podUID string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if strings.TrimSpace(string(comm)) != "ramvault-agent" {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "mountinfo"))
		if strings.Contains(string(env), podUID) {
			return pid
		}
	}
	return 0
}

// reload restart: after a rotation the agent fails the app's liveness probe
// once; the kubelet restarts only the app container (restartCount goes up,
// the Pod is the same).
func TestRestartReloadRestartsOnlyTheAppContainer(t *testing.T) {
	w := newWorld(t, kvPolicy)
	path := w.dbRole("6s", "12s")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-db": path, "ramvault.io/reload": "restart"}},
		Spec: appSpec("sleep 3600")}
	created := w.create(pod)
	stack.WaitPod(t, w.cs, w.ns, "app", 90*time.Second, stack.PodRunningReady)
	stack.WaitFor(t, 60*time.Second, "the app container to be restarted after a rotation", func() bool {
		p, err := w.cs.CoreV1().Pods(w.ns).Get(context.Background(), "app", metav1.GetOptions{})
		if err != nil || p.UID != created.UID {
			t.Fatalf("the Pod was recreated or lost: %v", err)
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == "app" && s.RestartCount >= 1 {
				return true
			}
		}
		return false
	})
}

// In a namespace enforcing Pod Security "restricted", an injected Pod whose
// original is restricted-compliant is admitted and runs.
func TestRestrictedNamespaceAdmitsInjectedPods(t *testing.T) {
	w := newWorld(t, kvPolicy)
	ns, err := w.cs.CoreV1().Namespaces().Get(context.Background(), w.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := w.cs.CoreV1().Namespaces().Update(context.Background(), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	spec := appSpec("sleep 3600")
	spec.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-kv": w.kv()}}, Spec: spec}
	w.create(pod)
	stack.WaitPod(t, w.cs, w.ns, "app", 90*time.Second, stack.PodRunningReady)
}

// In classic mode the kubelet stops the app and the agent sidecar together.
// The sidecar's preStop hook holds its SIGTERM, and so the revocation, for 5 s:
// the Pod's database lease outlives the delete by that long (an app still
// shutting down keeps working credentials), and is revoked with the token
// once the Pod is gone.
func TestClassicSidecarRevokesOnlyOnceTheAppHadTimeToStop(t *testing.T) {
	w := newWorld(t, kvPolicy)
	ctx := context.Background()
	db := w.dbRole("2m", "10m")
	spec := appSpec(`trap 'sleep 2; exit 0' TERM; while true; do sleep 1; done`)
	spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-db": db, "ramvault.io/mode": "classic"}},
		Spec: spec}
	created := w.create(pod)
	var hook []string
	for _, c := range created.Spec.Containers {
		if c.Name == "ramvault-agent" && c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
			hook = c.Lifecycle.PreStop.Exec.Command
		}
	}
	if strings.Join(hook, " ") != "/ramvault-agent sleep 5s" {
		t.Fatalf("classic sidecar's preStop hook %q, want /ramvault-agent sleep 5s", hook)
	}
	stack.WaitPod(t, w.cs, w.ns, "app", 90*time.Second, stack.PodRunningReady)
	leases := func() int {
		l, err := w.vc.Logical().List("sys/leases/lookup/" + db)
		if err != nil {
			t.Fatal(err)
		}
		if l == nil {
			return 0
		}
		keys, _ := l.Data["keys"].([]any)
		return len(keys)
	}
	accessors := w.podTokens()
	if len(accessors) != 1 || leases() != 1 {
		t.Fatalf("%d tokens and %d database leases for the Pod, want 1 and 1", len(accessors), leases())
	}
	if err := w.cs.CoreV1().Pods(w.ns).Delete(ctx, "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if n := leases(); n != 1 {
		t.Fatalf("2.5 s after the delete the Pod's database lease is gone (%d left): the agent revoked while the app was stopping", n)
	}
	stack.WaitFor(t, 60*time.Second, "the Pod to be gone", func() bool {
		_, err := w.cs.CoreV1().Pods(w.ns).Get(ctx, "app", metav1.GetOptions{})
		return err != nil
	})
	if n := leases(); n != 0 {
		t.Errorf("the Pod's database lease outlives it (%d)", n)
	}
	if _, err := w.vc.Logical().Write("auth/token/lookup-accessor", map[string]any{"accessor": accessors[0]}); err == nil {
		t.Error("the Pod's Vault token still exists after the Pod was deleted")
	}
}
