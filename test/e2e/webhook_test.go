package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramvault/ramvault/test/stack"
)

// planted are the secret values the tests wrote into Vault; TestMain scans
// the injector's logs for them after every test ran (each test scans its own
// Pods' logs).
var planted struct {
	sync.Mutex
	values []string
	env    *stack.Env
}

func plant(env stack.Env, v string) {
	planted.Lock()
	defer planted.Unlock()
	planted.values = append(planted.values, v)
	planted.env = &env
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := scanInjectorLogs(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: injector logs:", err)
		code = 1
	}
	os.Exit(code)
}

// scanInjectorLogs reads every injector Pod's log and fails on any planted
// value (or on a log that cannot be read).
func scanInjectorLogs() error {
	planted.Lock()
	defer planted.Unlock()
	if planted.env == nil {
		return nil
	}
	cs, err := stack.KubeClient(planted.env.Kubeconfig)
	if err != nil {
		return err
	}
	pods, err := cs.CoreV1().Pods(stack.InjectorNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(pods.Items) == 0 {
		return fmt.Errorf("no injector Pods in %s", stack.InjectorNamespace)
	}
	for _, p := range pods.Items {
		b, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(context.Background())
		if err != nil {
			return fmt.Errorf("logs of %s: %w", p.Name, err)
		}
		for _, v := range planted.values {
			if bytes.Contains(b, []byte(v)) {
				return fmt.Errorf("%s logged a planted secret value", p.Name)
			}
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: %d injector logs scanned for %d planted values: 0 hits\n", len(pods.Items), len(planted.values))
	return nil
}

// kubectl runs bin/kubectl against the stack with stdin, returning its
// combined output and error.
func (w *world) kubectl(stdin string, args ...string) (string, error) {
	root, err := stack.RepoRoot()
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "bin", "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.env.Kubeconfig)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// `kubectl apply` of a Pod with several bad annotations fails, and the one
// message names every annotation at fault (the webhook denies it in full).
func TestInvalidAnnotationsFailKubectlApplyListingEveryProblem(t *testing.T) {
	w := newWorld(t, kvPolicy)
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: broken
  namespace: %s
  annotations:
    ramvault.io/inject: "true"
    ramvault.io/role: %s
    ramvault.io/secert-db: database/creds/x
    ramvault.io/reload: sometimes
    ramvault.io/mode: turbo
    ramvault.io/refresh-kv: 5 minutes
    ramvault.io/secret-kv: secret/data/x
spec:
  serviceAccountName: app
  securityContext: {runAsUser: 1000}
  containers:
  - name: app
    image: %s
    command: [sleep, "3600"]
`, w.ns, w.role, stack.BusyboxImage)
	out, err := w.kubectl(manifest, "apply", "-f", "-")
	if err == nil {
		t.Fatalf("kubectl apply of a Pod with bad annotations succeeded:\n%s", out)
	}
	for _, want := range []string{`admission webhook "inject.ramvault.io" denied`,
		"ramvault.io/secert-db", "did you mean ramvault.io/secret-db?", "ramvault.io/reload", "ramvault.io/mode", "ramvault.io/refresh-kv"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl's error does not mention %q:\n%s", want, out)
		}
	}
	if _, err := w.cs.CoreV1().Pods(w.ns).Get(context.Background(), "broken", metav1.GetOptions{}); err == nil {
		t.Error("the denied Pod exists")
	}
}

// With every injector replica gone, an opted-in Pod is refused
// (failurePolicy: Fail) and a Pod that did not opt in starts as usual.
func TestWithTheWebhookDownOptedInPodsAreRefusedAndOthersStart(t *testing.T) {
	w := newWorld(t, kvPolicy)
	ctx := context.Background()
	scale := func(n int32) int32 {
		t.Helper()
		s, err := w.cs.AppsV1().Deployments(stack.InjectorNamespace).GetScale(ctx, stack.InjectorDeployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		was := s.Spec.Replicas
		s.Spec.Replicas = n
		if _, err := w.cs.AppsV1().Deployments(stack.InjectorNamespace).UpdateScale(ctx, stack.InjectorDeployment, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return was
	}
	replicas := func() int {
		pods, err := w.cs.CoreV1().Pods(stack.InjectorNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(pods.Items)
	}
	was := scale(0)
	t.Cleanup(func() {
		// Back to the replicas it had, and injecting, for the next tests.
		scale(was)
		if err := stack.WaitInjector(context.Background(), w.cs); err != nil {
			t.Errorf("restore the injector: %v", err)
		}
	})
	stack.WaitFor(t, 60*time.Second, "every injector Pod to be gone", func() bool { return replicas() == 0 })

	optedIn := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "opted-in", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-kv": "secret/data/x"}},
		Spec: appSpec("sleep 3600")}
	_, err := w.cs.CoreV1().Pods(w.ns).Create(ctx, optedIn, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `failed calling webhook "inject.ramvault.io"`) {
		t.Errorf("an opted-in Pod with the webhook down: %v; want refused by the webhook", err)
	}
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Spec: appSpec("sleep 3600")}
	if _, err := w.cs.CoreV1().Pods(w.ns).Create(ctx, plain, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a Pod that did not opt in, with the webhook down: %v", err)
	}
	stack.WaitPod(t, w.cs, w.ns, "plain", 60*time.Second, stack.PodRunningReady)
}

// A KV v2 update reaches the file within the secret's refresh interval, with
// no restart of anything.
func TestAKVUpdateReachesTheFileWithinItsRefreshInterval(t *testing.T) {
	w := newWorld(t, kvPolicy)
	ctx := context.Background()
	path := w.kv()
	const script = `while true; do echo "kvsha=$(sha256sum /var/run/secrets/ramvault/kv | cut -d' ' -f1)"; sleep 1; done`
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-kv": path,
		"ramvault.io/key-kv": "password", "ramvault.io/refresh-kv": "3s"}},
		Spec: appSpec(script)}
	created := w.create(pod)
	stack.WaitPod(t, w.cs, w.ns, "app", 90*time.Second, stack.PodRunningReady)
	sha := func(v string) string { s := sha256.Sum256([]byte(v)); return "kvsha=" + hex.EncodeToString(s[:]) }
	first := "planted-" + w.ns
	stack.WaitFor(t, 20*time.Second, "the app to see the first value", func() bool { return strings.Contains(w.logs("app", "app"), sha(first)) })

	second := "planted-updated-" + w.ns
	plant(w.env, second)
	if _, err := w.vc.KVv2("secret").Put(ctx, "e2e/"+w.ns, map[string]any{"password": second}); err != nil {
		t.Fatal(err)
	}
	updated := time.Now()
	// 3s refresh, plus jitter and the app's 1s loop: well within 15s.
	stack.WaitFor(t, 15*time.Second, "the updated value in the file", func() bool { return strings.Contains(w.logs("app", "app"), sha(second)) })
	t.Logf("the update reached the file %.1fs after the write", time.Since(updated).Seconds())
	p, err := w.cs.CoreV1().Pods(w.ns).Get(ctx, "app", metav1.GetOptions{})
	if err != nil || p.UID != created.UID {
		t.Fatalf("the Pod was recreated: %v", err)
	}
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if s.RestartCount != 0 {
			t.Errorf("container %s restarted %d times", s.Name, s.RestartCount)
		}
	}
	for _, c := range []string{"app", "ramvault-agent"} {
		if l := w.logs("app", c); strings.Contains(l, first) || strings.Contains(l, second) {
			t.Errorf("container %s logged a planted value", c)
		}
	}
}

// ramvault.io/vault-ca-configmap: the ConfigMap's CA bundle is mounted into
// the agent only and the agent loads it (it refuses to start on a missing or
// unparseable file). The stack's Vault speaks plain HTTP, so this proves the
// wiring, not a TLS handshake (sidecar's unit tests do that).
func TestAVaultCAConfigMapReachesTheAgentOnly(t *testing.T) {
	w := newWorld(t, kvPolicy)
	ctx := context.Background()
	ca, err := os.ReadFile(w.env.CACert)
	if err != nil {
		t.Skipf("no CA file to plant: %v", err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "vault-ca"}, Data: map[string]string{"ca.crt": string(ca)}}
	if _, err := w.cs.CoreV1().ConfigMaps(w.ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-kv": w.kv(),
		"ramvault.io/vault-ca-configmap": "vault-ca"}},
		Spec: appSpec(`ls /ramvault/vault-ca 2>&1; test -s /var/run/secrets/ramvault/kv && echo has-secret; sleep 3600`)}
	created := w.create(pod)
	var agent corev1.Container
	for _, c := range created.Spec.InitContainers {
		if c.Name == "ramvault-agent" {
			agent = c
		}
	}
	if !slices.Contains(agent.Args, "--vault-ca-cert=/ramvault/vault-ca/ca.crt") {
		t.Fatalf("agent args %q lack the CA", agent.Args)
	}
	stack.WaitPod(t, w.cs, w.ns, "app", 90*time.Second, stack.PodRunningReady)
	stack.WaitFor(t, 20*time.Second, "the app's report", func() bool { return strings.Contains(w.logs("app", "app"), "has-secret") })
	if log := w.logs("app", "app"); !strings.Contains(log, "No such file or directory") {
		t.Errorf("the app container sees the Vault CA mount:\n%s", log)
	}
}

// An app's own init container listed in ramvault.io/containers (a database
// migration) runs after the agent's first write and reads the secrets.
func TestAnInitContainerListedGetsTheSecretsBeforeItRuns(t *testing.T) {
	w := newWorld(t, kvPolicy)
	spec := appSpec("sleep 3600")
	spec.InitContainers = []corev1.Container{{Name: "migrate", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sh", "-c", "test -s /var/run/secrets/ramvault/kv && echo migrate-saw-the-secret"}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-kv": w.kv(),
		"ramvault.io/containers": "migrate,app"}}, Spec: spec}
	w.create(pod)
	stack.WaitPod(t, w.cs, w.ns, "app", 90*time.Second, stack.PodRunningReady)
	if log := w.logs("app", "migrate"); !strings.Contains(log, "migrate-saw-the-secret") {
		t.Errorf("the init container did not find the secret:\n%s", log)
	}
}
