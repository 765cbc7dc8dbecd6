package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/test/stack"
)

// TestWebhook runs the webhook with TLS from files and checks what the real
// apiserver makes of its answers.
func TestWebhook(t *testing.T) {
	c := newCluster(t)
	ca := stack.NewTestCert(t, net.ParseIP(stack.Gateway))
	wh := c.startWebhook(t, "", "--tls-cert-file="+ca.CertFile, "--tls-key-file="+ca.KeyFile)
	wh.waitHTTP(t, "/readyz", 200, nil)
	id := randHex(4)
	c.register(t, id, wh.url(), ca.CAPEM)
	ns := c.namespace(t, id, nil)
	c.waitActive(t, ns)
	ctx := context.Background()

	t.Run("an opted-in Pod is injected", func(t *testing.T) {
		created, err := c.cs.CoreV1().Pods(ns).Create(ctx, appPod("app", optIn()), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.cs.CoreV1().Pods(ns).Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !injected(got) {
			t.Fatalf("stored Pod not injected: annotations %v, init containers %d", got.Annotations, len(got.Spec.InitContainers))
		}
		// The apiserver is 1.34: the webhook discovered native sidecars.
		if rp := got.Spec.InitContainers[0].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
			t.Errorf("the agent is not a native sidecar (restartPolicy %v)", rp)
		}
		if got.Annotations[injector.StatusAnnotation] != "injected dev" {
			t.Errorf("status annotation %q", got.Annotations[injector.StatusAnnotation])
		}
		mounted := false
		for _, m := range got.Spec.Containers[0].VolumeMounts {
			mounted = mounted || (m.Name == injector.SecretsVolume && m.ReadOnly)
		}
		if !mounted {
			t.Error("the app container does not mount the secrets read-only")
		}
	})

	t.Run("a Pod without the opt-in is never sent", func(t *testing.T) {
		for name, ann := range map[string]map[string]string{"plain": nil, "opted-out": {"ramvault.io/inject": "false", "ramvault.io/secret-db": "secret/data/app"}} {
			created, err := c.cs.CoreV1().Pods(ns).Create(ctx, appPod(name, ann), metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(created.Spec.InitContainers) > 0 || created.Annotations[injector.StatusAnnotation] != "" {
				t.Errorf("%s: changed", name)
			}
		}
	})

	t.Run("invalid annotations fail the create with every problem", func(t *testing.T) {
		ann := optIn()
		ann["ramvault.io/mode"] = "sidecar"
		ann["ramvault.io/secrte-api"] = "secret/data/api"
		ann["ramvault.io/vault-addr"] = "https://evil.example:8200"
		pod := appPod("invalid", ann)
		problems := expectedProblems(t, c, pod, ns)
		_, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `admission webhook "inject.ramvault.io" denied the request`) {
			t.Fatalf("create: %v; want a denial by the webhook", err)
		}
		for _, p := range problems {
			if !strings.Contains(err.Error(), p.Error()) {
				t.Errorf("the error lacks %q:\n%v", p.Error(), err)
			}
		}
	})

	t.Run("a forged review makes the webhook write nothing", func(t *testing.T) {
		// Anyone who reaches the webhook can post a review: it must not
		// make the webhook write anything (it used to create an Event in
		// the namespace the review named).
		before := ramvaultEvents(t, c, ns)
		pod := appPod("forged", map[string]string{"ramvault.io/inject": "true", "ramvault.io/secrte-x": "kv/x"})
		pod.Namespace = ns
		body, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "forged", Operation: admissionv1.Create, Namespace: ns,
				Kind:     metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Object:   runtime.RawExtension{Raw: mustJSON(t, pod)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := client.Post(wh.url(), "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(out), `"allowed":false`) {
			t.Fatalf("forged review: %d %s; want a denial", resp.StatusCode, out)
		}
		// The webhook never writes: give a background writer time to show.
		time.Sleep(3 * time.Second)
		if after := ramvaultEvents(t, c, ns); after != before {
			t.Errorf("a forged review made %d new ramvault Events in %s", after-before, ns)
		}
	})

	t.Run("the denied Pods of a ReplicaSet are told on the ReplicaSet", func(t *testing.T) {
		ann := optIn()
		ann["ramvault.io/refresh"] = "soon"
		pod := appPod("", ann)
		problems := expectedProblems(t, c, pod, ns)
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "denied"},
			Spec: appsv1.ReplicaSetSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "denied"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "denied"}, Annotations: ann}, Spec: pod.Spec},
			},
		}
		rs, err := c.cs.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The ReplicaSet controller tells of the denial, with the message.
		ev := waitEvent(t, c, ns, "FailedCreate", func(e corev1.Event) bool { return e.InvolvedObject.UID == rs.UID })
		if ev.InvolvedObject.Kind != "ReplicaSet" || ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, problems[0].Error()) {
			t.Errorf("event %s on %s/%s: %s", ev.Type, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Message)
		}
		// What a user runs.
		root, _ := stack.RepoRoot()
		cmd := exec.Command(filepath.Join(root, "bin", "kubectl"), "describe", "replicaset", "-n", ns, rs.Name)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.env.Kubeconfig)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "FailedCreate") || !strings.Contains(string(out), "ramvault.io/refresh") {
			t.Errorf("kubectl describe replicaset (%v) does not tell of the denial:\n%s", err, out)
		}
	})

	t.Run("an injected Pod passes Pod Security restricted", func(t *testing.T) {
		restricted := c.namespace(t, id, map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"})
		c.waitActive(t, restricted)
		created, err := c.cs.CoreV1().Pods(restricted).Create(ctx, appPod("app", optIn()), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("an injected restricted Pod was refused: %v", err)
		}
		if !injected(created) {
			t.Fatal("not injected")
		}
		// The namespace does enforce: the same Pod without its security
		// settings is refused.
		loose := appPod("loose", nil)
		loose.Spec.SecurityContext, loose.Spec.Containers[0].SecurityContext = nil, nil
		if _, err := c.cs.CoreV1().Pods(restricted).Create(ctx, loose, metav1.CreateOptions{}); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "restricted") {
			t.Errorf("a non-restricted Pod: %v; want a PodSecurity refusal", err)
		}
	})

	t.Run("metrics count the answers", func(t *testing.T) {
		for series, least := range map[string]float64{
			`ramvault_injector_injections_total{result="injected"}`:        2,
			`ramvault_injector_injections_total{result="denied"}`:          1,
			`ramvault_injector_admission_requests_total{result="allowed"}`: 2,
			`ramvault_injector_admission_requests_total{result="denied"}`:  1,
			`ramvault_injector_admission_duration_seconds_count`:           3,
		} {
			if v := wh.metric(t, series); v < least {
				t.Errorf("%s = %v, want at least %v", series, v, least)
			}
		}
		if v := wh.metric(t, `ramvault_injector_injections_total{result="error"}`); v != 0 {
			t.Errorf("%v errors", v)
		}
	})

	t.Run("the log holds neither Pod specs nor patches", func(t *testing.T) {
		logs := wh.logs.String()
		for _, secret := range []string{stack.BusyboxImage, `"op":`, `"path":"/spec`, agentImage} {
			if strings.Contains(logs, secret) {
				t.Errorf("the log contains %q", secret)
			}
		}
		if !strings.Contains(logs, `"msg":"admission review"`) {
			t.Error("no admission is logged")
		}
	})
}

// expectedProblems is what Inject, with the webhook's settings, says of pod
// in namespace ns: the problems the denial must list.
func expectedProblems(t *testing.T, c *cluster, pod *corev1.Pod, ns string) spec.ErrorList {
	t.Helper()
	p := pod.DeepCopy()
	p.Namespace = ns
	_, err := injector.Inject(p, injector.Config{AgentImage: agentImage, VaultAddr: c.env.PodVaultAddr, NativeSidecars: true})
	var list spec.ErrorList
	if !errors.As(err, &list) || len(list) == 0 {
		t.Fatalf("the test Pod should be invalid; Inject says %v", err)
	}
	return list
}

// waitEvent waits for an event of namespace ns with reason that match
// accepts.
func waitEvent(t *testing.T, c *cluster, ns, reason string, match func(corev1.Event) bool) corev1.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := c.cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "reason=" + reason})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list.Items {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching %s event in %s after 30s; events: %v", reason, ns, list.Items)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ramvaultEvents counts the Events of namespace ns that a ramvault
// component reported or that speak of ramvault's reason.
func ramvaultEvents(t *testing.T, c *cluster, ns string) int {
	t.Helper()
	list, err := c.cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if strings.Contains(e.Source.Component+e.ReportingController+e.Reason, "ramvault") || strings.Contains(e.Reason, "Ramvault") {
			n++
		}
	}
	return n
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWebhookDown: while no webhook answers, the opted-in Pods are refused
// (failurePolicy: Fail) and the others are not even sent.
func TestWebhookDown(t *testing.T) {
	c := newCluster(t)
	ca := stack.NewTestCert(t, net.ParseIP(stack.Gateway))
	wh := c.startWebhook(t, "", "--tls-cert-file="+ca.CertFile, "--tls-key-file="+ca.KeyFile)
	id := randHex(4)
	c.register(t, id, wh.url(), ca.CAPEM)
	ns := c.namespace(t, id, nil)
	c.waitActive(t, ns)
	if code := wh.stop(); code != 0 {
		t.Fatalf("stopped webhook exited %d", code)
	}
	ctx := context.Background()
	_, err := c.cs.CoreV1().Pods(ns).Create(ctx, appPod("opted-in", optIn()), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `failed calling webhook "inject.ramvault.io"`) {
		t.Errorf("an opted-in Pod with the webhook down: %v; want refused", err)
	}
	if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, appPod("plain", nil), metav1.CreateOptions{}); err != nil {
		t.Errorf("a Pod without the annotation with the webhook down: %v", err)
	}
}
