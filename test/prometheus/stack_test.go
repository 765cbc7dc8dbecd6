package prometheus

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

// promAPI answers GET /api/v1/<path> of the stack's Prometheus: its data
// decoded into v.
func promAPI(t *testing.T, base, path string, q url.Values, v any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/"+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s %s: %s", path, q.Encode(), body.Error)
	}
	return json.Unmarshal(body.Data, v)
}

// series is one element of an instant vector.
type series struct {
	Metric map[string]string `json:"metric"`
}

func query(t *testing.T, base, expr string) ([]series, error) {
	t.Helper()
	var res struct {
		ResultType string   `json:"resultType"`
		Result     []series `json:"result"`
	}
	if err := promAPI(t, base, "query", url.Values{"query": {expr}}, &res); err != nil {
		return nil, err
	}
	if res.ResultType != "vector" {
		return nil, fmt.Errorf("%s: a %s, not a vector", expr, res.ResultType)
	}
	return res.Result, nil
}

// waitQuery waits until expr returns at least one series.
func waitQuery(t *testing.T, base, expr string, timeout time.Duration) []series {
	t.Helper()
	var got []series
	var err error
	stack.WaitFor(t, timeout, "data for "+expr, func() bool {
		got, err = query(t, base, expr)
		return err == nil && len(got) > 0
	})
	return got
}

type agentPod struct {
	cs   kubernetes.Interface
	env  stack.Env
	ns   string
	role string
	// deleteRole deletes the Vault role and its policy.
	deleteRole func()
}

const policy = `path "secret/data/prom/*" { capabilities = ["read"] }
path "database/creds/*" { capabilities = ["read"] }`

// newAgentPod makes a namespace, a Vault role of its own for its "app"
// service account, and an injected Pod "app" with the given annotations,
// running and ready.
func newAgentPod(t *testing.T, annotations func(role string) map[string]string) *agentPod {
	t.Helper()
	env := stack.Require(t)
	cs, err := stack.KubeClient(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	p := &agentPod{cs: cs, env: env, ns: stack.Namespace(t, cs, nil)}
	p.role = "prom-" + p.ns
	p.deleteRole, err = env.AppRole(context.Background(), p.role, p.ns, policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.deleteRole)
	a := map[string]string{"ramvault.io/inject": "true", "ramvault.io/role": p.role}
	for k, v := range annotations(p.role) {
		a[k] = v
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: a}, Spec: corev1.PodSpec{
		ServiceAccountName:            "app",
		TerminationGracePeriodSeconds: ptr.To[int64](5),
		SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsNonRoot: ptr.To(true)},
		Containers: []corev1.Container{{Name: "app", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", "sleep 3600"}}},
	}}
	if _, err := cs.CoreV1().Pods(p.ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stack.WaitPod(t, cs, p.ns, "app", 90*time.Second, stack.PodRunningReady)
	return p
}

// The stack's Prometheus, through the shipped scrape configuration, finds
// the webhook's replicas and the agent of an injected Pod (by its declared
// port) and scrapes them; every query of the shipped dashboard, its
// variables set to that Pod, returns data, as do its variables' queries.
// The Pod's database secret rotates (TTL 10s, max 20s) and restarts the
// app, so that renewals and reloads have happened.
func TestPrometheusScrapesRamvaultAndTheDashboardQueriesAnswer(t *testing.T) {
	t.Parallel()
	base := stack.RequirePrometheus(t)
	var db string
	p := newAgentPod(t, func(role string) map[string]string {
		db = stack.DBRoleFor(t, stack.Require(t), role, "10s", "20s")
		return map[string]string{"ramvault.io/secret-db": db, "ramvault.io/reload": "restart"}
	})

	agent := fmt.Sprintf(`job="ramvault-agents", namespace=%q, pod="app"`, p.ns)
	up := waitQuery(t, base, "up{"+agent+"} == 1", 60*time.Second)
	if got := up[0].Metric["instance"]; !strings.HasSuffix(got, ":9102") {
		t.Errorf("agent target %q: not port 9102", got)
	}
	webhook := waitQuery(t, base, `up{job="ramvault-injector", namespace="ramvault-system"} == 1`, 60*time.Second)
	for _, s := range webhook {
		if !strings.HasSuffix(s.Metric["instance"], ":9090") || !strings.HasPrefix(s.Metric["pod"], "ramvault-injector-") {
			t.Errorf("webhook target %v: not a ramvault-injector Pod's port 9090", s.Metric)
		}
	}
	t.Logf("scraping %d webhook replica(s) and the agent at %s", len(webhook), up[0].Metric["instance"])
	// a rotation: renewed, re-issued before the max TTL, the app restarted
	waitQuery(t, base, `ramvault_agent_reloads_total{result="success", `+agent+`}`, 90*time.Second)
	waitQuery(t, base, `ramvault_agent_lease_renewals_total{`+agent+`}`, 30*time.Second)

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	b, err := os.ReadFile(repo(t, "manifests", "prometheus", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$namespace", regexp.QuoteMeta(p.ns), "$pod", "app", "$__rate_interval", "1m")
	var n int
	for _, panel := range dash.Panels {
		for _, target := range panel.Targets {
			n++
			expr := vars.Replace(target.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("panel %q: a variable the test does not set: %s", panel.Title, expr)
				continue
			}
			// the webhook's histograms and rates need admissions in the
			// last minute: this test's Pod and its restarts were some
			got := waitQuery(t, base, expr, 30*time.Second)
			t.Logf("panel %q: %d series for %s", panel.Title, len(got), expr)
		}
	}
	if n < 10 {
		t.Fatalf("%d panel queries in the dashboard", n)
	}
	// the variables' label_values(selector, label) list the test's Pod
	labelValues := regexp.MustCompile(`^label_values\((.+), (\w+)\)$`)
	for _, v := range dash.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok {
			continue // the datasource variable
		}
		m := labelValues.FindStringSubmatch(vars.Replace(fmt.Sprint(q["query"])))
		if m == nil {
			t.Errorf("variable %s: not label_values(selector, label): %v", v.Name, q["query"])
			continue
		}
		var values []string
		if err := promAPI(t, base, "label/"+m[2]+"/values", url.Values{"match[]": {m[1]}}, &values); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"namespace": p.ns, "pod": "app"}[m[2]]
		if !slices.Contains(values, want) {
			t.Errorf("variable %s: %v lacks %q", v.Name, values, want)
		}
	}
}

// An alert shown firing: the Pod's Vault role is deleted and its token
// revoked, so the agent's next read of its KV secret is refused, its new
// logins fail, and the shipped RamvaultLoginFailing and
// RamvaultAgentDegraded fire for that Pod in the stack's Prometheus (their
// for: cut to stack.PrometheusRuleFor there, the expressions as shipped).
func TestAlertsFireForAPodWhoseVaultRoleWasDeleted(t *testing.T) {
	t.Parallel()
	base := stack.RequirePrometheus(t)
	env := stack.Require(t)
	vc, err := env.VaultClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := newAgentPod(t, func(role string) map[string]string {
		if _, err := vc.KVv2("secret").Put(ctx, "prom/"+role, map[string]any{"password": "planted-" + role}); err != nil {
			t.Fatal(err)
		}
		return map[string]string{"ramvault.io/secret-kv": "secret/data/prom/" + role, "ramvault.io/refresh": "2s"}
	})
	agent := fmt.Sprintf(`job="ramvault-agents", namespace=%q, pod="app"`, p.ns)
	waitQuery(t, base, "ramvault_agent_degraded{"+agent+"} == 0", 60*time.Second)
	if alerts := firing(t, base, p.ns); len(alerts) > 0 {
		t.Fatalf("alerts before the role was deleted: %v", alerts)
	}

	p.deleteRole()
	accessors, err := env.TokenAccessors(ctx, p.ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(accessors) != 1 {
		t.Fatalf("%d Vault tokens for the Pod's service account, want 1", len(accessors))
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "auth/token/revoke-accessor", map[string]any{"accessor": accessors[0]}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	want := []string{"RamvaultAgentDegraded", "RamvaultLoginFailing"}
	var got []string
	stack.WaitFor(t, 90*time.Second, fmt.Sprintf("alerts %v firing for %s/app", want, p.ns), func() bool {
		got = firing(t, base, p.ns)
		return !slices.ContainsFunc(want, func(a string) bool { return !slices.Contains(got, a) })
	})
	t.Logf("%v firing %.1fs after the token was revoked", got, time.Since(start).Seconds())
}

// firing lists the alerts firing for Pod "app" of namespace ns.
func firing(t *testing.T, base, ns string) []string {
	t.Helper()
	var res struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := promAPI(t, base, "alerts", nil, &res); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range res.Alerts {
		if a.State == "firing" && a.Labels["namespace"] == ns && a.Labels["pod"] == "app" && !slices.Contains(names, a.Labels["alertname"]) {
			names = append(names, a.Labels["alertname"])
		}
	}
	slices.Sort(names)
	return names
}
