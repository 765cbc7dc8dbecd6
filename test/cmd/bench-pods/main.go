// Command bench-pods measures, on the running local stack, how long a Pod
// takes from create to Ready with and without ramvault injected (one KV
// secret, native sidecar, injected by the in-cluster webhook, agent image
// from the Dockerfile): the median over N Pods each, in the same run; and
// ramvault's own share over an empty busybox container in the agent's
// place (native and init-only), against the ≤ 50 ms goal.
//
//	make bench-pods
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

func main() {
	n := flag.Int("pods", 10, "Pods per variant")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "bench-pods:", err)
		os.Exit(1)
	}
}

const ns, role = "bench-pods", "bench-pods"

func run(n int) error {
	ctx := context.Background()
	env, cs, vc, err := stack.Clients()
	if err != nil {
		return err
	}
	if _, err := vc.KVv2("secret").Put(ctx, "bench/pods", map[string]any{"password": "bench"}); err != nil {
		return err
	}
	if _, err := env.AppRole(ctx, role, ns, `path "secret/data/bench/*" { capabilities = ["read"] }`, nil); err != nil {
		return err
	}
	if err := stack.AppNamespace(ctx, cs, ns); err != nil {
		return err
	}
	// The variants: no ramvault; then the two shapes of ramvault's injection
	// (native is the default; init-only has no startup probe), each beside
	// the same shape without ramvault — a busybox init container that exits
	// at once, a busybox native sidecar without a probe — which is what the
	// kubelet alone charges for one more container ahead of the app.
	variants := []struct{ name, mode string }{
		{"without ramvault", ""},
		{"with ramvault (native)", "native"},
		{"with ramvault (init-only)", "init-only"},
		{"busybox native sidecar", "busybox-sidecar"},
		{"busybox init container", "busybox-init"},
	}
	measure := func(name, mode string) (time.Duration, error) {
		inject := mode == "native" || mode == "init-only"
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PodSpec{
				ServiceAccountName:            "app",
				TerminationGracePeriodSeconds: ptr.To[int64](0),
				SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsNonRoot: ptr.To(true)},
				Containers: []corev1.Container{{Name: "app", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
					Command: []string{"sleep", "3600"}}},
			},
		}
		switch mode {
		case "busybox-init":
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"true"}}}
		case "busybox-sidecar":
			p.Spec.InitContainers = []corev1.Container{{Name: "sidecar", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sleep", "3600"}, RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
		}
		if inject {
			p.Annotations = map[string]string{"ramvault.io/inject": "true", "ramvault.io/role": role, "ramvault.io/secret-kv": "secret/data/bench/pods", "ramvault.io/mode": mode}
		}
		start := time.Now()
		created, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return 0, err
		}
		if inject && len(created.Spec.InitContainers) == 0 {
			return 0, fmt.Errorf("pod %s was not injected: is ramvault deployed (make dev-up)?", name)
		}
		err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			return err == nil && stack.PodRunningReady(got), nil
		})
		took := time.Since(start)
		_ = cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		return took, err
	}
	results := make([][]time.Duration, len(variants))
	for i := 0; i < n+1; i++ { // alternate; the first round warms up
		for k, v := range variants {
			d, err := measure(fmt.Sprintf("p-%d-%d", k, i), v.mode)
			if err != nil {
				return err
			}
			if i > 0 {
				results[k] = append(results[k], d)
			}
		}
	}
	med := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	plain := med(results[0])
	fmt.Printf("\nPod create → Ready, median of %d Pods each (busybox; injected by the in-cluster webhook: one KV secret)\n\n", n)
	fmt.Printf("| %-26s | %10s | %10s |\n|%s|%s|%s|\n", "variant", "median", "overhead", strings.Repeat("-", 28), strings.Repeat("-", 12), strings.Repeat("-", 12))
	for k, v := range variants {
		m := med(results[k])
		fmt.Printf("| %-26s | %8.0fms | %8.0fms |\n", v.name, ms(m), ms(m-plain))
	}
	// The kubelet's 1 s relist charges any container placed ahead of the
	// app, busybox included (the retired ≤ 300 ms goal measured that);
	// ramvault's own share is what it adds over an empty container in the
	// same place.
	verdict := func(share time.Duration) string {
		if share <= 50*time.Millisecond {
			return "met"
		}
		return "not met"
	}
	native, initOnly := med(results[1])-med(results[3]), med(results[2])-med(results[4])
	fmt.Printf("\nramvault's own share over an empty container in the same place, median of %d (goal ≤ 50 ms):\n", n)
	fmt.Printf("- native: %.0f ms over the busybox native sidecar: %s\n", ms(native), verdict(native))
	fmt.Printf("- init-only: %.0f ms over the busybox init container: %s\n", ms(initOnly), verdict(initOnly))
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
