package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

// The attacker's tests: each tries, on a real Pod, to break a promise of
// README's security model.

// An injected Pod's ramvault.io/ annotations cannot be changed: the
// apiserver refuses (the ValidatingAdmissionPolicy of manifests/base), and
// the agent, which acts on the annotations frozen in its arguments, keeps
// working across a restart.
func TestAnnotationsOfARunningPodCannotBeChanged(t *testing.T) {
	w := newWorld(t, kvPolicy)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "frozen", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-kv": w.kv()}},
		Spec: appSpec("sleep 3600")}
	w.create(pod)
	p := stack.WaitPod(t, w.cs, w.ns, "frozen", 90*time.Second, stack.PodRunningReady)
	ctx := context.Background()
	for name, change := range map[string]map[string]any{
		"another Vault":    {"ramvault.io/vault-addr": "http://attacker.example:8200"},
		"another path":     {"ramvault.io/secret-kv": "secret/data/other"},
		"an unknown key":   {"ramvault.io/secrte-x": "kv/x"},
		"a removed secret": {"ramvault.io/secret-kv": nil},
	} {
		body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": change}})
		_, err := w.cs.CoreV1().Pods(w.ns).Patch(ctx, "frozen", types.MergePatchType, body, metav1.PatchOptions{})
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || err == nil || !strings.Contains(err.Error(), "cannot change") {
			t.Errorf("%s: the annotation change was not refused: %v", name, err)
		}
	}
	// Other annotations stay free to change.
	if _, err := w.cs.CoreV1().Pods(w.ns).Patch(ctx, "frozen", types.MergePatchType, []byte(`{"metadata":{"annotations":{"team.example/owner":"me"}}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("a foreign annotation could not be changed: %v", err)
	}
	if w.env.External() {
		return
	}
	if err := syscall.Kill(agentPID(t, string(p.UID)), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	stack.WaitFor(t, 60*time.Second, "the restarted agent to be ready", func() bool {
		p, err := w.cs.CoreV1().Pods(w.ns).Get(ctx, "frozen", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, s := range p.Status.InitContainerStatuses {
			if s.Name == "ramvault-agent" && s.RestartCount >= 1 && s.Ready {
				return true
			}
		}
		return false
	})
}

// In signal mode the Pod shares one process namespace and the agent runs as
// the app's UID. Code in the app container kills the agent again and again
// and races the restarted agent's /proc entries for 60 s: it must obtain
// neither the Vault token (state volume), the projected token, nor the
// agent's environment or memory. A control in the same script proves the
// technique works on a process of its own.
func TestSignalModeAppCannotTakeTheAgentsIdentity(t *testing.T) {
	w := newWorld(t, kvPolicy)
	const script = `sleep 600 & c=$!
if ls /proc/$c/root/ >/dev/null 2>&1; then echo CONTROL-READABLE; fi
kill $c
end=$(( $(date +%s) + 60 )); seen=""
while [ $(date +%s) -lt $end ]; do
  for d in /proc/[0-9]*; do
    [ "$(cat $d/comm 2>/dev/null)" = ramvault-agent ] || continue
    p=${d#/proc/}
    case " $seen " in *" $p "*) ;; *) seen="$seen $p"; echo "ATTEMPT $p";; esac
    for f in $d/root/ramvault/state/* $d/root/ramvault/token/token $d/environ $d/cmdline; do
      if head -c 64 "$f" >/dev/null 2>&1; then echo "OPENED $f"; fi
    done
    if ls $d/root/ >/dev/null 2>&1; then echo "OPENED $d/root"; fi
    if dd if=$d/mem bs=1 count=1 skip=4194304 >/dev/null 2>&1; then echo "OPENED $d/mem"; fi
    kill -9 $p 2>/dev/null
  done
done
echo RACE-DONE; sleep 3600`
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "racer", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-kv": w.kv(),
		"ramvault.io/reload": "signal:SIGHUP"}},
		Spec: appSpec(script)}
	w.create(pod)
	stack.WaitPod(t, w.cs, w.ns, "racer", 90*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	var log string
	stack.WaitFor(t, 150*time.Second, "the app's race to end", func() bool {
		log = w.logsSoFar("racer", "app")
		return strings.Contains(log, "RACE-DONE")
	})
	// `cmdline` is world-readable by design (it holds no secret: flags
	// only); /proc/<pid>/cmdline of a non-dumpable process is still shown.
	var opened []string
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "OPENED ") && !strings.HasSuffix(l, "/cmdline") {
			opened = append(opened, l)
		}
	}
	if len(opened) > 0 {
		t.Errorf("the app reached the agent's files or memory:\n%s", strings.Join(opened, "\n"))
	}
	if !strings.Contains(log, "CONTROL-READABLE") {
		t.Errorf("the control failed: the app could not read /proc/<pid>/root of its own process, so the race proves nothing:\n%s", log)
	}
	if n := strings.Count(log, "ATTEMPT "); n < 2 {
		t.Errorf("the app raced %d agent processes, want at least 2 (a first one and a restarted one):\n%s", n, log)
	} else {
		t.Logf("raced %d agent processes in 60 s, opened nothing", n)
	}
	for _, tok := range w.podTokens() {
		if strings.Contains(log, tok) {
			t.Error("the app's log holds a Vault token accessor")
		}
	}
}

// A template error on a real secret: the planted value is in no log, no
// Event and nothing `kubectl get pod -o yaml` shows, including the agent's
// termination message after it is killed (FallbackToLogsOnError).
func TestATemplateErrorLeaksNoSecretValue(t *testing.T) {
	w := newWorld(t, kvPolicy)
	path := w.kv()
	planted := "planted-" + w.ns
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "leaky", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-kv": path,
		// range over a string: text/template's error would print it.
		"ramvault.io/template-kv": `{{ range .Data.password }}{{ . }}{{ end }}`}},
		Spec: appSpec("sleep 3600")}
	created := w.create(pod)
	if w.env.External() {
		t.Skip("reads the agent's log on the node: while the postStart hook holds the Pod, the apiserver serves no log of it")
	}
	// The agent fails and retries; its postStart hook holds the Pod (the
	// apiserver says the container is waiting and serves no log), so read
	// its log where the kubelet writes it.
	var agentLog string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		agentLog = nodeLog(t, w.env, w.ns, "leaky", "ramvault-agent")
		if strings.Count(agentLog, "retrying") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not retry the failing render twice in 60 s; its log:\n%s", agentLog)
		}
	}
	// Killed, the agent ends with a termination message from its log
	// (FallbackToLogsOnError), which goes to etcd: it must hold no value.
	if err := syscall.Kill(agentPID(t, string(created.UID)), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	stack.WaitFor(t, 150*time.Second, "the killed agent's termination to be recorded", func() bool {
		p, err := w.cs.CoreV1().Pods(w.ns).Get(context.Background(), "leaky", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, s := range p.Status.InitContainerStatuses {
			if s.Name == "ramvault-agent" && (s.LastTerminationState.Terminated != nil || s.State.Terminated != nil) {
				return true
			}
		}
		return false
	})
	yaml, err := w.kubectl("", "-n", w.ns, "get", "pod", "leaky", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	events, err := w.kubectl("", "-n", w.ns, "get", "events", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"the agent's log": agentLog + nodeLog(t, w.env, w.ns, "leaky", "ramvault-agent"),
		"kubectl get pod -o yaml": yaml, "the namespace's Events": events} {
		if strings.Contains(text, planted) {
			t.Errorf("%s holds the planted secret value", what)
		}
	}
	if !strings.Contains(agentLog, "template") {
		t.Errorf("the agent did not say what failed:\n%s", agentLog)
	}
}

// The root user of a target container (allowed in a baseline namespace)
// cannot change, delete or add a file in the secrets volume: it is mounted
// read-only and baseline grants no capability to remount it.
func TestRootInATargetCannotChangeTheSecrets(t *testing.T) {
	w := newWorld(t, kvPolicy)
	ctx := context.Background()
	nsObj, err := w.cs.CoreV1().Namespaces().Get(ctx, w.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nsObj.Labels == nil {
		nsObj.Labels = map[string]string{}
	}
	nsObj.Labels["pod-security.kubernetes.io/enforce"] = "baseline"
	if _, err := w.cs.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	const script = `D=/var/run/secrets/ramvault
echo "whoami=$(id -u)"
if echo x > $D/kv 2>/dev/null; then echo WROTE; fi
if rm -f $D/kv 2>/dev/null && [ ! -e $D/kv ]; then echo DELETED; fi
if touch $D/new 2>/dev/null; then echo ADDED; fi
if mv $D/kv $D/kv2 2>/dev/null; then echo RENAMED; fi
if chmod 0644 $D/kv 2>/dev/null; then echo CHMODDED; fi
if mount -o remount,rw $D 2>/dev/null; then echo REMOUNTED; fi
test -s $D/kv && echo STILL-THERE
echo done; sleep 3600`
	spec := appSpec(script)
	spec.SecurityContext = &corev1.PodSecurityContext{}
	spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "rooted", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-kv": w.kv(),
		"ramvault.io/run-as-user": "1000"}},
		Spec: spec}
	w.create(pod)
	var log string
	stack.WaitFor(t, 90*time.Second, "the root container's attempts", func() bool {
		log = w.logsSoFar("rooted", "app")
		return strings.Contains(log, "done")
	})
	if !strings.Contains(log, "whoami=0") {
		t.Fatalf("the container did not run as root:\n%s", log)
	}
	for _, bad := range []string{"WROTE", "DELETED", "ADDED", "RENAMED", "CHMODDED", "REMOUNTED"} {
		if strings.Contains(log, bad) {
			t.Errorf("root in the target container %s the secrets volume:\n%s", strings.ToLower(bad), log)
		}
	}
	if !strings.Contains(log, "STILL-THERE") {
		t.Errorf("the secret file is gone or empty:\n%s", log)
	}
}

// logsSoFar is a container's log, or "" while it has none to give (not
// started yet): for polling, where w.logs would fail the test.
func (w *world) logsSoFar(pod, container string) string {
	b, err := w.cs.CoreV1().Pods(w.ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(context.Background())
	if err != nil {
		return ""
	}
	return string(b)
}

// nodeLog is every log file the stack's kubelet wrote for a container of a
// Pod (all its restarts), read on the node.
func nodeLog(t *testing.T, env stack.Env, ns, pod, container string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(env.StateDir, "pod-logs", ns+"_"+pod+"_*", container, "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil {
			b.Write(data)
		}
	}
	return b.String()
}
