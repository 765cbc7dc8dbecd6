package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/test/stack"
)

// TestTwoReplicasOfARelease runs the chart's webhook as it ships (two
// replicas, 128Mi, failurePolicy Fail, timeout 5 s) in a Helm release of
// its own whose webhook selects only this test's namespace, and attacks it
// (issue 12): a burst of oversized reviews sent straight to both replicas
// while real Pods are admitted through the apiserver, then one replica
// force-deleted during a burst of 500 server-side dry-run creates. Each
// phase logs its figures as "replicas: …".
func TestTwoReplicasOfARelease(t *testing.T) {
	c := newCluster(t)
	if c.env.External() {
		t.Skip("reads the replicas' cgroups on the local stack's node")
	}
	r := c.installRelease(t)
	t.Run("a burst of oversized reviews neither restarts a replica nor delays real admissions past the timeout", func(t *testing.T) {
		r.oversizedBurst(t, c)
	})
	t.Run("one replica force-deleted during 500 dry-run creates fails none of them", func(t *testing.T) {
		r.replicaKilled(t, c)
	})
}

// release is a Helm release of the chart and the namespace it injects.
type release struct {
	name, ns, appNS string
	timeout         time.Duration // the webhook's timeoutSeconds
}

func (c *cluster) installRelease(t *testing.T) *release {
	t.Helper()
	id := randHex(3)
	r := &release{name: "replicas-" + id, ns: stack.Namespace(t, c.cs, restricted), appNS: c.namespace(t, id, nil)}
	vals := map[string]any{
		"config": map[string]any{"vault-addr": c.env.PodVaultAddr},
		"webhook": map[string]any{"namespaceSelector": map[string]any{
			"matchLabels": map[string]any{testLabel: id}, "matchExpressions": []any{}}},
	}
	b, _ := yaml.Marshal(vals)
	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(valuesFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := "--kubeconfig=" + c.env.Kubeconfig
	installStart := time.Now()
	if out, err := helm(t, "install", r.name, chartDir, "-n", r.ns, "-f", filepath.Join(chartDir, "examples/dev.yaml"),
		"-f", valuesFile, "--wait", "--timeout=3m", kubeconfig); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, describeRelease(c, r.ns))
	}
	t.Cleanup(func() {
		start := time.Now()
		out, err := helm(t, "uninstall", r.name, "-n", r.ns, "--wait", "--timeout=2m", kubeconfig)
		t.Logf("replicas: helm uninstall took %v (%v)\n%s", time.Since(start).Round(time.Millisecond), err, out)
	})
	t.Logf("replicas: release %s installed in %v", r.name, time.Since(installStart).Round(time.Millisecond))
	mwc, err := c.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), r.name+"-injector", metav1.GetOptions{})
	if err != nil || len(mwc.Webhooks) == 0 || mwc.Webhooks[0].TimeoutSeconds == nil {
		t.Fatalf("the release's webhook configuration: %v", err)
	}
	r.timeout = time.Duration(*mwc.Webhooks[0].TimeoutSeconds) * time.Second
	// The caBundle reaches the apiserver's admission a moment after the
	// leader wrote it.
	waitFor(t, 60*time.Second, "the release to inject the test's namespace", func() (struct{}, bool) {
		_, err := r.create(c)
		return struct{}{}, err == nil
	})
	return r
}

// create dry-runs the create of an opted-in Pod through the apiserver, and
// says whether the release injected it.
func (r *release) create(c *cluster) (time.Duration, error) {
	start := time.Now()
	p, err := c.cs.CoreV1().Pods(r.appNS).Create(context.Background(), appPod("dry-run", optIn()), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	d := time.Since(start)
	if err != nil {
		return d, err
	}
	if a := agentContainer(p); a == nil || p.Annotations[injector.StatusAnnotation] == "" {
		return d, errors.New("admitted without the agent")
	}
	return d, nil
}

// replicas are the release's webhook Pods that are Running and Ready.
func (r *release) replicas(t *testing.T, c *cluster) []corev1.Pod {
	t.Helper()
	l, err := c.cs.CoreV1().Pods(r.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + r.name})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil && stack.PodRunningReady(&p) {
			out = append(out, p)
		}
	}
	return out
}

func (r *release) waitReplicas(t *testing.T, c *cluster, n int) []corev1.Pod {
	t.Helper()
	var ps []corev1.Pod
	waitFor(t, 90*time.Second, fmt.Sprintf("%d ready replicas", n), func() (struct{}, bool) {
		ps = r.replicas(t, c)
		return struct{}{}, len(ps) == n
	})
	return ps
}

// latencies are the durations of a run of admissions, for figures.
type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// admitWhile dry-runs creates with workers until stop closes, and returns
// every latency and every error.
func (r *release) admitWhile(c *cluster, workers int, stop <-chan struct{}, onDone func(n int)) (latencies, []error) {
	var mu sync.Mutex
	var lat latencies
	var errs []error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := r.create(c)
				mu.Lock()
				lat = append(lat, d)
				if err != nil {
					errs = append(errs, err)
				}
				n := len(lat)
				mu.Unlock()
				if onDone != nil {
					onDone(n)
				}
			}
		}()
	}
	wg.Wait()
	return lat, errs
}

// oversizedBurst sends 200 oversized reviews at once, straight to the
// replicas' Pod IPs as anyone on the Pod network can (a third announcing
// 3 MiB, a third sending 3 MiB without a length, a third 1 MiB-reviews
// just under the body limit that are decoded whole), while real Pods are
// admitted through the apiserver.
func (r *release) oversizedBurst(t *testing.T, c *cluster) {
	pods := r.waitReplicas(t, c, 2)
	type target struct {
		pod, addr, cgroup string
	}
	var targets []target
	for _, p := range pods {
		port := int32(8443)
		for _, cp := range p.Spec.Containers[0].Ports {
			if cp.Name == "webhook" {
				port = cp.ContainerPort
			}
		}
		cg := memoryCgroup(t, p.Status.ContainerStatuses[0].ContainerID)
		// Reset the peak: the replica's own since the burst starts.
		if err := os.WriteFile(filepath.Join(cg, "memory.max_usage_in_bytes"), []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
		targets = append(targets, target{pod: p.Name, addr: net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port))), cgroup: cg})
	}
	big := largeReview(t, 1<<20-4<<10)
	huge := bytes.Repeat([]byte(" "), 3<<20)
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the attacker does not check whom it floods
		DisableKeepAlives: true}}
	stop := make(chan struct{})
	var lat latencies
	var errs []error
	admitted := make(chan struct{})
	go func() {
		defer close(admitted)
		lat, errs = r.admitWhile(c, 2, stop, nil)
	}()
	const burst = 200
	codes := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tg := targets[i%len(targets)]
			var body io.Reader
			kind := [...]string{"3 MiB announced", "3 MiB unannounced", "1 MiB review"}[i%3]
			switch i % 3 {
			case 0:
				body = bytes.NewReader(huge)
			case 1:
				body = io.MultiReader(bytes.NewReader(huge)) // no length: sent chunked
			case 2:
				body = bytes.NewReader(big)
			}
			req, _ := http.NewRequest(http.MethodPost, "https://"+tg.addr+"/mutate", body)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			code := "error"
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = strconv.Itoa(resp.StatusCode)
			}
			mu.Lock()
			codes[kind+" → "+code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	took := time.Since(start)
	time.Sleep(time.Second) // real admissions after the burst, too
	close(stop)
	<-admitted

	for _, tg := range targets {
		peak := readInt(t, filepath.Join(tg.cgroup, "memory.max_usage_in_bytes"))
		limit := readInt(t, filepath.Join(tg.cgroup, "memory.limit_in_bytes"))
		t.Logf("replicas: replica %s peak memory %.1f MiB of its %.0f MiB limit during the burst", tg.pod, float64(peak)/(1<<20), float64(limit)/(1<<20))
		if peak >= limit {
			t.Errorf("replica %s reached its memory limit", tg.pod)
		}
	}
	for _, tg := range targets {
		p, err := c.cs.CoreV1().Pods(r.ns).Get(context.Background(), tg.pod, metav1.GetOptions{})
		if err != nil {
			t.Errorf("replica %s after the burst: %v", tg.pod, err)
			continue
		}
		s := p.Status.ContainerStatuses[0]
		t.Logf("replicas: replica %s: %d restarts, ready %v after the burst", tg.pod, s.RestartCount, s.Ready)
		if s.RestartCount != 0 || s.LastTerminationState.Terminated != nil {
			t.Errorf("replica %s restarted (%d restarts, last %+v)", tg.pod, s.RestartCount, s.LastTerminationState.Terminated)
		}
	}
	t.Logf("replicas: %d oversized reviews in %v, answered %v", burst, took.Round(time.Millisecond), codes)
	t.Logf("replicas: %d real admissions during it: p50 %v, p99 %v, max %v (webhook timeout %v), %d failed",
		len(lat), lat.quantile(0.5).Round(time.Millisecond), lat.quantile(0.99).Round(time.Millisecond), lat.quantile(1).Round(time.Millisecond), r.timeout, len(errs))
	if len(lat) < 10 {
		t.Errorf("only %d real admissions during the burst", len(lat))
	}
	for _, err := range errs {
		t.Errorf("a real admission failed during the burst: %v", err)
	}
	if m := lat.quantile(1); m >= r.timeout {
		t.Errorf("a real admission took %v, past the webhook's timeout %v", m, r.timeout)
	}
}

// largeReview is an AdmissionReview of an opted-in Pod padded with an
// annotation to about size bytes.
func largeReview(t *testing.T, size int) []byte {
	t.Helper()
	pod := appPod("large", optIn())
	pod.Annotations["example.com/padding"] = strings.Repeat("x", size-8<<10)
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": map[string]any{
		"uid": "burst", "kind": map[string]any{"version": "v1", "kind": "Pod"}, "resource": map[string]any{"version": "v1", "resource": "pods"},
		"namespace": "burst", "operation": "CREATE", "object": json.RawMessage(raw)}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// memoryCgroup is the cgroup v1 memory directory of a container
// ("containerd://<id>") on the stack's node.
func memoryCgroup(t *testing.T, containerID string) string {
	t.Helper()
	_, id, ok := strings.Cut(containerID, "://")
	if !ok || id == "" {
		t.Fatalf("container id %q", containerID)
	}
	var found string
	_ = filepath.WalkDir("/sys/fs/cgroup/memory", func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Contains(d.Name(), id) {
			found = path
			return fs.SkipAll
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no memory cgroup of container %s under /sys/fs/cgroup/memory (cgroup v1)", id)
	}
	return found
}

func readInt(t *testing.T, file string) int64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return n
}

// replicaKilled dry-runs creates (8 at a time) through the apiserver and
// force-deletes one replica's Pod (--grace-period=0 --force) once 150 are
// done; it goes on until 500 are done and the replica's process is gone
// (its cgroup removed). Every create must be admitted and injected, but for
// those the apiserver had on connections to the killed replica.
func (r *release) replicaKilled(t *testing.T, c *cluster) {
	pods := r.waitReplicas(t, c, 2)
	victim, victimIP := pods[0].Name, pods[0].Status.PodIP
	victimCgroup := memoryCgroup(t, pods[0].Status.ContainerStatuses[0].ContainerID)
	const total, workers, killAt = 500, 8, 150
	var issued atomic.Int64
	stop := make(chan struct{})
	var once sync.Once
	var killedAt, goneAt atomic.Int64 // since start
	killed := make(chan error, 1)
	var lat latencies
	var errs []error
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		lat, errs = r.admitWhile(c, workers, stop, func(n int) {
			if n == killAt {
				go func() {
					killedAt.Store(int64(time.Since(start)))
					killed <- c.cs.CoreV1().Pods(r.ns).Delete(context.Background(), victim, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
				}()
			}
			if goneAt.Load() == 0 && killedAt.Load() != 0 {
				if _, err := os.Stat(victimCgroup); errors.Is(err, fs.ErrNotExist) {
					goneAt.Store(int64(time.Since(start)))
				}
			}
			if issued.Add(1) >= total && goneAt.Load() != 0 || time.Since(start) > 2*time.Minute {
				once.Do(func() { close(stop) })
			}
		})
	}()
	<-done
	took := time.Since(start)
	if err := <-killed; err != nil {
		t.Fatalf("force-delete %s: %v", victim, err)
	}
	t.Logf("replicas: %d dry-run creates (%d at a time) in %v, %.0f/s; replica %s force-deleted %v in, its process gone %v in; p50 %v, p99 %v, max %v; %d failed",
		len(lat), workers, took.Round(time.Millisecond), float64(len(lat))/took.Seconds(), victim,
		time.Duration(killedAt.Load()).Round(time.Millisecond), time.Duration(goneAt.Load()).Round(time.Millisecond),
		lat.quantile(0.5).Round(time.Millisecond), lat.quantile(0.99).Round(time.Millisecond), lat.quantile(1).Round(time.Millisecond), len(errs))
	if goneAt.Load() == 0 {
		t.Errorf("the force-deleted replica's process was still there after 2 minutes")
	}
	if len(lat) < total {
		t.Errorf("%d creates, want %d", len(lat), total)
	}
	// The apiserver calls webhooks over HTTP/1.1 and keeps idle connections
	// to each replica; a review it writes on one whose replica has just died
	// fails ("broken pipe", "connection reset"), and it does not retry it.
	// No webhook can answer those. At most the reviews in flight to the
	// killed replica may fail so, and nothing else may fail at all.
	var lost int
	for _, err := range errs {
		msg := err.Error()
		if strings.Contains(msg, "->"+victimIP+":") && (strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "EOF")) {
			lost++
			t.Logf("replicas: a review on a connection to the killed replica was lost: %v", err)
			continue
		}
		t.Errorf("a create failed: %v", err)
	}
	if lost > workers {
		t.Errorf("%d reviews lost on connections to the killed replica; at most the %d in flight may be", lost, workers)
	}
}
