// Package e2e runs ramvault on real Pods of the local stack: the images are
// built from the Dockerfile (make image) and imported into containerd, and
// the injector runs in the cluster from manifests/overlays/dev, so every Pod
// here is mutated by the in-cluster webhook.
package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/test/stack"
)

const agentImage = "localhost/ramvault-agent:dev"

type world struct {
	t    *testing.T
	env  stack.Env
	cs   *kubernetes.Clientset
	vc   *vault.Client
	ns   string
	role string
}

func newWorld(t *testing.T, policy string) *world {
	t.Helper()
	env := stack.Require(t)
	cs, err := stack.KubeClient(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := env.VaultClient()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, env: env, cs: cs, vc: vc}
	w.ns = stack.Namespace(t, cs, nil)
	w.role = "e2e-" + w.ns
	cleanup, err := env.AppRole(context.Background(), w.role, w.ns, policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return w
}

// create creates the Pod as written; the in-cluster webhook injects it.
func (w *world) create(pod *corev1.Pod) *corev1.Pod {
	w.t.Helper()
	pod.Namespace = w.ns
	created, err := w.cs.CoreV1().Pods(w.ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatalf("create: %v", err)
	}
	if !injected(created.Spec) {
		w.t.Fatalf("the in-cluster webhook did not inject Pod %s", pod.Name)
	}
	return created
}

// injected says whether a Pod spec carries the agent of this checkout's image.
func injected(spec corev1.PodSpec) bool {
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		if (c.Name == injector.AgentContainer || c.Name == injector.AgentInitContainer) && c.Image == agentImage {
			return true
		}
	}
	return false
}

func (w *world) logs(pod, container string) string {
	return stack.PodLogs(w.t, w.cs, w.ns, pod, container)
}

// The injected Pod: secret files on tmpfs, mode 0400, owned by the app's
// UID, readable by the app; a container not listed cannot see them; no
// secret value in any container's log; deleting the Pod revokes the token.
func TestInjectedPodGetsSecretsOnTmpfsForTheAppUserOnly(t *testing.T) {
	w := newWorld(t, `path "secret/data/e2e/*" { capabilities = ["read"] }
path "database/creds/*" { capabilities = ["read"] }`)
	ctx := context.Background()
	planted := "planted-" + w.ns
	plant(w.env, planted)
	if _, err := w.vc.KVv2("secret").Put(ctx, "e2e/"+w.ns, map[string]any{"password": planted}); err != nil {
		t.Fatal(err)
	}
	dbPath := w.dbRole("2m", "10m")

	const script = `D=/var/run/secrets/ramvault
echo "fstype=$(stat -f -c %T $D)"
echo "kv=$(stat -c '%a %u' $D/kv)"
echo "db=$(stat -c '%a %u' $D/db)"
echo "kvsha=$(sha256sum $D/kv | cut -d' ' -f1)"
grep -q '"username"' $D/db && echo db=readable
echo ready; sleep 3600`
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
			"ramvault.io/inject":     "true",
			"ramvault.io/role":       w.role,
			"ramvault.io/secret-kv":  "secret/data/e2e/" + w.ns,
			"ramvault.io/key-kv":     "password",
			"ramvault.io/secret-db":  dbPath,
			"ramvault.io/containers": "app",
		}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "app",
			TerminationGracePeriodSeconds: ptr.To[int64](10),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsNonRoot: ptr.To(true)},
			Containers: []corev1.Container{
				{Name: "app", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"sh", "-c", script}},
				{Name: "other", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
					SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](2000)},
					Command:         []string{"sh", "-c", "ls /var/run/secrets/ramvault 2>&1; echo other-done; sleep 3600"}},
			},
		},
	}
	w.create(pod)
	stack.WaitPod(t, w.cs, w.ns, "app", 90*time.Second, stack.PodRunningReady)
	var appLog string
	stack.WaitFor(t, 20*time.Second, "the app's report", func() bool {
		appLog = w.logs("app", "app")
		return strings.Contains(appLog, "ready")
	})
	sum := sha256.Sum256([]byte(planted))
	for _, want := range []string{"fstype=tmpfs", "kv=400 1000", "db=400 1000", "kvsha=" + hex.EncodeToString(sum[:]), "db=readable"} {
		if !strings.Contains(appLog, want) {
			t.Errorf("the app did not see %q; it printed:\n%s", want, appLog)
		}
	}
	otherLog := w.logs("app", "other")
	if !strings.Contains(otherLog, "No such file or directory") {
		t.Errorf("the container not listed in ramvault.io/containers sees the secrets:\n%s", otherLog)
	}
	for _, c := range []string{"app", "other", "ramvault-agent"} {
		if l := w.logs("app", c); strings.Contains(l, planted) {
			t.Errorf("container %s logged the planted secret value", c)
		}
	}

	// The Pod's token in Vault: one login, found by its metadata.
	accessors := w.podTokens()
	if len(accessors) != 1 {
		t.Fatalf("%d Vault tokens for the Pod, want 1", len(accessors))
	}
	if l, err := w.vc.Logical().List("sys/leases/lookup/" + dbPath); err != nil || l == nil || len(l.Data["keys"].([]any)) != 1 {
		t.Fatalf("want the Pod's one database lease before the delete: %v %v", l, err)
	}
	if err := w.cs.CoreV1().Pods(w.ns).Delete(ctx, "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	stack.WaitFor(t, 60*time.Second, "the Pod to be gone", func() bool {
		_, err := w.cs.CoreV1().Pods(w.ns).Get(ctx, "app", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if _, err := w.vc.Logical().Write("auth/token/lookup-accessor", map[string]any{"accessor": accessors[0]}); err == nil {
		t.Error("the Pod's Vault token still exists after the Pod was deleted")
	}
	// Its database lease (max TTL 10m) is gone too: revoked, not expired.
	leases, err := w.vc.Logical().List("sys/leases/lookup/" + dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if leases != nil && len(leases.Data["keys"].([]any)) > 0 {
		t.Errorf("the Pod's database leases outlive it: %v", leases.Data["keys"])
	}
}

// podTokens lists the accessors of Vault tokens issued to this test's
// service account.
func (w *world) podTokens() []string {
	w.t.Helper()
	out, err := w.env.TokenAccessors(context.Background(), w.ns)
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}
