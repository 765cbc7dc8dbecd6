// Package lifecycle stops and starts the shared stack: it takes the stack's
// lock exclusively, so it runs after every other test binary using the stack
// has finished (or before they start; they bring the stack back up).
package lifecycle

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

// TestStackSurvivesAKilledRunAndTearsDownClean walks the life of the stack:
// a clean tear-down, a start with cached binaries (timed and printed), an
// abrupt kill that leaves mounts, netns and the bridge behind, a start that
// clears them, and a final tear-down that leaves nothing of ours.
func TestStackSurvivesAKilledRunAndTearsDownClean(t *testing.T) {
	cfg := stack.Config{Progress: t.Logf}
	stack.Exclusive(t, cfg)
	ctx := context.Background()

	if err := stack.Down(ctx, cfg); err != nil {
		t.Fatalf("first tear-down: %v", err)
	}
	assertClean(t, cfg)

	res, err := stack.Up(ctx, cfg)
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	report("up with cached binaries", res)
	runTmpfsPod(t, res.Env)

	// Kill every process of ours with SIGKILL and clean nothing: what a
	// session ended abruptly leaves behind.
	stack.KillAllForTest(cfg)
	left, err := stack.Leftovers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) == 0 {
		t.Fatal("a killed stack left nothing behind; the leftover check is blind")
	}
	t.Logf("after kill -9, left on the host: %q", left)

	res, err = stack.Up(ctx, cfg)
	if err != nil {
		t.Fatalf("up after a killed run: %v", err)
	}
	report("up over a killed run's leftovers", res)
	runTmpfsPod(t, res.Env)

	if err := stack.Down(ctx, cfg); err != nil {
		t.Fatalf("tear-down: %v", err)
	}
	assertClean(t, cfg)
}

func report(what string, res stack.Result) {
	fmt.Printf("stack %s: %.2fs\n", what, res.Total.Seconds())
	for _, tm := range res.Timings {
		fmt.Printf("  %-26s %5.2fs\n", tm.Name, tm.Took.Seconds())
	}
}

func assertClean(t *testing.T, cfg stack.Config) {
	t.Helper()
	left, err := stack.Leftovers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("left on the host after tear-down:\n%q", left)
	}
}

// runTmpfsPod runs a Pod with a Memory emptyDir, so the kubelet has tmpfs
// mounts, a network namespace and a veth on the bridge to leave behind.
func runTmpfsPod(t *testing.T, env stack.Env) {
	t.Helper()
	cs, err := stack.KubeClient(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ns := "lifecycle"
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "holder"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "main", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sleep", "3600"}, VolumeMounts: []corev1.VolumeMount{{Name: "mem", MountPath: "/mem"}}}},
			Volumes: []corev1.Volume{{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}},
		},
	}
	// The namespace's default ServiceAccount appears a moment after the
	// namespace; Pod admission needs it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	stack.WaitPod(t, cs, ns, "holder", 60*time.Second, stack.PodRunningReady)
}
