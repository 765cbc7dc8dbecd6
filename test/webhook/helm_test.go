package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/test/stack"
)

const chartDir = "manifests/chart/ramvault"

// chartExamples are the chart's values examples, each with the kustomize
// overlay it renders ("" values: the chart's defaults).
var chartExamples = []struct{ values, overlay string }{
	{"", "manifests"},
	{"examples/self-signed.yaml", "manifests/overlays/self-signed"},
	{"examples/cert-manager.yaml", "manifests/overlays/cert-manager"},
	{"examples/secret.yaml", "manifests/overlays/cert-manager"},
	{"examples/dev.yaml", "manifests/overlays/dev"},
	{"examples/kind.yaml", "manifests/overlays/kind"},
	{"examples/vault-k8s-migration.yaml", "manifests/overlays/vault-k8s-migration"},
}

func exampleName(values string) string {
	if values == "" {
		return "defaults"
	}
	return strings.TrimSuffix(filepath.Base(values), ".yaml")
}

// helm runs bin/helm with its cache, config and data in a temporary
// directory, and returns its stdout; stderr is in the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no %s: run make tools", bin)
	}
	home := t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// helmTemplate is `helm template RELEASE chart -n NS [-f VALUES]... [args]`.
func helmTemplate(t *testing.T, release, ns string, values []string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	all := []string{"template", release, chartDir, "--namespace", ns}
	for _, v := range values {
		if v != "" {
			all = append(all, "-f", v)
		}
	}
	out, err := helm(t, append(all, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := stack.DecodeObjects(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func examplePath(values string) []string {
	if values == "" {
		return nil
	}
	return []string{filepath.Join(chartDir, values)}
}

// TestHelmLint: `helm lint --strict` passes on the chart with its defaults
// and with every values example.
func TestHelmLint(t *testing.T) {
	for _, ex := range chartExamples {
		t.Run(exampleName(ex.values), func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir}
			if ex.values != "" {
				args = append(args, "-f", filepath.Join(chartDir, ex.values))
			}
			if _, err := helm(t, args...); err != nil {
				t.Error(err)
			}
		})
	}
}

// deliberate is a difference between the chart and the kustomize overlays
// that is meant: apply undoes it on the two renderings before they are
// compared, and why says why it is there.
type deliberate struct {
	why   string
	when  func(values string) bool // nil: always
	apply func(chart, kust []*unstructured.Unstructured) ([]*unstructured.Unstructured, []*unstructured.Unstructured)
}

var (
	hashedConfigMap = regexp.MustCompile(`^(ramvault-injector-config)-[a-z0-9]{10}$`)
	helmLabels      = []string{"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}
)

func isMode(modes ...string) func(string) bool {
	return func(values string) bool {
		mode := "self-signed"
		switch exampleName(values) {
		case "cert-manager", "secret":
			mode = exampleName(values)
		}
		return slices.Contains(modes, mode)
	}
}

var deliberateDifferences = []deliberate{{
	why: "a chart cannot own its release's namespace (Helm stores the release in it before it creates anything): " +
		"`kubectl create namespace` and its Pod Security labels come first (docs/operations.md)",
	apply: func(chart, kust []*unstructured.Unstructured) ([]*unstructured.Unstructured, []*unstructured.Unstructured) {
		return chart, drop(kust, "Namespace", "")
	},
}, {
	why: "Helm's recommended labels; app.kubernetes.io/instance in the selectors keeps two releases in one namespace apart",
	apply: func(chart, kust []*unstructured.Unstructured) ([]*unstructured.Unstructured, []*unstructured.Unstructured) {
		for _, u := range chart {
			deleteKeys(u.Object, helmLabels)
		}
		return chart, kust
	},
}, {
	why: "kustomize names the ConfigMap by a hash of its content, the chart puts that hash on the Pod template " +
		"(checksum/config): both roll the Deployment when config.yaml changes; config.yaml is compared as YAML (comments differ)",
	apply: func(chart, kust []*unstructured.Unstructured) ([]*unstructured.Unstructured, []*unstructured.Unstructured) {
		for _, u := range kust {
			renameConfigMap(u)
		}
		for _, u := range append(slices.Clone(chart), kust...) {
			parseConfig(u)
			if u.GetKind() == "Deployment" {
				unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "annotations", "checksum/config")
				if a, _, _ := unstructured.NestedMap(u.Object, "spec", "template", "metadata", "annotations"); len(a) == 0 {
					unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "annotations")
				}
			}
		}
		return chart, kust
	},
}, {
	why:  "the chart labels its cert-manager objects as all the others; the overlay's have no labels",
	when: isMode("cert-manager"),
	apply: func(chart, kust []*unstructured.Unstructured) ([]*unstructured.Unstructured, []*unstructured.Unstructured) {
		for _, u := range chart {
			if u.GetKind() == "Issuer" || u.GetKind() == "Certificate" {
				u.SetLabels(nil)
			}
		}
		return chart, kust
	},
}, {
	why: "self-signed: the chart creates the webhook's Secret and Lease empty, so that helm uninstall removes them " +
		"and the Role needs no create (which cannot be limited to a name)",
	when: isMode("self-signed"),
	apply: func(chart, kust []*unstructured.Unstructured) ([]*unstructured.Unstructured, []*unstructured.Unstructured) {
		chart = drop(drop(chart, "Secret", "ramvault-injector-tls"), "Lease", "ramvault-injector")
		for _, u := range kust {
			if u.GetKind() != "Role" {
				continue
			}
			rules, _, _ := unstructured.NestedSlice(u.Object, "rules")
			rules = slices.DeleteFunc(rules, func(r any) bool {
				verbs, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "verbs")
				return slices.Equal(verbs, []string{"create"})
			})
			_ = unstructured.SetNestedSlice(u.Object, rules, "rules")
		}
		return chart, kust
	},
}, {
	why: "secret mode has no kustomize overlay: it is the cert-manager overlay without cert-manager's objects, " +
		"the CA given as the caBundle instead of cert-manager's inject-ca-from",
	when: isMode("secret"),
	apply: func(chart, kust []*unstructured.Unstructured) ([]*unstructured.Unstructured, []*unstructured.Unstructured) {
		kust = drop(drop(kust, "Issuer", ""), "Certificate", "")
		for _, u := range kust {
			if u.GetKind() == "MutatingWebhookConfiguration" {
				u.SetAnnotations(nil)
			}
		}
		for _, u := range chart {
			if u.GetKind() == "MutatingWebhookConfiguration" {
				whs, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
				for _, wh := range whs {
					unstructured.RemoveNestedField(wh.(map[string]any), "clientConfig", "caBundle")
				}
				_ = unstructured.SetNestedSlice(u.Object, whs, "webhooks")
			}
		}
		return chart, kust
	},
}}

// TestHelmChartRendersTheKustomizeOverlays: each values example renders,
// as release "ramvault" in ramvault-system, the objects of its kustomize
// overlay, whole (names, args, config keys, RBAC rules, webhook rules,
// matchConditions, failurePolicy, security contexts, probes, resources),
// but for the deliberate differences listed above.
func TestHelmChartRendersTheKustomizeOverlays(t *testing.T) {
	for _, ex := range chartExamples {
		t.Run(exampleName(ex.values), func(t *testing.T) {
			chart := helmTemplate(t, "ramvault", stack.InjectorNamespace, examplePath(ex.values))
			kust := renderDir(t, ex.overlay)
			for _, d := range deliberateDifferences {
				if d.when == nil || d.when(ex.values) {
					chart, kust = d.apply(chart, kust)
				}
			}
			got, want := byKey(chart), byKey(kust)
			for _, k := range slices.Sorted(maps.Keys(want)) {
				if _, ok := got[k]; !ok {
					t.Errorf("the chart renders no %s (%s does)", k, ex.overlay)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(got)) {
				w, ok := want[k]
				if !ok {
					t.Errorf("the chart renders %s, %s does not", k, ex.overlay)
					continue
				}
				if d := diffJSON(w.Object, got[k].Object); d != "" {
					t.Errorf("%s differs from %s's (- kustomize, + chart):\n%s", k, ex.overlay, d)
				}
			}
		})
	}
}

// TestHelmInvalidValuesFailNamingTheValue: values the schema or the
// templates refuse fail `helm template`, naming the value at fault.
func TestHelmInvalidValuesFailNamingTheValue(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"replicas that are not a number", []string{"--set", "replicas=two"}, "at '/replicas': got string, want integer"},
		{"an unknown TLS mode", []string{"--set", "tls.mode=vault"}, "at '/tls/mode': value must be one of 'self-signed', 'cert-manager', 'secret'"},
		{"a Vault address that is not a URL", []string{"--set", "config.vault-addr=vault.vault.svc:8200"}, "at '/config/vault-addr': 'vault.vault.svc:8200' does not match pattern"},
		{"an allowed Vault address that is not a URL", []string{"--set", "config.allowed-vault-addrs={https://ok:8200,ftp://no}"}, "at '/config/allowed-vault-addrs/1'"},
		{"an unknown config key", []string{"--set", "config.vault-adr=https://vault:8200"}, "at '/config': additional properties 'vault-adr' not allowed"},
		{"agent-image in config (it comes from agentImage)", []string{"--set", "config.agent-image=x"}, "additional properties 'agent-image' not allowed"},
		{"a token lifetime under 600s", []string{"--set", "config.token-expiration-seconds=60"}, "at '/config/token-expiration-seconds': minimum: got 60, want 600"},
		{"a resource quantity that is not one", []string{"--set", "config.agent-limits.memory=lots"}, "at '/config/agent-limits/memory'"},
		{"secret mode without its Secret and CA", []string{"--set", "tls.mode=secret"}, "at '/tls/secret/name'"},
		{"an issuer kind without its name", []string{"--set", "tls.mode=cert-manager", "--set", "tls.certManager.issuerRef.kind=ClusterIssuer"}, "at '/tls/certManager/issuerRef': properties 'name' required"},
		{"a failurePolicy Kubernetes does not know", []string{"--set", "webhook.failurePolicy=Retry"}, "at '/webhook/failurePolicy'"},
		{"a PodDisruptionBudget that blocks every drain", []string{"--set", "replicas=1"}, "podDisruptionBudget.minAvailable (1) must be less than replicas (1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helm(t, append([]string{"template", "ramvault", chartDir}, tc.args...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded:\n%.500s", tc.args, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("the error does not say %q:\n%v", tc.want, err)
			}
		})
	}
}

// TestHelmDryRun: for every values example, the apiserver accepts every
// object the chart renders in a server-side dry run and warns of nothing
// (the release's namespace enforces Pod Security "restricted"). The
// release name is new to the cluster, so every object is a create.
// cert-manager's CRDs are stand-ins (testdata/cert-manager-crds.yaml).
func TestHelmDryRun(t *testing.T) {
	c := newCluster(t)
	a := c.newApplier(t)
	a.certManagerCRDs(t)
	ns := stack.Namespace(t, c.cs, restricted)
	type dryRunCase struct {
		name, values string
		args         []string
	}
	cases := []dryRunCase{{"cert-manager with an issuer of its own", "examples/cert-manager.yaml",
		[]string{"--set", "tls.certManager.issuerRef.name=company-ca", "--set", "tls.certManager.issuerRef.kind=ClusterIssuer"}}}
	for _, ex := range chartExamples {
		cases = append(cases, dryRunCase{exampleName(ex.values), ex.values, nil})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := helmTemplate(t, "dry-"+randHex(3), ns, examplePath(tc.values), tc.args...)
			checkRBACNames(t, objs)
			a.dryRun(t, objs)
		})
	}
}

var restricted = map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}

// TestHelmReleaseInjectsUpgradesAndUninstallsCleanly installs the chart
// (dev example) with `helm install` as a release of its own in a namespace
// of its own, its webhook selecting only this test's namespace (which the
// kustomize-deployed injector skips: ramvault.io/injection=disabled). A Pod
// there is injected by it — its agent has the release's agent-requests,
// not the cluster injector's — and gets its secret file from Vault. A
// `helm upgrade` of its config rolls the webhook and keeps its
// certificates. Then `helm uninstall` leaves nothing of the release, in
// its namespace or cluster-wide.
func TestHelmReleaseInjectsUpgradesAndUninstallsCleanly(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	id := randHex(3)
	release := "helm-e2e-" + id
	relNS := stack.Namespace(t, c.cs, restricted)
	appNS := c.namespace(t, id, nil)
	kubeconfig := "--kubeconfig=" + c.env.Kubeconfig

	// The release's own values: the stack's Vault, a mark on the agent's
	// requests, and only this test's namespace.
	const markCPU = "11m"
	vals := map[string]any{
		"config": map[string]any{"vault-addr": c.env.PodVaultAddr, "agent-requests": map[string]any{"cpu": markCPU, "memory": "16Mi"}},
		"webhook": map[string]any{"namespaceSelector": map[string]any{
			"matchLabels": map[string]any{testLabel: id}, "matchExpressions": []any{}}},
	}
	b, _ := yaml.Marshal(vals)
	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(valuesFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	manifest := helmTemplate(t, release, relNS, []string{filepath.Join(chartDir, "examples/dev.yaml"), valuesFile})
	uninstalled := false
	if out, err := helm(t, "install", release, chartDir, "-n", relNS, "-f", filepath.Join(chartDir, "examples/dev.yaml"),
		"-f", valuesFile, "--wait", "--timeout=3m", kubeconfig); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, describeRelease(c, relNS))
	}
	t.Cleanup(func() {
		if !uninstalled {
			_, _ = helm(t, "uninstall", release, "-n", relNS, "--wait", kubeconfig)
		}
	})

	// Vault: a KV secret and the role of the app's service account.
	vc, err := c.env.VaultClient()
	if err != nil {
		t.Fatal(err)
	}
	secret := "helm-" + randHex(8)
	if _, err := vc.KVv2("secret").Put(ctx, "helm/"+appNS, map[string]any{"password": secret}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.KVv2("secret").DeleteMetadata(context.Background(), "helm/"+appNS) })
	role := "helm-" + appNS
	cleanup, err := c.env.AppRole(ctx, role, appNS, `path "secret/data/helm/*" { capabilities = ["read"] }`, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
			"ramvault.io/inject": "true", "ramvault.io/role": role,
			"ramvault.io/secret-kv": "secret/data/helm/" + appNS, "ramvault.io/key-kv": "password"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "app",
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsNonRoot: ptr.To(true)},
			Containers: []corev1.Container{{Name: "app", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", `echo "kvsha=$(sha256sum /var/run/secrets/ramvault/kv | cut -d' ' -f1)"; echo ready; sleep 3600`}}},
		},
	}
	// The caBundle reaches the apiserver's admission a moment after the
	// leader patched it: until then a create may fail; retry it.
	var created *corev1.Pod
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if created, err = c.cs.CoreV1().Pods(appNS).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Pod is not admitted after 60s: %v\n%s", err, describeRelease(c, relNS))
		}
	}
	agent := agentContainer(created)
	if agent == nil || created.Annotations[injector.StatusAnnotation] == "" {
		t.Fatalf("the Pod was admitted without the agent: %+v", created.Spec)
	}
	if got := agent.Resources.Requests.Cpu().String(); got != markCPU {
		t.Errorf("the agent requests cpu %s, want the release's %s: another injector injected it", got, markCPU)
	}
	stack.WaitPod(t, c.cs, appNS, "app", 90*time.Second, stack.PodRunningReady)
	var appLog string
	stack.WaitFor(t, 20*time.Second, "the app's report", func() bool {
		appLog = stack.PodLogs(t, c.cs, appNS, "app", "app")
		return strings.Contains(appLog, "ready")
	})
	sum := sha256.Sum256([]byte(secret))
	if want := "kvsha=" + hex.EncodeToString(sum[:]); !strings.Contains(appLog, want) {
		t.Errorf("the app did not read the secret from its file (%s); it printed:\n%s", want, appLog)
	}

	// The webhook's certificates are in the Secret the release owns, and an
	// upgrade that changes config rolls the webhook but keeps them.
	tlsSecret := func() map[string][]byte {
		s, err := c.cs.CoreV1().Secrets(relNS).Get(ctx, release+"-injector-tls", metav1.GetOptions{})
		if err != nil || len(s.Data["tls.crt"]) == 0 || len(s.Data["ca.crt"]) == 0 {
			t.Fatalf("the release's Secret holds no certificate: %v", err)
		}
		return s.Data
	}
	before := tlsSecret()
	const upgradedCPU = "12m"
	if out, err := helm(t, "upgrade", release, chartDir, "-n", relNS, "-f", filepath.Join(chartDir, "examples/dev.yaml"),
		"-f", valuesFile, "--set", "config.agent-requests.cpu="+upgradedCPU, "--wait", "--timeout=3m", kubeconfig); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, describeRelease(c, relNS))
	}
	waitFor(t, 60*time.Second, "the upgraded webhook to inject with the new config", func() (struct{}, bool) {
		p, err := c.cs.CoreV1().Pods(appNS).Create(ctx, appPod("probe", optIn()), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil || agentContainer(p) == nil {
			return struct{}{}, false
		}
		return struct{}{}, agentContainer(p).Resources.Requests.Cpu().String() == upgradedCPU
	})
	after := tlsSecret()
	for _, k := range []string{"ca.crt", "tls.crt"} {
		if !bytes.Equal(before[k], after[k]) {
			t.Errorf("helm upgrade changed the Secret's %s: the webhook's certificates must survive an upgrade", k)
		}
	}

	// The check below sees the release while it is installed: every object
	// of its manifest, and the webhook's Pods.
	if l := leftovers(t, c, release, relNS, manifest); len(l) < 2*len(manifest) {
		t.Fatalf("the leftover check sees only %d objects of the installed release (%d in its manifest):\n%s", len(l), len(manifest), strings.Join(l, "\n"))
	} else {
		t.Logf("installed, the leftover check sees %d objects (%d in the manifest)", len(l), len(manifest))
	}
	if out, err := helm(t, "uninstall", release, "-n", relNS, "--wait", "--timeout=2m", kubeconfig); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	uninstalled = true
	// The Pods go after the Deployment (garbage collection), the
	// EndpointSlices after the Service.
	var left []string
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		if left = leftovers(t, c, release, relNS, manifest); len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("90s after helm uninstall, the release left:\n%s", strings.Join(left, "\n"))
		}
	}
}

func agentContainer(p *corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == injector.AgentContainer || cs[i].Name == injector.AgentInitContainer {
				return &cs[i]
			}
		}
	}
	return nil
}

// leftovers lists what remains of a release: any object in its namespace
// but the ones Kubernetes puts in every namespace (ServiceAccount default,
// ConfigMap kube-root-ca.crt; the test's ServiceAccount app) and the
// Events Kubernetes records (they expire); any cluster-scoped object labelled with
// the release or named as one of its objects; and every object of its
// manifest.
func leftovers(t *testing.T, c *cluster, release, ns string, manifest []*unstructured.Unstructured) []string {
	t.Helper()
	a := c.newApplier(t)
	lists, err := c.cs.Discovery().ServerPreferredResources()
	if err != nil {
		t.Logf("discovery: %v", err) // partial results are fine
	}
	keep := map[string]bool{"ServiceAccount/default": true, "ServiceAccount/app": true, "ConfigMap/kube-root-ca.crt": true}
	names := map[string]bool{}
	for _, u := range manifest {
		names[u.GetName()] = true
	}
	var left []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if !slices.Contains(r.Verbs, "list") || r.Kind == "Event" {
				continue
			}
			ri := a.dyn.Resource(gv.WithResource(r.Name))
			var items []unstructured.Unstructured
			if r.Namespaced {
				ul, err := ri.Namespace(ns).List(context.Background(), metav1.ListOptions{})
				if err != nil {
					continue
				}
				items = ul.Items
			} else {
				ul, err := ri.List(context.Background(), metav1.ListOptions{})
				if err != nil {
					continue
				}
				for _, u := range ul.Items {
					if u.GetLabels()["app.kubernetes.io/instance"] == release || names[u.GetName()] {
						items = append(items, u)
					}
				}
			}
			for _, u := range items {
				if !keep[r.Kind+"/"+u.GetName()] {
					left = append(left, r.Kind+" "+u.GetNamespace()+"/"+u.GetName())
				}
			}
		}
	}
	for _, u := range manifest {
		gvk := u.GroupVersionKind()
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			continue
		}
		if _, err := a.dyn.Resource(m.Resource).Namespace(u.GetNamespace()).Get(context.Background(), u.GetName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, u.GetKind()+" "+u.GetNamespace()+"/"+u.GetName()+" (of the manifest)")
		}
	}
	slices.Sort(left)
	return slices.Compact(left)
}

// describeRelease is the state of a release's namespace, for a failure.
func describeRelease(c *cluster, ns string) string {
	pods, err := c.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for i := range pods.Items {
		b.WriteString(stack.DescribePod(c.cs, ns, pods.Items[i].Name, &pods.Items[i]))
	}
	return b.String()
}

// byKey indexes objects by "Kind namespace/name".
func byKey(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := map[string]*unstructured.Unstructured{}
	for _, u := range objs {
		m[u.GetKind()+" "+u.GetNamespace()+"/"+u.GetName()] = u
	}
	return m
}

// drop removes the objects of kind (and name, unless "").
func drop(objs []*unstructured.Unstructured, kind, name string) []*unstructured.Unstructured {
	return slices.DeleteFunc(objs, func(u *unstructured.Unstructured) bool {
		return u.GetKind() == kind && (name == "" || u.GetName() == name)
	})
}

// deleteKeys removes keys from every map in v, recursively, and the maps
// it leaves empty.
func deleteKeys(v any, keys []string) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range keys {
			delete(v, k)
		}
		for k, e := range v {
			deleteKeys(e, keys)
			if m, ok := e.(map[string]any); ok && len(m) == 0 && (k == "labels" || k == "matchLabels") {
				delete(v, k)
			}
		}
	case []any:
		for _, e := range v {
			deleteKeys(e, keys)
		}
	}
}

// replaceStrings replaces every string in v by f's.
func replaceStrings(v any, f func(string) string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok {
				v[k] = f(s)
			} else {
				replaceStrings(e, f)
			}
		}
	case []any:
		for i, e := range v {
			if s, ok := e.(string); ok {
				v[i] = f(s)
			} else {
				replaceStrings(e, f)
			}
		}
	}
}

// renameConfigMap strips the content hash kustomize appends to the
// ConfigMap's name, in the ConfigMap and where the Deployment mounts it.
func renameConfigMap(u *unstructured.Unstructured) {
	if u.GetKind() == "ConfigMap" {
		u.SetName(hashedConfigMap.ReplaceAllString(u.GetName(), "$1"))
	}
	if u.GetKind() == "Deployment" {
		replaceStrings(u.Object, func(s string) string { return hashedConfigMap.ReplaceAllString(s, "$1") })
	}
}

// parseConfig replaces a ConfigMap's config.yaml by its parsed value.
func parseConfig(u *unstructured.Unstructured) {
	if u.GetKind() != "ConfigMap" {
		return
	}
	s, ok, _ := unstructured.NestedString(u.Object, "data", "config.yaml")
	if !ok {
		return
	}
	var v map[string]any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return // left as a string: the comparison shows it
	}
	_ = unstructured.SetNestedField(u.Object, runtimeJSON(v), "data", "config.yaml")
}

// runtimeJSON converts v to the types unstructured holds.
func runtimeJSON(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// diffJSON is "" when a and b are equal, else the lines of their indented
// JSON that only one has ("-" a's, "+" b's).
func diffJSON(a, b map[string]any) string {
	ja, _ := json.MarshalIndent(a, "", "  ")
	jb, _ := json.MarshalIndent(b, "", "  ")
	if bytes.Equal(ja, jb) {
		return ""
	}
	la, lb := strings.Split(string(ja), "\n"), strings.Split(string(jb), "\n")
	var out []string
	for _, l := range la {
		if !slices.Contains(lb, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range lb {
		if !slices.Contains(la, l) {
			out = append(out, "+ "+l)
		}
	}
	if len(out) == 0 {
		out = append(out, "(the same lines in another order)", string(ja), string(jb))
	}
	return strings.Join(out, "\n")
}
