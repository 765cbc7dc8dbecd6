package podstatus

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/kube"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// agentStatus is what an agent's GET /status answers (sidecar/health.go).
const agentStatus = `{
  "ready": true,
  "degraded": false,
  "secrets": {
    "cfg": {"path": "secret/data/app/config", "version": "3", "written": "2026-03-01T11:50:00Z", "leased": false,
      "kind": "kv-v2", "fetched": "2026-03-01T11:58:00Z", "next_refresh": "2026-03-01T12:03:00Z", "next": "re-read", "refresh": "5m0s",
      "reload": "signal:SIGHUP", "last_reload": {"at": "2026-03-01T11:50:00Z", "result": "success"}},
    "db": {"path": "database/creds/app", "expires": "2026-03-01T12:00:40Z", "written": "2026-03-01T11:59:30Z", "leased": true,
      "kind": "leased", "fetched": "2026-03-01T11:59:30Z", "next_refresh": "2026-03-01T12:00:16Z", "next": "renew",
      "last_fetch": {"at": "2026-03-01T11:59:30Z", "result": "success"},
      "last_renewal": {"at": "2026-03-01T11:59:30Z", "result": "failure", "error": "vault PUT /v1/sys/leases/renew: 400 Bad Request: lease not found: database/creds/app/[lease]"},
      "reload": "restart", "last_reload": {"at": "2026-03-01T11:59:31Z", "result": "success"},
      "last_error": {"at": "2026-03-01T11:59:30Z", "result": "failure", "error": "vault PUT /v1/sys/leases/renew: 400 Bad Request: lease not found: database/creds/app/[lease]"}}
  },
  "agent": {"mode": "sidecar", "pod_mode": "native", "version": "v0.9.0", "token_expires": "2026-03-01T12:45:00Z",
    "last_login": {"at": "2026-03-01T11:00:00Z", "result": "success"}}
}`

const wantTable = `Pod apps/web-1: agent sidecar (native), version v0.9.0, ready, Vault token expires in 45m
SECRET  PATH                    KIND    FETCHED  EXPIRES  NEXT           LAST RENEWAL    LAST RELOAD                LAST ERROR
cfg     secret/data/app/config  kv-v2   2m ago   -        re-read in 3m  -               signal:SIGHUP: ok 10m ago  -
db      database/creds/app      leased  30s ago  in 40s   renew in 16s   FAILED 30s ago  restart: ok 29s ago        30s ago (below)
Errors:
  db: vault PUT /v1/sys/leases/renew: 400 Bad Request: lease not found: database/creds/app/[lease]
`

// fakeAPI stands in for the apiserver: Pods, a Deployment, the pod proxy,
// and a denial of whatever deny names ("get pods", "get pods/proxy", …).
type fakeAPI struct {
	pods   map[string]*corev1.Pod
	deploy *appsv1.Deployment
	deny   map[string]bool
	proxy  func(pod string) (int, string)
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const podsPrefix = "/api/v1/namespaces/apps/pods"
	forbid := func(verb, resource, name string) bool {
		if !f.deny[verb+" "+resource] {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Reason: metav1.StatusReasonForbidden, Code: 403,
			Message: `pods "` + name + `" is forbidden: User "dev" cannot ` + verb + ` resource "` + resource + `"`})
		return true
	}
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	notFound := func() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: 404, Message: "not found"})
	}
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, ":8099/proxy/status"):
		name := strings.TrimSuffix(strings.TrimPrefix(p, podsPrefix+"/"), ":8099/proxy/status")
		if forbid("get", "pods/proxy", name) {
			return
		}
		code, body := f.proxy(name)
		w.WriteHeader(code)
		w.Write([]byte(body))
	case p == podsPrefix:
		if forbid("list", "pods", "") {
			return
		}
		list := &corev1.PodList{}
		for _, pod := range f.pods {
			if r.URL.Query().Get("labelSelector") == "app=web" && pod.Labels["app"] == "web" {
				list.Items = append(list.Items, *pod)
			}
		}
		reply(list)
	case strings.HasPrefix(p, podsPrefix+"/"):
		name := strings.TrimPrefix(p, podsPrefix+"/")
		if forbid("get", "pods", name) {
			return
		}
		if pod, ok := f.pods[name]; ok {
			reply(pod)
			return
		}
		notFound()
	case p == "/apis/apps/v1/namespaces/apps/deployments/web":
		if forbid("get", "deployments", "web") {
			return
		}
		reply(f.deploy)
	default:
		notFound()
	}
}

func nativePod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: injector.AgentContainer, RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
			Containers:     []corev1.Container{{Name: "app"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: []corev1.ContainerStatus{
			{Name: injector.AgentContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}
}

func newFake() *fakeAPI {
	return &fakeAPI{
		pods:   map[string]*corev1.Pod{"web-1": nativePod("web-1"), "web-2": nativePod("web-2")},
		deploy: &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps"}, Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
		deny:   map[string]bool{},
		proxy:  func(string) (int, string) { return http.StatusOK, agentStatus },
	}
}

// runFake runs the command against f with args; it returns the exit code,
// stdout and stderr.
func runFake(t *testing.T, f *fakeAPI, args ...string) (int, string, string) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cs, err := kube.New(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	o, err := parse(args, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), cs, "apps", o, func() time.Time { return now }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestATablePerPodNamesEachSecretsLifecycle(t *testing.T) {
	code, out, errOut := runFake(t, newFake(), "pod/web-1")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != wantTable {
		t.Errorf("got\n%s\nwant\n%s", out, wantTable)
	}
}

func TestJSONPassesTheAgentsDocumentOnForEveryPodOfADeployment(t *testing.T) {
	code, out, errOut := runFake(t, newFake(), "deploy/web", "-o", "json")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rs []Result
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d results, want the Deployment's 2 Pods:\n%s", len(rs), out)
	}
	for _, r := range rs {
		var got, want any
		json.Unmarshal(r.Status, &got)
		json.Unmarshal([]byte(agentStatus), &want)
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if r.Namespace != "apps" || !strings.HasPrefix(r.Pod, "web-") || string(gb) != string(wb) {
			t.Errorf("result %+v", r)
		}
	}
}

func TestErrorsSayWhatIsWrongAndWhatToDo(t *testing.T) {
	initOnly := nativePod("batch")
	initOnly.Spec.InitContainers = []corev1.Container{{Name: injector.AgentInitContainer}}
	initOnly.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: injector.AgentInitContainer, State: corev1.ContainerState{
		Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: `secrets not written within 2m0s: fetch secret "db" from database/creds/app: permission denied`}}}}
	plain := nativePod("plain")
	plain.Spec.InitContainers = nil
	crashing := nativePod("crashing")
	crashing.Status.InitContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	crashing.Status.InitContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Message: "vault unreachable"}

	for _, c := range []struct {
		name, target string
		deny         string
		proxy        func(string) (int, string)
		want         []string
	}{
		{name: "a Pod without an agent is not injected", target: "plain", want: []string{"not injected: no ramvault-agent container", "ramvault.io/inject"}},
		{name: "an init-only Pod has no sidecar to ask: its init container's state says what happened", target: "pod/batch",
			want: []string{"init-only mode", "no sidecar to ask", "terminated, exit code 1 (Error): secrets not written within 2m0s", `?(@.name=="ramvault-agent-init")`}},
		{name: "an agent that is not running says how it last ended", target: "crashing", want: []string{"is not running (waiting: CrashLoopBackOff)", "exit code 1: vault unreachable"}},
		{name: "a denied get pods names the verb", target: "web-1", deny: "get pods", want: []string{`forbidden: your RBAC lacks "get pods" in namespace apps`}},
		{name: "a denied pod proxy names pods/proxy", target: "web-1", deny: "get pods/proxy", want: []string{`lacks "get pods/proxy" in namespace apps`}},
		{name: "a denied Deployment names deployments", target: "deploy/web", deny: "get deployments", want: []string{`lacks "get deployments (apps)"`}},
		{name: "a denied list names list pods", target: "deploy/web", deny: "list pods", want: []string{`lacks "list pods"`}},
		{name: "a missing Pod is named", target: "gone", want: []string{"gone: not found"}},
		{name: "an agent older than /status says to upgrade it", target: "web-1", proxy: func(string) (int, string) { return http.StatusNotFound, "404 page not found" },
			want: []string{"no /status endpoint", "upgrade"}},
		{name: "an agent not listening is named", target: "web-1", proxy: func(string) (int, string) {
			return http.StatusServiceUnavailable, "dial tcp 10.0.0.5:8099: connect: connection refused"
		},
			want: []string{"asking the agent through the pod proxy", "connection refused"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFake()
			f.pods["batch"], f.pods["plain"], f.pods["crashing"] = initOnly, plain, crashing
			if c.deny != "" {
				f.deny[c.deny] = true
			}
			if c.proxy != nil {
				f.proxy = c.proxy
			}
			code, out, errOut := runFake(t, f, c.target)
			if code != exitError || out != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// Run reads the kubeconfig named by --kubeconfig (or $KUBECONFIG), its
// --context, and the context's namespace unless -n is given.
func TestRunTakesTheKubeconfigContextAndNamespace(t *testing.T) {
	srv := httptest.NewServer(newFake())
	t.Cleanup(srv.Close)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters:
- {name: fake, cluster: {server: "`+srv.URL+`"}}
- {name: wrong, cluster: {server: "http://127.0.0.1:1"}}
contexts:
- {name: dev, context: {cluster: fake, user: dev, namespace: apps}}
- {name: other, context: {cluster: wrong, user: dev, namespace: elsewhere}}
current-context: other
users:
- {name: dev, user: {token: not-a-real-token}}
`), 0o600)
	for _, args := range [][]string{
		{"web-1", "--kubeconfig", kc, "--context", "dev"},
		{"--context=dev", "-n", "apps", "pod/web-1", "--kubeconfig=" + kc},
	} {
		var out, errOut bytes.Buffer
		if code := Run(context.Background(), args, &out, &errOut); code != 0 || !strings.Contains(out.String(), "Pod apps/web-1: agent sidecar") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out.String(), errOut.String())
		}
	}
	t.Setenv("KUBECONFIG", kc)
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), []string{"--context", "dev", "web-1", "-o", "json"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), `"pod": "web-1"`) {
		t.Errorf("$KUBECONFIG: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"-o", "yaml", "web-1"}, {"svc/web"}} {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), args, &out, &errOut)
		if code != exitUsage || !strings.Contains(errOut.String(), "Usage: status") {
			t.Errorf("%v: exit %d\n%s", args, code, errOut.String())
		}
	}
}
