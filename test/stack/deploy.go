package stack

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// The in-cluster injector as the dev overlay deploys it.
const (
	InjectorNamespace  = "ramvault-system"
	InjectorDeployment = "ramvault-injector"
	InjectorWebhook    = "ramvault-injector"
	DevOverlay         = "manifests/overlays/dev"
	// ImagesAnnotation on the injector's Pod template holds the digests of
	// the images last imported, so a rebuilt image rolls the Deployment and
	// an unchanged one does not.
	ImagesAnnotation = "ramvault.dev/images"
)

// Images are the archives `make image` writes under bin/images/ that the
// stack imports; the example app's is optional.
var productImages = []struct {
	file     string
	required bool
}{{"ramvault.tar", true}, {"ramvault-agent.tar", true}, {"ramvault-example-app.tar", false}}

// Deploy imports this checkout's images (bin/images, from `make image`) into
// the stack's containerd and applies the dev overlay of manifests/, then
// waits until the in-cluster webhook injects an opted-in Pod (a server-side
// dry run). It is idempotent: with the same images and manifests nothing
// restarts.
func Deploy(ctx context.Context, env Env) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	var digests []string
	for _, im := range productImages {
		f := filepath.Join(root, "bin", "images", im.file)
		if _, err := os.Stat(f); err != nil {
			if im.required {
				return fmt.Errorf("no %s: run `make image` (it builds the Dockerfile's targets into bin/images/)", f)
			}
			continue
		}
		d, err := archiveDigest(f)
		if err != nil {
			return err
		}
		if err := ImportImageArchive(ctx, env, f); err != nil {
			return err
		}
		digests = append(digests, strings.TrimSuffix(im.file, ".tar")+"="+d)
	}
	objs, err := renderKustomize(ctx, root, DevOverlay)
	if err != nil {
		return err
	}
	for _, u := range objs {
		if u.GetKind() == "Deployment" && u.GetName() == InjectorDeployment {
			if err := unstructured.SetNestedField(u.Object, strings.Join(digests, ","), "spec", "template", "metadata", "annotations", ImagesAnnotation); err != nil {
				return err
			}
		}
	}
	if err := applyAll(ctx, env.Kubeconfig, objs); err != nil {
		return err
	}
	cs, err := KubeClient(env.Kubeconfig)
	if err != nil {
		return err
	}
	return WaitInjector(ctx, cs)
}

// WaitInjector waits until every injector replica is ready with the current
// template and the webhook injects an opted-in Pod.
func WaitInjector(ctx context.Context, cs kubernetes.Interface) error {
	if err := waitInjectorRollout(ctx, cs, 120*time.Second); err != nil {
		return err
	}
	return waitInjecting(ctx, cs, 60*time.Second)
}

// archiveDigest is the digest of the image manifest in an OCI archive's
// index.json: the same image gives the same digest, whatever the tar's times.
func archiveDigest(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%s: no index.json (not an OCI archive?)", file)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", file, err)
		}
		if h.Name != "index.json" {
			continue
		}
		var idx struct {
			Manifests []struct {
				Digest string `json:"digest"`
			} `json:"manifests"`
		}
		if err := json.NewDecoder(tr).Decode(&idx); err != nil || len(idx.Manifests) == 0 {
			return "", fmt.Errorf("%s: unreadable index.json: %v", file, err)
		}
		return strings.TrimPrefix(idx.Manifests[0].Digest, "sha256:")[:16], nil
	}
}

// renderKustomize is `bin/kubectl kustomize <dir>`, one object per document.
func renderKustomize(ctx context.Context, root, dir string) ([]*unstructured.Unstructured, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "kubectl"), "kustomize", filepath.Join(root, dir))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %w\n%s", dir, err, stderr.String())
	}
	return DecodeObjects(&stdout)
}

// DecodeObjects reads a multi-document YAML or JSON stream.
func DecodeObjects(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var objs []*unstructured.Unstructured
	for {
		var u unstructured.Unstructured
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, &u)
		}
	}
}

// applyAll server-side applies objs in order (the namespace comes first in a
// kustomize rendering).
func applyAll(ctx context.Context, kubeconfig string, objs []*unstructured.Unstructured) error {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", gvk, err)
		}
		ri := dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "ramvault-devstack", Force: true}); err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	return nil
}

// waitInjectorRollout waits until every replica of the injector runs the
// current template and is ready.
func waitInjectorRollout(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	var last *appsv1.Deployment
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(InjectorNamespace).Get(ctx, InjectorDeployment, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = d
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		st := d.Status
		return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.ReadyReplicas == want &&
			st.AvailableReplicas == want && st.Replicas == want, nil
	})
	if err != nil {
		msg := "no Deployment"
		if last != nil {
			msg = fmt.Sprintf("%+v", last.Status)
		}
		return fmt.Errorf("injector rollout: %w; status %s; pods:\n%s", err, msg, describeInjectorPods(cs))
	}
	return nil
}

func describeInjectorPods(cs kubernetes.Interface) string {
	pods, err := cs.CoreV1().Pods(InjectorNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for i := range pods.Items {
		b.WriteString(DescribePod(cs, InjectorNamespace, pods.Items[i].Name, &pods.Items[i]))
	}
	return b.String()
}

// waitInjecting dry-runs the create of an opted-in Pod until the answer is
// injected: the apiserver reaches the webhook through its Service and trusts
// the caBundle the injector wrote.
func waitInjecting(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	const ns = "default"
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ramvault-devstack-check", Annotations: map[string]string{
			"ramvault.io/inject": "true", "ramvault.io/role": "check", "ramvault.io/secret-check": "secret/data/check"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: BusyboxImage, Command: []string{"true"},
			SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000)}}}},
	}
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		out, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			lastErr = err
			return false, nil
		}
		for _, c := range append(out.Spec.InitContainers, out.Spec.Containers...) {
			if c.Name == "ramvault-agent" {
				return true, nil
			}
		}
		lastErr = errors.New("the Pod was admitted without the agent")
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("the in-cluster webhook does not inject: %v (%w)\n%s", lastErr, err, describeInjectorPods(cs))
	}
	return nil
}
