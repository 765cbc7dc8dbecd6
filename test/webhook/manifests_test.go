package webhook

import (
	"bytes"
	"context"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ramvault/ramvault/test/stack"
)

// warnings collects the apiserver's warnings (Pod Security's, deprecations).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

// reset returns the warnings so far and forgets them.
func (w *warnings) reset() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// overlays are the kustomizations users apply, and the kinds each renders.
var overlays = map[string][]string{
	"manifests":                              baseKinds,
	"manifests/overlays/self-signed":         baseKinds,
	"manifests/overlays/kind":                baseKinds,
	"manifests/overlays/dev":                 baseKinds,
	"manifests/overlays/vault-k8s-migration": baseKinds,
	"manifests/overlays/cert-manager":        {"Certificate", "Certificate", "ConfigMap", "Deployment", "Issuer", "Issuer", "MutatingWebhookConfiguration", "Namespace", "PodDisruptionBudget", "Service", "ServiceAccount", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"},
}

var baseKinds = []string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "MutatingWebhookConfiguration", "Namespace",
	"PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}

// TestManifestsDryRun: for the base and every overlay, the apiserver
// accepts every object `kubectl kustomize` renders in a server-side dry run
// and warns of nothing (Pod Security "restricted" in the injector's
// namespace would warn of the Deployment's template); and the RBAC
// resourceNames are the names the Deployment's flags use. cert-manager's
// CRDs are stand-ins (testdata/cert-manager-crds.yaml).
func TestManifestsDryRun(t *testing.T) {
	c := newCluster(t)
	a := c.newApplier(t)
	a.certManagerCRDs(t)

	for _, dir := range slices.Sorted(maps.Keys(overlays)) {
		t.Run(strings.ReplaceAll(dir, "/", "_"), func(t *testing.T) {
			objs := renderDir(t, dir)
			var kinds []string
			for _, u := range objs {
				kinds = append(kinds, u.GetKind())
			}
			sort.Strings(kinds)
			if !slices.Equal(kinds, overlays[dir]) {
				t.Errorf("rendered kinds %v, want %v", kinds, overlays[dir])
			}
			checkRBACNames(t, objs)
			// The namespaced objects need their namespace: create it from
			// the manifest (for real) unless it exists, and remove it after.
			for _, u := range objs {
				if u.GetKind() == "Namespace" {
					c.ensureNamespace(t, u)
				}
			}
			a.dryRun(t, objs)
		})
	}
}

// applier server-side applies objects through the dynamic client, and
// collects the apiserver's warnings.
type applier struct {
	dyn    *dynamic.DynamicClient
	mapper *restmapper.DeferredDiscoveryRESTMapper
	warn   *warnings
}

func (c *cluster) newApplier(t *testing.T) *applier {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", c.env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	a := &applier{warn: &warnings{}}
	rc.WarningHandler = a.warn
	if a.dyn, err = dynamic.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	a.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.cs.Discovery()))
	return a
}

func (a *applier) apply(u *unstructured.Unstructured, opts metav1.ApplyOptions) error {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	opts.FieldManager, opts.Force = "ramvault-manifests-test", true
	_, err = a.dyn.Resource(m.Resource).Namespace(u.GetNamespace()).Apply(context.Background(), u.GetName(), u, opts)
	return err
}

// dryRun has the apiserver accept every object in a server-side dry run,
// without a warning.
func (a *applier) dryRun(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	a.warn.reset()
	for _, u := range objs {
		if err := a.apply(u, metav1.ApplyOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("%s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	if msgs := a.warn.reset(); len(msgs) > 0 {
		t.Errorf("the apiserver warned: %q", msgs)
	}
}

// certManagerCRDs creates the stand-ins of cert-manager's CRDs
// (testdata/cert-manager-crds.yaml) until the test ends, and waits until
// their kinds are served.
func (a *applier) certManagerCRDs(t *testing.T) {
	t.Helper()
	crds, err := os.ReadFile("testdata/cert-manager-crds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := stack.DecodeObjects(bytes.NewReader(crds))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if err := a.apply(u, metav1.ApplyOptions{}); err != nil {
			t.Fatalf("stand-in CRD %s: %v", u.GetName(), err)
		}
		t.Cleanup(func() {
			_ = a.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).Delete(context.Background(), u.GetName(), metav1.DeleteOptions{})
		})
	}
	waitFor(t, 30*time.Second, "the cert-manager.io kinds to be served", func() (struct{}, bool) {
		a.mapper.Reset()
		_, err1 := a.mapper.RESTMapping(schema.GroupKind{Group: "cert-manager.io", Kind: "Certificate"}, "v1")
		_, err2 := a.mapper.RESTMapping(schema.GroupKind{Group: "cert-manager.io", Kind: "Issuer"}, "v1")
		return struct{}{}, err1 == nil && err2 == nil
	})
}

// checkRBACNames: every name the Deployment's flags give the injector (its
// Secret, Lease, webhook configuration) is in the resourceNames of a rule
// of the rendered Roles — kustomize rewrites resourceNames that match a
// generated ConfigMap's name, which once broke this.
func checkRBACNames(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	var args []string
	names := map[string]bool{}
	for _, u := range objs {
		switch u.GetKind() {
		case "Deployment":
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			for _, c := range cs {
				a, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
				args = append(args, a...)
			}
		case "Role", "ClusterRole":
			rules, _, _ := unstructured.NestedSlice(u.Object, "rules")
			for _, r := range rules {
				rn, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resourceNames")
				for _, n := range rn {
					names[n] = true
				}
			}
		}
	}
	for _, a := range args {
		for _, flag := range []string{"--secret-name=", "--lease-name=", "--webhook-config-name="} {
			if v, ok := strings.CutPrefix(a, flag); ok && !names[v] {
				t.Errorf("the Deployment uses %s%s, but no Role grants resourceNames %q (have %v)", flag, v, v, slices.Sorted(maps.Keys(names)))
			}
		}
	}
}

// ensureNamespace creates the manifest's namespace unless it exists, and
// deletes it (waiting until it is gone) when the test ends.
func (c *cluster) ensureNamespace(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	_, err := c.cs.CoreV1().Namespaces().Get(ctx, u.GetName(), metav1.GetOptions{})
	if err == nil {
		return // deployed here: leave it alone
	}
	if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	var ns corev1.Namespace
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ns); err != nil {
		t.Fatal(err)
	}
	if _, err := c.cs.CoreV1().Namespaces().Create(ctx, &ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", u.GetName(), err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := c.cs.CoreV1().Namespaces().Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", u.GetName(), err)
			return
		}
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := c.cs.CoreV1().Namespaces().Get(ctx, u.GetName(), metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Errorf("namespace %s not gone after 60s", u.GetName())
		}
	})
}
