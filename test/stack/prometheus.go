package stack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// PrometheusAddr is where the stack's Prometheus listens (loopback only).
const PrometheusAddr = "127.0.0.1:19090"

// PrometheusURL is the stack's Prometheus API and UI.
const PrometheusURL = "http://" + PrometheusAddr

// PrometheusScrapeInterval is the stack's scrape and rule evaluation
// interval: short, so a test sees a new sample within seconds.
const PrometheusScrapeInterval = 2 * time.Second

// PrometheusRuleFor is the `for:` every shipped alert rule gets on the
// stack, so that a test sees an alert fire in seconds; the expressions are
// the shipped ones.
const PrometheusRuleFor = "4s"

const prometheusSA = "prometheus"

// The shipped files the stack's Prometheus runs, relative to the checkout.
var (
	ScrapeConfigFile = filepath.Join("manifests", "prometheus", "scrape-configs.yaml")
	RulesFile        = filepath.Join("manifests", "prometheus", "rules.yaml")
)

// startPrometheus runs Prometheus (bin/prometheus, built from its Go module:
// Debian's lacks the Kubernetes discovery) on loopback with its data under
// the state root, scraping the webhook and the agents through the shipped
// scrape configuration and evaluating the shipped rules.
func (s *Stack) startPrometheus(ctx context.Context) error {
	if err := s.writePrometheusConfig(ctx); err != nil {
		return err
	}
	c, err := s.start("prometheus", []string{s.bin("prometheus"),
		"--config.file=" + s.p.join("prometheus", "prometheus.yml"),
		"--storage.tsdb.path=" + s.p.join("prometheus", "data"),
		"--storage.tsdb.retention.time=1d",
		"--web.listen-address=" + PrometheusAddr,
		"--web.enable-lifecycle",
		"--log.level=warn"}, startOpts{})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, 30*time.Second, httpOK(nil, PrometheusURL+"/-/ready"))
}

// writePrometheusConfig writes Prometheus's credential for the apiserver
// (a ServiceAccount token with only the discovery's verbs, in a kubeconfig)
// and its configuration: the shipped scrape configuration with
// kubeconfig_file added to each kubernetes_sd_configs entry (Prometheus
// runs outside the cluster), and the shipped rules with a short `for:`.
func (s *Stack) writePrometheusConfig(ctx context.Context) error {
	dir := s.p.join("prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	token, err := s.prometheusToken(ctx)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	files := map[string][]byte{
		filepath.Join(dir, "token"): []byte(token),
		kubeconfig: fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: ramvault-dev
  cluster: {server: "https://%s:%d", certificate-authority: %q}
users:
- name: prometheus
  user: {tokenFile: %q}
contexts:
- name: ramvault-dev
  context: {cluster: ramvault-dev, user: prometheus}
current-context: ramvault-dev
`, Gateway, APIServerPort, s.p.pki("ca.crt"), filepath.Join(dir, "token")),
	}
	var scrape struct {
		ScrapeConfigs []map[string]any `json:"scrape_configs"`
	}
	if err := readYAML(filepath.Join(root, ScrapeConfigFile), &scrape); err != nil {
		return err
	}
	for _, job := range scrape.ScrapeConfigs {
		sds, _ := job["kubernetes_sd_configs"].([]any)
		for _, sd := range sds {
			sd.(map[string]any)["kubeconfig_file"] = kubeconfig
		}
	}
	var rules struct {
		Groups []struct {
			Name  string           `json:"name"`
			Rules []map[string]any `json:"rules"`
		} `json:"groups"`
	}
	if err := readYAML(filepath.Join(root, RulesFile), &rules); err != nil {
		return err
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if _, ok := r["for"]; ok {
				r["for"] = PrometheusRuleFor
			}
		}
	}
	rulesFile := filepath.Join(dir, "rules.yml")
	interval := PrometheusScrapeInterval.String()
	cfg := map[string]any{
		"global":         map[string]any{"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
		"rule_files":     []string{rulesFile},
		"scrape_configs": scrape.ScrapeConfigs,
	}
	for path, v := range map[string]any{rulesFile: rules, filepath.Join(dir, "prometheus.yml"): cfg} {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		files[path] = b
	}
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func readYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// prometheusToken makes the ServiceAccount kube-system/prometheus, allowed
// only what the Kubernetes discovery of scrape-configs.yaml needs (get,
// list, watch on pods, services, endpoints and endpointslices), and returns
// a token of it valid for 30 days.
func (s *Stack) prometheusToken(ctx context.Context) (string, error) {
	cs, err := s.client()
	if err != nil {
		return "", err
	}
	name := "ramvault-dev-" + prometheusSA
	read := []string{"get", "list", "watch"}
	objs := []func() error{
		func() error {
			_, err := cs.CoreV1().ServiceAccounts("kube-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: prometheusSA}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods", "services", "endpoints"}, Verbs: read},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: prometheusSA, Namespace: "kube-system"}}}, metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range objs {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", err
		}
	}
	days := int64(30 * 24 * 3600)
	tr, err := cs.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, prometheusSA,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &days}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("prometheus token: %w", err)
	}
	return tr.Status.Token, nil
}

var prometheusOnce struct {
	once sync.Once
	err  error
}

// RequirePrometheus makes sure the stack's Prometheus runs with this
// checkout's scrape configuration and rules, starting it on a stack that
// was brought up without it, and returns its URL.
func RequirePrometheus(t testing.TB) string {
	t.Helper()
	env := Require(t)
	if env.External() {
		t.Fatal("the stack's Prometheus runs on the local stack only")
	}
	prometheusOnce.once.Do(func() { prometheusOnce.err = ensurePrometheus(env) })
	if prometheusOnce.err != nil {
		t.Fatalf("prometheus: %v", prometheusOnce.err)
	}
	return PrometheusURL
}

func ensurePrometheus(env Env) error {
	cfg, err := Config{Dir: env.StateDir}.withDefaults()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(cfg.Bin, "prometheus")); err != nil {
		return fmt.Errorf("no prometheus in %s: run `make tools`", cfg.Bin)
	}
	// One starter at a time, on a lock of its own: the stack's lock is held
	// shared by every test binary (this one too) for its whole life.
	fd, err := syscall.Open(filepath.Join(cfg.Dir, "prometheus.lock"), syscall.O_CREAT|syscall.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := &Stack{cfg: cfg, p: paths{cfg.Dir}, env: env}
	if httpOK(nil, PrometheusURL+"/-/ready")(ctx) != nil {
		return s.startPrometheus(ctx)
	}
	if err := s.writePrometheusConfig(ctx); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, PrometheusURL+"/-/reload", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reload: %s", resp.Status)
	}
	return nil
}

// PausePrometheus stops the stack's Prometheus (SIGSTOP) until resume is
// called (SIGCONT): a bench that measures the agents' CPU must not charge
// ramvault's agents for the stack's 2 s scrapes (PrometheusScrapeInterval,
// short for tests; no deployment scrapes that often), which vault-k8s's
// agents, having no metrics endpoint, do not get. After an interrupted
// bench: kill -CONT $(cat <state dir>/run/prometheus.pid).
func PausePrometheus(env Env) (resume func(), err error) {
	b, err := os.ReadFile(paths{env.StateDir}.pidFile("prometheus"))
	if err != nil {
		return nil, fmt.Errorf("the stack's Prometheus: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("the stack's Prometheus pid file: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("pause the stack's Prometheus (pid %d): %w", pid, err)
	}
	return func() { _ = syscall.Kill(pid, syscall.SIGCONT) }, nil
}
