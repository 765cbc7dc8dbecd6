package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

// nginx as a stock image runs it (Debian's package, the image's own CMD, no
// command in the Pod spec) serving a certificate from the secrets volume,
// with reload signal:SIGHUP and no signal-process: the injector cannot know
// the process's name and has the agent signal the main process of the
// container that mounts the secrets (--signal-mount-path). At the re-issue
// nginx is reloaded — it logs the SIGHUP, its master keeps its PID, new
// workers start — and serves the new certificate.
func TestStockNginxWithNoCommandIsReloadedBySignal(t *testing.T) {
	w := newWorld(t, `path "pki-*" { capabilities = ["update"] }`)
	if w.env.External() {
		t.Skip("imports an image into the stack's containerd and reads the node's /proc: on the local stack only")
	}
	if err := stack.ImportNginxImage(context.Background(), w.env); err != nil {
		t.Fatal(err)
	}
	mount, ca := w.pkiMount()
	issue := fmt.Sprintf(`%q "common_name=web.e2e.test" "ttl=20s"`, mount+"/issue/web")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nginx", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/mount-path": "/etc/nginx/tls",
		"ramvault.io/template-server.pem": `{{ with secret ` + issue + ` }}{{ .Data.certificate }}
{{ .Data.private_key }}{{ end }}`,
		"ramvault.io/reload": "signal:SIGHUP"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "app",
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](101), RunAsNonRoot: ptr.To(true)},
			Containers: []corev1.Container{{Name: "nginx", Image: stack.NginxImage, ImagePullPolicy: corev1.PullNever,
				Ports: []corev1.ContainerPort{{ContainerPort: 8443}}}},
		}}
	created := w.create(pod)
	if c := created.Spec.Containers[0]; len(c.Command) != 0 || len(c.Args) != 0 {
		t.Fatalf("the injector gave nginx a command: %q %q", c.Command, c.Args)
	}
	if !agentHasArg(created.Spec, "--signal-mount-path=/etc/nginx/tls") {
		t.Fatalf("the agent is not told to signal the container that mounts /etc/nginx/tls")
	}
	p := stack.WaitPod(t, w.cs, w.ns, "nginx", 90*time.Second, stack.PodRunningReady)

	var first string
	stack.WaitFor(t, 30*time.Second, "nginx serving the first certificate", func() bool {
		c, err := served(t, p.Status.PodIP, ca)
		first = serialOf(c)
		return err == nil
	})
	master, workers := nginxProcesses(t, string(p.UID))
	var second string
	stack.WaitFor(t, 40*time.Second, "nginx serving a new certificate", func() bool {
		c, err := served(t, p.Status.PodIP, ca)
		second = serialOf(c)
		return err == nil && second != first
	})
	master2, workers2 := nginxProcesses(t, string(p.UID))
	if master2 != master {
		t.Errorf("nginx's master was %d and is %d: restarted, not reloaded", master, master2)
	}
	if workers2 == workers {
		t.Errorf("nginx's workers are still %s: no reload", workers)
	}
	log := w.logs("nginx", "nginx")
	if !strings.Contains(log, "signal 1 (SIGHUP) received") {
		t.Errorf("nginx logged no SIGHUP:\n%s", log)
	}
	t.Logf("certificate %s, then %s; master %d kept; workers %s, then %s", first, second, master, workers, workers2)
	for _, c := range []string{"nginx", "ramvault-agent"} {
		if l := w.logs("nginx", c); strings.Contains(l, "PRIVATE KEY") {
			t.Errorf("container %s logged a private key", c)
		}
	}
}

// agentHasArg says whether the agent container of a Pod spec has arg.
func agentHasArg(spec corev1.PodSpec, arg string) bool {
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		for _, a := range append(c.Command, c.Args...) {
			if a == arg {
				return true
			}
		}
	}
	return false
}

// nginxProcesses finds a Pod's nginx processes on this host (by the Pod UID
// in their mount table): the master (whose parent is not nginx) and the
// workers' PIDs.
func nginxProcesses(t *testing.T, podUID string) (master int, workers string) {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var ws []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		if comm(dir) != "nginx" {
			continue
		}
		if mi, _ := os.ReadFile(filepath.Join(dir, "mountinfo")); !strings.Contains(string(mi), podUID) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join(dir, "stat"))
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 2 {
			continue
		}
		if comm(filepath.Join("/proc", f[1])) == "nginx" {
			ws = append(ws, e.Name())
		} else {
			master = pid
		}
	}
	if master == 0 || len(ws) == 0 {
		t.Fatalf("no nginx master and workers of pod %s on this host (workers %v)", podUID, ws)
	}
	return master, strings.Join(ws, ",")
}

func comm(procDir string) string {
	b, _ := os.ReadFile(filepath.Join(procDir, "comm"))
	return strings.TrimSpace(string(b))
}
