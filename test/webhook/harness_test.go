// Package webhook tests `ramvault webhook` against the stack's real
// apiserver: the webhook runs in this process on the host, at the pod
// bridge's address the apiserver reaches, and a MutatingWebhookConfiguration
// made from the manifest's (same matchConditions, failurePolicy, rules)
// sends it the Pods of this test's namespaces only.
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/cli"
	"github.com/ramvault/ramvault/test/stack"
)

// testLabel selects the namespaces a test's webhook configuration applies to.
const testLabel = "ramvault.io/webhook-test"

// optOutLabel=disabled keeps a namespace from the manifests' webhook
// configuration, and so from the injector `make dev-up` runs in the cluster.
const optOutLabel = "ramvault.io/injection"

const agentImage = "localhost/ramvault-agent:e2e"

// cluster is the stack as a test uses it.
type cluster struct {
	env stack.Env
	cs  *kubernetes.Clientset
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	env := stack.Require(t)
	cs, err := stack.KubeClient(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{env: env, cs: cs}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// rendered is `kubectl kustomize manifests`, one object per document.
func rendered(t *testing.T) []*unstructured.Unstructured { return renderDir(t, "manifests") }

// renderDir is `kubectl kustomize <dir>` (dir relative to the repository).
func renderDir(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "bin", "kubectl"), "kustomize", filepath.Join(root, dir))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	objs, err := stack.DecodeObjects(&stdout)
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return objs
}

// manifestWebhook is the webhook of the manifests' MutatingWebhookConfiguration.
func manifestWebhook(t *testing.T) admissionregistrationv1.MutatingWebhook {
	t.Helper()
	for _, u := range rendered(t) {
		if u.GetKind() != "MutatingWebhookConfiguration" {
			continue
		}
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		b, _ := u.MarshalJSON()
		if err := yaml.UnmarshalStrict(b, &mwc); err != nil {
			t.Fatal(err)
		}
		if len(mwc.Webhooks) != 1 {
			t.Fatalf("%d webhooks in the manifest, want 1", len(mwc.Webhooks))
		}
		return mwc.Webhooks[0]
	}
	t.Fatal("no MutatingWebhookConfiguration in the manifests")
	return admissionregistrationv1.MutatingWebhook{}
}

// register creates a MutatingWebhookConfiguration from the manifest's
// webhook, calling url and trusting caBundle, for the namespaces labelled
// testLabel=id (besides the manifest's own namespace selector, less its
// opt-out: the test namespaces opt out of the in-cluster injector). It is
// deleted when the test ends.
func (c *cluster) register(t *testing.T, id, url string, caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	wh := manifestWebhook(t)
	wh.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(url), CABundle: caBundle}
	sel := wh.NamespaceSelector.DeepCopy()
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	sel.MatchExpressions = slices.DeleteFunc(sel.MatchExpressions, func(r metav1.LabelSelectorRequirement) bool { return r.Key == optOutLabel })
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[testLabel] = id
	wh.NamespaceSelector = sel
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "ramvault-test-" + id},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{wh},
	}
	ctx := context.Background()
	created, err := c.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := c.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete MutatingWebhookConfiguration %s: %v", mwc.Name, err)
		}
	})
	return created
}

// namespace creates a namespace the webhook configuration id applies to,
// and the in-cluster injector does not.
func (c *cluster) namespace(t *testing.T, id string, labels map[string]string) string {
	t.Helper()
	l := map[string]string{testLabel: id, optOutLabel: "disabled"}
	for k, v := range labels {
		l[k] = v
	}
	return stack.Namespace(t, c.cs, l)
}

// freeAddr is a free port on host.
func freeAddr(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// webhook is `ramvault webhook` running in this process.
type webhook struct {
	addr        string // host:port of /mutate
	metricsAddr string
	logs        *stack.LogBuffer
	stop        func() int // stops it (once) and returns its exit code
}

func (w *webhook) url() string { return "https://" + w.addr + "/mutate" }

// startWebhook runs `ramvault webhook` with the stack's kubeconfig and
// Vault, at addr ("": a free port of the bridge address), plus args; it
// waits until the process answers /healthz, and stops it when the test ends
// (its exit code must be 0).
func (c *cluster) startWebhook(t *testing.T, addr string, args ...string) *webhook {
	t.Helper()
	if addr == "" {
		addr = freeAddr(t, stack.Gateway)
	}
	w := &webhook{addr: addr, metricsAddr: freeAddr(t, "127.0.0.1"), logs: &stack.LogBuffer{}}
	all := append([]string{"webhook", "--addr=" + w.addr, "--metrics-addr=" + w.metricsAddr, "--kubeconfig=" + c.env.Kubeconfig,
		"--vault-addr=" + c.env.PodVaultAddr, "--agent-image=" + agentImage, "--shutdown-delay=0", "--log-level=debug"}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- cli.RunCLI(ctx, all, nil, io.Discard, w.logs) }()
	var once sync.Once
	code := -1
	w.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("the webhook did not stop within 30s:\n%s", w.logs)
			}
		})
		return code
	}
	t.Cleanup(func() {
		if code := w.stop(); code != 0 {
			t.Errorf("the webhook exited %d:\n%s", code, w.logs)
		}
		if t.Failed() {
			t.Logf("webhook log:\n%s", w.logs)
		}
	})
	w.waitHTTP(t, "/healthz", http.StatusOK, done)
	return w
}

// waitHTTP waits until the metrics server answers path with status.
func (w *webhook) waitHTTP(t *testing.T, path string, status int, done <-chan int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + w.metricsAddr + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		select {
		case code := <-done:
			t.Fatalf("the webhook exited %d:\n%s", code, w.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not %d after 30s (%v):\n%s", path, status, err, w.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric reads one sample of the webhook's /metrics, e.g.
// `ramvault_injector_injections_total{result="injected"}`.
func (w *webhook) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + w.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", series, body)
	return 0
}

// appPod is a Pod that passes Pod Security "restricted", with annotations.
// A scheduling gate keeps it from ever being scheduled: its admission is
// what is tested.
func appPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			SchedulingGates:    []corev1.PodSchedulingGate{{Name: "ramvault.io/admission-test-only"}},
			ServiceAccountName: "app",
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](1000),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "app", Image: stack.BusyboxImage, Command: []string{"sleep", "3600"},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// optIn are the annotations of a valid opted-in Pod.
func optIn() map[string]string {
	return map[string]string{"ramvault.io/inject": "true", "ramvault.io/secret-db": "secret/data/app"}
}

// injected says whether pod carries the agent and the status annotation.
func injected(pod *corev1.Pod) bool {
	if pod.Annotations[injector.StatusAnnotation] == "" || len(pod.Spec.InitContainers) == 0 {
		return false
	}
	c := pod.Spec.InitContainers[0]
	return c.Name == injector.AgentContainer && c.Image == agentImage
}

// waitActive waits until the apiserver sends the namespace's opted-in Pods
// to the webhook: a configuration just created (or a caBundle just set)
// reaches the apiserver's admission a moment later. It dry-runs creates.
func (c *cluster) waitActive(t *testing.T, ns string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.cs.CoreV1().Pods(ns).Create(context.Background(), appPod("probe", optIn()), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && injected(out) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook is not called for namespace %s after 30s (last: %v)", ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
