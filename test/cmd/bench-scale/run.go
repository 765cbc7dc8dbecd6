package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

// result is one side's run at one N.
type result struct {
	side string
	n    int

	ready     []time.Duration // per Pod: first seen → Ready
	memUsage  int64           // agent containers' memory.usage_in_bytes, summed, at the window's end
	memRSS    int64           // their total_rss
	cpu       float64         // agent CPU-seconds over the window
	restarts  int32           // agent container restarts, at the window's end
	nodeBase  int64           // node memory used before the Deployment
	nodeUsed  int64           // … at the window's end
	admission histogram       // the webhook's admission latency for this run's Pods
	vault     *tally

	created, windowStart, windowEnd, gone time.Time
}

// podHours is the Pods' time from creation to the window's end.
func (r *result) podHours() float64 {
	return float64(r.n) * r.windowEnd.Sub(r.created).Hours()
}

const deployment = "bench-scale"

// runOne creates the side's Deployment of n Pods, waits until all are Ready
// (checking each was injected), holds the window, deletes it and reads the
// audit log.
func runOne(ctx context.Context, cs kubernetes.Interface, env stack.Env, vc *vault.Client, o options, s side, n int, annotations map[string]string) (*result, error) {
	r := &result{side: s.name, n: n}
	var err error
	if r.nodeBase, err = nodeMemoryUsed(); err != nil {
		return nil, err
	}
	before, err := apiserverHistogram(ctx, cs, s.hook)
	if err != nil {
		return nil, err
	}
	// One audit device per run, into the stack's state directory.
	dir := filepath.Join(env.StateDir, "bench-scale")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	auditPath := filepath.Join(dir, fmt.Sprintf("audit-%s-%d.log", s.name, n))
	_ = os.Remove(auditPath)
	device := fmt.Sprintf("bench-scale-%s-%d", s.name, n)
	if err := vc.Sys().EnableAuditWithOptionsWithContext(ctx, device, &vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditPath}}); err != nil {
		return nil, fmt.Errorf("enable Vault's file audit device: %w", err)
	}
	auditOn := true
	disableAudit := func() {
		if auditOn {
			_ = vc.Sys().DisableAuditWithContext(context.Background(), device)
			auditOn = false
		}
	}
	defer disableAudit()
	defer os.Remove(auditPath) // it holds HMACs of tokens, not values; still, nothing is left behind

	w, err := cs.CoreV1().Pods(s.ns).Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + deployment})
	if err != nil {
		return nil, err
	}
	r.created = time.Now()
	if _, err := cs.AppsV1().Deployments(s.ns).Create(ctx, benchDeployment(n, annotations), metav1.CreateOptions{}); err != nil {
		w.Stop()
		return nil, fmt.Errorf("create the Deployment: %w", err)
	}
	defer deleteDeployment(cs, s.ns)
	if r.ready, err = waitReady(ctx, cs, w, s, n, o.timeout); err != nil {
		return nil, err
	}
	after, err := apiserverHistogram(ctx, cs, s.hook)
	if err != nil {
		return nil, err
	}
	r.admission = after.sub(before)

	r.windowStart = time.Now()
	cpu0, err := agentCPU(ctx, cs, s)
	if err != nil {
		return nil, err
	}
	if err := hold(ctx, cs, s, n, o.window); err != nil {
		return nil, err
	}
	r.windowEnd = time.Now()
	cpu1, err := agentCPU(ctx, cs, s)
	if err != nil {
		return nil, err
	}
	for id, c := range cpu1 {
		r.cpu += float64(c-cpu0[id]) / 1e9 // a container started in the window counts from 0
	}
	if r.memUsage, r.memRSS, r.restarts, err = agentMemory(ctx, cs, s); err != nil {
		return nil, err
	}
	if r.nodeUsed, err = nodeMemoryUsed(); err != nil {
		return nil, err
	}

	if err := deleteDeployment(cs, s.ns); err != nil {
		return nil, err
	}
	r.gone = time.Now()
	disableAudit()
	f, err := os.Open(auditPath)
	if err != nil {
		return nil, fmt.Errorf("the audit log: %w", err)
	}
	defer f.Close()
	if r.vault, err = readAudit(f, s.ns, r.windowStart, r.windowEnd); err != nil {
		return nil, err
	}
	return r, nil
}

// benchDeployment is the same Pod for both sides but its annotations: a
// busybox app that exits at once on SIGTERM, as user 1000.
func benchDeployment(n int, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": deployment}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: deployment},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(n)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					ServiceAccountName: "app",
					SecurityContext:    &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](1000)},
					Containers: []corev1.Container{{Name: "app", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
						Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"}}},
				},
			},
		},
	}
}

// waitReady follows the Pods' events until n are Ready: for each Pod, the
// time from its first event (its creation, as the watch reports it) to its
// Ready condition. A Pod without the side's agent is an error: vault-k8s's
// webhook fails open.
func waitReady(ctx context.Context, cs kubernetes.Interface, w watch.Interface, s side, n int, timeout time.Duration) ([]time.Duration, error) {
	defer func() { w.Stop() }()
	seen := map[string]time.Time{}
	ready := map[string]time.Duration{}
	deadline := time.After(timeout)
	for len(ready) < n {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			return nil, fmt.Errorf("%d of %d Pods Ready after %s:\n%s", len(ready), n, timeout, describeNotReady(ctx, cs, s.ns))
		case ev, ok := <-w.ResultChan():
			if !ok { // the watch ended: start another from now
				var err error
				if w, err = cs.CoreV1().Pods(s.ns).Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + deployment}); err != nil {
					return nil, err
				}
				continue
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted {
				continue
			}
			now := time.Now()
			if _, ok := seen[p.Name]; !ok {
				seen[p.Name] = now
				if by := injectedBy(p); by != s.name {
					return nil, fmt.Errorf("pod %s was not injected by %s (agent of %q): is its injector serving namespace %s?", p.Name, s.name, by, s.ns)
				}
			}
			if _, done := ready[p.Name]; !done && stack.PodRunningReady(p) {
				ready[p.Name] = now.Sub(seen[p.Name])
			}
		}
	}
	out := make([]time.Duration, 0, len(ready))
	for _, d := range ready {
		out = append(out, d)
	}
	return out, nil
}

func describeNotReady(ctx context.Context, cs kubernetes.Interface, ns string) string {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	shown := 0
	for i := range pods.Items {
		if !stack.PodRunningReady(&pods.Items[i]) && shown < 3 {
			b.WriteString(stack.DescribePod(cs, ns, pods.Items[i].Name, &pods.Items[i]))
			shown++
		}
	}
	return b.String()
}

// hold waits out the window, printing every 30 s how many Pods are Ready,
// the agents' restarts and the load average, so a run on a struggling node
// shows it.
func hold(ctx context.Context, cs kubernetes.Interface, s side, n int, window time.Duration) error {
	end := time.Now().Add(window)
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(left):
			return nil
		case <-t.C:
			pods, err := cs.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + deployment})
			if err != nil {
				return err
			}
			ready, restarts := 0, int32(0)
			for i := range pods.Items {
				if stack.PodRunningReady(&pods.Items[i]) {
					ready++
				}
				for _, c := range agentStatuses(&pods.Items[i], s) {
					restarts += c.RestartCount
				}
			}
			fmt.Fprintf(os.Stderr, "bench-scale:   %s left: %d/%d Ready, %d agent restarts, load %.2f\n", time.Until(end).Round(time.Second), ready, n, restarts, loadAverage())
		}
	}
}

// agentStatuses are the statuses of the side's agent containers in p.
func agentStatuses(p *corev1.Pod, s side) []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	for _, c := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if slices.Contains(s.agents, c.Name) {
			out = append(out, c)
		}
	}
	return out
}

// runningAgents are the container IDs of the side's running agents.
func runningAgents(ctx context.Context, cs kubernetes.Interface, s side) ([]string, int32, error) {
	pods, err := cs.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + deployment})
	if err != nil {
		return nil, 0, err
	}
	var ids []string
	var restarts int32
	for i := range pods.Items {
		for _, c := range agentStatuses(&pods.Items[i], s) {
			restarts += c.RestartCount
			if c.State.Running != nil && c.ContainerID != "" {
				_, id, _ := strings.Cut(c.ContainerID, "://")
				ids = append(ids, id)
			}
		}
	}
	return ids, restarts, nil
}

func agentCPU(ctx context.Context, cs kubernetes.Interface, s side) (map[string]int64, error) {
	ids, _, err := runningAgents(ctx, cs, s)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, id := range ids {
		if out[id], err = containerCPU(id); err != nil {
			return nil, fmt.Errorf("agent CPU (cgroup v1 cpuacct of container %s): %w", id, err)
		}
	}
	return out, nil
}

func agentMemory(ctx context.Context, cs kubernetes.Interface, s side) (usage, rss int64, restarts int32, err error) {
	ids, restarts, err := runningAgents(ctx, cs, s)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, id := range ids {
		u, r, err := containerMemory(id)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("agent memory (cgroup v1 memory of container %s): %w", id, err)
		}
		usage, rss = usage+u, rss+r
	}
	return usage, rss, restarts, nil
}

// deleteDeployment deletes the Deployment and waits until its Pods are gone
// (each agent's shutdown included).
func deleteDeployment(cs kubernetes.Interface, ns string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_ = cs.AppsV1().Deployments(ns).Delete(ctx, deployment, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + deployment})
		return err == nil && len(pods.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("the Pods of %s/%s are not gone: %w", ns, deployment, err)
	}
	return nil
}

// apiserverHistogram reads the admission histogram of webhook from the
// apiserver's /metrics.
func apiserverHistogram(ctx context.Context, cs kubernetes.Interface, webhook string) (histogram, error) {
	b, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return histogram{}, fmt.Errorf("the apiserver's /metrics: %w", err)
	}
	return admissionHistogram(bytes.NewReader(b), webhook)
}
