package webhook

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
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

// TestManifestsDryRun: the apiserver accepts every object `kubectl
// kustomize manifests` renders in a server-side dry run, and warns of
// nothing (Pod Security "restricted" in the injector's namespace would warn
// of the Deployment's template).
func TestManifestsDryRun(t *testing.T) {
	c := newCluster(t)
	objs := rendered(t)
	var kinds []string
	for _, u := range objs {
		kinds = append(kinds, u.GetKind())
	}
	sort.Strings(kinds)
	want := []string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "MutatingWebhookConfiguration", "Namespace",
		"PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"}
	if !slices.Equal(kinds, want) {
		t.Errorf("rendered kinds %v, want %v", kinds, want)
	}

	rc, err := clientcmd.BuildConfigFromFlags("", c.env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	warn := &warnings{}
	rc.WarningHandler = warn
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.cs.Discovery()))
	ctx := context.Background()

	// The namespaced objects need their namespace: create it from the
	// manifest (for real) unless it exists, and remove it after.
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			c.ensureNamespace(t, u)
		}
	}
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s: %v", gvk, err)
			continue
		}
		ri := dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "ramvault-manifests-test", Force: true}); err != nil {
			t.Errorf("%s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	if len(warn.msgs) > 0 {
		t.Errorf("the apiserver warned: %q", warn.msgs)
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
