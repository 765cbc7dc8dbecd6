// Package foundation proves the local stack is the real thing: a node that
// runs scheduled Pods, tmpfs emptyDirs, Vault Kubernetes auth with
// audience-bound projected tokens, and dynamic PostgreSQL credentials.
package foundation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

func TestNodeIsReady(t *testing.T) {
	env := stack.Require(t)
	cs := client(t, env)
	n, err := cs.CoreV1().Nodes().Get(context.Background(), stack.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			t.Fatalf("node %s Ready=%s: %s", n.Name, c.Status, c.Message)
		}
	}
	if got := n.Status.NodeInfo.KubeletVersion; got != "v1.34.4" {
		t.Errorf("kubelet version %q, want v1.34.4", got)
	}
}

func TestDeploymentPodsAreScheduledAndRun(t *testing.T) {
	env := stack.Require(t)
	cs := client(t, env)
	ns := stack.Namespace(t, cs, nil)
	labels := map[string]string{"app": "sleeper"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{Name: "main", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
						Command: []string{"sleep", "3600"}}},
				},
			},
		},
	}
	ctx := context.Background()
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := cs.AppsV1().Deployments(ns).Get(ctx, "sleeper", metav1.GetOptions{})
		return err == nil && got.Status.AvailableReplicas == 2, err
	})
	if err != nil {
		t.Fatalf("deployment never had 2 available replicas: %v", err)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=sleeper"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 2 {
		t.Fatalf("%d pods, want 2", len(pods.Items))
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName != stack.NodeName || p.Status.Phase != corev1.PodRunning {
			t.Errorf("pod %s: node %q phase %s; want scheduled to %s and Running", p.Name, p.Spec.NodeName, p.Status.Phase, stack.NodeName)
		}
	}
}

func TestMemoryEmptyDirIsTmpfs(t *testing.T) {
	env := stack.Require(t)
	cs := client(t, env)
	ns := stack.Namespace(t, cs, nil)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "tmpfs"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "main", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command:      []string{"sh", "-c", "stat -f -c 'fstype=%T' /mem /disk"},
				VolumeMounts: []corev1.VolumeMount{{Name: "mem", MountPath: "/mem"}, {Name: "disk", MountPath: "/disk"}}}},
			Volumes: []corev1.Volume{
				{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
				{Name: "disk", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stack.WaitPod(t, cs, ns, "tmpfs", 60*time.Second, stack.PodSucceeded)
	lines := strings.Fields(stack.PodLogs(t, cs, ns, "tmpfs", "main"))
	if len(lines) != 2 || lines[0] != "fstype=tmpfs" || lines[1] == "fstype=tmpfs" {
		t.Fatalf("stat -f printed %q; want the Memory emptyDir on tmpfs and the plain one not", lines)
	}
}

// loginScript runs in a busybox Pod: Kubernetes auth with the audience-bound
// projected token, read a KV v2 secret, print its SHA-256 (never the value),
// then try the wrong-audience token and print how Vault answered.
const loginScript = `
J=$(cat /var/run/secrets/vault/token)
T=$(wget -qO- --post-data "{\"role\":\"$ROLE\",\"jwt\":\"$J\"}" "$VAULT/v1/auth/kubernetes/login" | sed -n 's/.*"client_token":"\([^"]*\)".*/\1/p')
[ -n "$T" ] || { echo login=failed; exit 1; }
echo login=ok
V=$(wget -qO- --header "X-Vault-Token: $T" "$VAULT/v1/secret/data/$SECRET" | sed -n 's/.*"password":"\([^"]*\)".*/\1/p')
echo "secret-sha256=$(printf %s "$V" | sha256sum | cut -d' ' -f1)"
W=$(cat /var/run/secrets/wrong/token)
if wget -qO- --post-data "{\"role\":\"$ROLE\",\"jwt\":\"$W\"}" "$VAULT/v1/auth/kubernetes/login" >/dev/null 2>/tmp/err; then
  echo wrong-audience=accepted
else
  echo "wrong-audience=$(cat /tmp/err)"
fi
`

func TestPodLogsInToVaultWithAudienceBoundToken(t *testing.T) {
	env := stack.Require(t)
	cs := client(t, env)
	ns := stack.Namespace(t, cs, nil)
	vc, err := env.VaultClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	secret, role := "foundation-"+ns, "foundation-"+ns
	password := "planted-" + ns
	if _, err := vc.KVv2("secret").Put(ctx, secret, map[string]any{"password": password}); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`path "secret/data/%s" { capabilities = ["read"] }`, secret)
	if err := vc.Sys().PutPolicyWithContext(ctx, role, policy); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+role, map[string]any{
		"bound_service_account_names": "app", "bound_service_account_namespaces": ns,
		"audience": "vault", "token_policies": role, "token_ttl": "5m",
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = vc.Logical().Delete("auth/kubernetes/role/" + role)
		_ = vc.Sys().DeletePolicy(role)
		_ = vc.KVv2("secret").DeleteMetadata(context.Background(), secret)
	})
	token := func(name, aud string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: aud, ExpirationSeconds: ptr.To[int64](600), Path: "token"}}}}}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "login"},
		Spec: corev1.PodSpec{
			ServiceAccountName:           "app",
			AutomountServiceAccountToken: ptr.To(false),
			RestartPolicy:                corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "main", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", loginScript},
				Env:     []corev1.EnvVar{{Name: "VAULT", Value: env.PodVaultAddr}, {Name: "ROLE", Value: role}, {Name: "SECRET", Value: secret}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "vault-token", MountPath: "/var/run/secrets/vault", ReadOnly: true},
					{Name: "wrong-token", MountPath: "/var/run/secrets/wrong", ReadOnly: true}}}},
			Volumes: []corev1.Volume{token("vault-token", "vault"), token("wrong-token", "not-vault")},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := stack.WaitPod(t, cs, ns, "login", 60*time.Second, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	out := stack.PodLogs(t, cs, ns, "login", "main")
	if p.Status.Phase != corev1.PodSucceeded || !strings.Contains(out, "login=ok") {
		t.Fatalf("in-pod login failed (phase %s):\n%s", p.Status.Phase, out)
	}
	sum := sha256.Sum256([]byte(password))
	if want := "secret-sha256=" + hex.EncodeToString(sum[:]); !strings.Contains(out, want) {
		t.Errorf("the Pod did not read the planted secret; log:\n%s", out)
	}
	if strings.Contains(out, password) {
		t.Errorf("the Pod's log holds the secret value")
	}
	if !strings.Contains(out, "wrong-audience=") || !strings.Contains(out, "403") {
		t.Errorf("a token with audience not-vault was not refused with 403; log:\n%s", out)
	}
}

func TestVaultIssuesPostgresCredentialsUntilRevoked(t *testing.T) {
	env := stack.Require(t)
	vc, err := env.VaultClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	role := "foundation-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if _, err := vc.Logical().WriteWithContext(ctx, stack.DatabaseMount+"/roles/"+role, map[string]any{
		"db_name": stack.DatabaseConfig,
		"creation_statements": []string{
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
			`GRANT CONNECT ON DATABASE postgres TO "{{name}}";`},
		"default_ttl": "2m", "max_ttl": "5m",
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = vc.Logical().Delete(stack.DatabaseMount + "/roles/" + role) })
	creds, err := vc.Logical().ReadWithContext(ctx, stack.DatabaseMount+"/creds/"+role)
	if err != nil {
		t.Fatal(err)
	}
	user, pass := creds.Data["username"].(string), creds.Data["password"].(string)
	if user == "" || pass == "" || creds.LeaseID == "" || creds.LeaseDuration <= 0 {
		t.Fatalf("credentials without user, password or lease: lease=%q ttl=%d", creds.LeaseID, creds.LeaseDuration)
	}
	url := fmt.Sprintf("postgres://%s:%s@%s:%s/postgres?sslmode=disable", user, pass, env.PGHost, env.PGPort)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("log in with the issued credentials: %v", err)
	}
	var who string
	if err := conn.QueryRow(ctx, "select current_user").Scan(&who); err != nil || who != user {
		t.Fatalf("current_user = %q, %v; want %q", who, err, user)
	}
	conn.Close(ctx)
	if err := vc.Sys().RevokeWithContext(ctx, creds.LeaseID); err != nil {
		t.Fatal(err)
	}
	if conn, err := pgx.Connect(ctx, url); err == nil {
		conn.Close(ctx)
		t.Fatal("the credentials still log in after their lease was revoked")
	}
}
