package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/ramvault/ramvault/test/stack"
)

// statusRules is the RBAC kubectl ramvault status documents: get and list
// Pods, get Deployments, get on pods/proxy.
var statusRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
	{APIGroups: []string{""}, Resources: []string{"pods/proxy"}, Verbs: []string{"get"}},
	{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}},
}

// kubectl ramvault status, run as a developer with only the RBAC it
// documents, names a rotating database secret's path, kind and expiry;
// after a rotation a newer fetch and the reload; never a value, the token
// or a lease ID. Without get on pods/proxy it says that verb is missing.
func TestKubectlRamvaultStatus(t *testing.T) {
	w := newWorld(t, kvPolicy)
	path := w.dbRole("30s", "60s")
	plugin := buildPlugin(t)
	dev := w.userKubeconfig("status-dev", statusRules)
	noProxy := w.userKubeconfig("status-view", statusRules[:1])

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/secret-db": path, "ramvault.io/reload": "restart"}},
		// The app prints what it got, so the test knows the values to look for.
		Spec: appSpec("cat /var/run/secrets/ramvault/db; echo; sleep 3600")}
	w.create(pod)
	stack.WaitPod(t, w.cs, w.ns, "app", 90*time.Second, stack.PodRunningReady)

	status := func(kubeconfig string, args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		cmd := exec.Command(plugin, append([]string{"status", "-n", w.ns, "--kubeconfig", kubeconfig}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG=/nonexistent") // --kubeconfig wins
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}
	type result struct {
		Pod    string `json:"pod"`
		Error  string `json:"error"`
		Status struct {
			Ready   bool `json:"ready"`
			Secrets map[string]struct {
				Path       string    `json:"path"`
				Kind       string    `json:"kind"`
				Expires    time.Time `json:"expires"`
				Fetched    time.Time `json:"fetched"`
				LastReload *struct {
					Result string `json:"result"`
				} `json:"last_reload"`
			} `json:"secrets"`
			Agent struct {
				Mode, Version string
			} `json:"agent"`
		} `json:"status"`
	}
	asJSON := func() result {
		t.Helper()
		out, errOut, err := status(dev, "pod/app", "-o", "json")
		if err != nil {
			t.Fatalf("kubectl ramvault status -o json: %v\n%s%s", err, out, errOut)
		}
		var rs []result
		if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 1 {
			t.Fatalf("-o json: %v\n%s", err, out)
		}
		return rs[0]
	}
	var outputs []string

	first := asJSON()
	db := first.Status.Secrets["db"]
	if !first.Status.Ready || first.Status.Agent.Mode != "sidecar" || db.Path != path || db.Kind != "leased" || db.Expires.IsZero() || db.Fetched.IsZero() {
		t.Fatalf("first answer: %+v", first)
	}
	table, errOut, err := status(dev, "app")
	if err != nil {
		t.Fatalf("kubectl ramvault status app: %v\n%s", err, errOut)
	}
	for _, want := range []string{"Pod " + w.ns + "/app: agent sidecar", "db", path, "leased", " in "} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
	outputs = append(outputs, table)

	// The lease's max TTL is 60s: the agent fetches a new secret before it
	// and restarts the app.
	var rotated result
	stack.WaitFor(t, 120*time.Second, "a rotation in kubectl ramvault status", func() bool {
		rotated = asJSON()
		s := rotated.Status.Secrets["db"]
		return s.Fetched.After(db.Fetched) && s.LastReload != nil
	})
	if r := rotated.Status.Secrets["db"].LastReload; r.Result != "success" {
		t.Errorf("the reload after the rotation: %+v", r)
	}
	table, _, err = status(dev, "pod/app")
	if err != nil || !strings.Contains(table, "restart: ok") {
		t.Errorf("the table after the rotation (%v) lacks the reload:\n%s", err, table)
	}
	outputs = append(outputs, table)
	js, _, _ := status(dev, "pod/app", "-o", "json")
	outputs = append(outputs, js)

	_, errOut, err = status(noProxy, "pod/app")
	if err == nil || !strings.Contains(errOut, `lacks "get pods/proxy"`) {
		t.Errorf("without get on pods/proxy: %v\n%s", err, errOut)
	}

	// Never a value (what the app printed, before and after the rotation),
	// the agent's token, or a lease ID.
	never := []string{"hvs.", `"lease_id"`}
	for _, previous := range []bool{false, true} {
		b, err := w.cs.CoreV1().Pods(w.ns).GetLogs("app", &corev1.PodLogOptions{Container: "app", Previous: previous}).DoRaw(context.Background())
		if err != nil {
			continue // no previous container yet
		}
		// The log holds only the JSON file, once per start of the app.
		for dec := json.NewDecoder(bytes.NewReader(b)); ; {
			var v map[string]any
			if dec.Decode(&v) != nil {
				break
			}
			for _, k := range []string{"username", "password"} {
				if s, _ := v[k].(string); s != "" {
					never = append(never, s)
				}
			}
		}
	}
	if len(never) < 4 {
		t.Errorf("the app printed no credentials to look for: %v", never)
	}
	leases, err := w.vc.Logical().ListWithContext(context.Background(), "sys/leases/lookup/"+path)
	if err != nil {
		t.Fatal(err)
	}
	if leases != nil {
		for _, k := range leases.Data["keys"].([]any) {
			never = append(never, k.(string))
		}
	}
	for _, out := range outputs {
		for _, v := range never {
			if strings.Contains(out, v) {
				t.Errorf("kubectl ramvault status printed %q", v)
			}
		}
	}
}

// buildPlugin builds kubectl-ramvault from this checkout into a temporary
// directory.
func buildPlugin(t *testing.T) string {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "kubectl-ramvault")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kubectl-ramvault")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kubectl-ramvault: %v\n%s", err, out)
	}
	return bin
}

// userKubeconfig is a kubeconfig for a new ServiceAccount of the test's
// namespace, bound to a Role of only the given rules.
func (w *world) userKubeconfig(name string, rules []rbacv1.PolicyRule) string {
	w.t.Helper()
	ctx := context.Background()
	rbac := w.cs.RbacV1()
	if _, err := w.cs.CoreV1().ServiceAccounts(w.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	if _, err := rbac.Roles(w.ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(w.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: w.ns}}}, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	tr, err := w.cs.CoreV1().ServiceAccounts(w.ns).CreateToken(ctx, name, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	admin, err := clientcmd.LoadFromFile(w.env.Kubeconfig)
	if err != nil {
		w.t.Fatal(err)
	}
	cluster := admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster]
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["stack"] = cluster
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "stack", AuthInfo: name, Namespace: w.ns}
	cfg.CurrentContext = name
	file := filepath.Join(w.t.TempDir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, file); err != nil {
		w.t.Fatal(err)
	}
	return file
}
