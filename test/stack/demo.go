package stack

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// Demo runs a Pod with a Memory emptyDir in namespace ramvault-demo on the
// running stack and prints what the Pod sees of it.
func Demo(ctx context.Context, out io.Writer) error {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		return err
	}
	env, err := ReadEnv(filepath.Join(cfg.Dir, "env"))
	if err != nil {
		return fmt.Errorf("stack is not up (run `make dev-up`): %w", err)
	}
	cs, err := KubeClient(env.Kubeconfig)
	if err != nil {
		return err
	}
	const ns, name = "ramvault-demo", "tmpfs-demo"
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	_ = cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			RestartPolicy:                corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "main", Image: BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command:      []string{"sh", "-c", "echo demo > /secrets/example && stat -f -c 'filesystem of /secrets: %T' /secrets && grep ' /secrets ' /proc/mounts && ls -l /secrets"},
				VolumeMounts: []corev1.VolumeMount{{Name: "secrets", MountPath: "/secrets"}}}},
			Volumes: []corev1.Volume{{Name: "secrets", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}},
		},
	}
	fmt.Fprintf(out, "demo: creating Pod %s/%s with a Memory emptyDir at /secrets\n", ns, name)
	// The namespace's default ServiceAccount appears a moment after it.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("create pod: %w", err)
	}
	var p *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err = cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed), nil
	})
	if err != nil {
		return fmt.Errorf("pod did not finish: %w\n%s", err, DescribePod(cs, ns, name, p))
	}
	logs, err := cs.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "demo: the Pod ran on node %s (%s) and printed:\n", p.Spec.NodeName, p.Status.Phase)
	for _, l := range strings.Split(strings.TrimSpace(string(logs)), "\n") {
		fmt.Fprintf(out, "  | %s\n", l)
	}
	fmt.Fprintf(out, `demo: the stack keeps running. Look around:
  source .dev/env && bin/kubectl get pods -A
  bin/vault status          # VAULT_ADDR/VAULT_TOKEN come from .dev/env
Stop it with: make dev-down
`)
	return nil
}
