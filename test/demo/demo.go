// Package demo is `make demo`: on the running local stack, an app Pod that
// opts in with annotations gets a KV secret and short-lived PostgreSQL
// credentials from Vault as files on tmpfs, sees them rotate and is reloaded
// by signal — shown in the terminal with every value masked.
package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/test/stack"
)

const (
	ns   = "ramvault-demo"
	role = "ramvault-demo"
	pod  = "demo-app"
)

// appScript is the demo app: it shows its secrets directory (names, fstype,
// modes; values masked) and counts SIGHUP reloads, printing the (masked)
// database user it now holds.
const appScript = `D=/var/run/secrets/ramvault
mask() { sed -e 's/"password": *"[^"]*"/"password": "****"/' -e 's/"username": *"[^"]*\([^"]\{10\}\)"/"username": "…\1"/'; }
echo "secrets directory $D is on $(stat -f -c %T $D)"
ls -ln $D | sed 1d | awk '{print "  " $1, "uid=" $3, $NF}'
echo "db: $(tr -d '\n' < $D/db | mask)"
n=0
trap 'n=$((n+1)); echo "reload #$n (SIGHUP): db now $(tr -d "\n" < $D/db | mask)"' HUP
while true; do sleep 1 & wait $!; done`

// Run sets up Vault for the demo namespace, creates the app Pod (injected by
// the same function as the webhook and `ramvault inject`) and narrates.
func Run(ctx context.Context, out io.Writer) error {
	env, err := stack.Running()
	if err != nil {
		return err
	}
	say := func(f string, a ...any) { fmt.Fprintf(out, "demo: "+f+"\n", a...) }
	say("importing the agent image built from the Dockerfile")
	if err := stack.ImportAgentImage(ctx, env); err != nil {
		return err
	}
	cs, err := stack.KubeClient(env.Kubeconfig)
	if err != nil {
		return err
	}
	vc, err := env.VaultClient()
	if err != nil {
		return err
	}
	say("configuring Vault: KV secret secret/demo/config, database role %s (TTL 10s, max 20s), Kubernetes auth role %s", role, role)
	if _, err := vc.KVv2("secret").Put(ctx, "demo/config", map[string]any{"api_key": "demo-" + fmt.Sprint(time.Now().Unix())}); err != nil {
		return err
	}
	if _, err := env.AppRole(ctx, role, ns, `path "secret/data/demo/*" { capabilities = ["read"] }
path "database/creds/ramvault-demo" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }`, map[string]any{"token_ttl": "1h"}); err != nil {
		return err
	}
	if _, _, err := env.DBRole(ctx, role, "10s", "20s"); err != nil {
		return err
	}
	if err := stack.AppNamespace(ctx, cs, ns); err != nil {
		return err
	}
	_ = cs.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: ns, Annotations: map[string]string{
			"ramvault.io/inject":         "true",
			"ramvault.io/role":           role,
			"ramvault.io/secret-config":  "secret/demo/config",
			"ramvault.io/format-config":  "dotenv",
			"ramvault.io/secret-db":      "database/creds/" + role,
			"ramvault.io/reload":         "signal:SIGHUP",
			"ramvault.io/signal-process": "sh",
		}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "app",
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsNonRoot: ptr.To(true)},
			Containers: []corev1.Container{{Name: "app", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", appScript}}},
		},
	}
	injected, err := injector.Inject(p, injector.Config{AgentImage: "localhost/ramvault-agent:dev", VaultAddr: env.PodVaultAddr, NativeSidecars: true, Version: "demo"})
	if err != nil {
		return err
	}
	say("creating Pod %s/%s with annotations:", ns, pod)
	for _, k := range []string{"ramvault.io/secret-config", "ramvault.io/secret-db", "ramvault.io/reload"} {
		fmt.Fprintf(out, "    %s: %s\n", k, p.Annotations[k])
	}
	say("the injector added: %d init container (native sidecar %q), volumes %s", len(injected.Spec.InitContainers), injected.Spec.InitContainers[0].Name, volumeNames(injected))
	start := time.Now()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, injected, metav1.CreateOptions{}); err != nil {
		return err
	}
	var got *corev1.Pod
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 120*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err = cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		return err == nil && stack.PodRunningReady(got), nil
	}); err != nil {
		return fmt.Errorf("pod not ready: %w\n%s", err, stack.DescribePod(cs, ns, pod, got))
	}
	say("Pod Ready in %.1fs (the app started only after its secrets were written). The app prints:", time.Since(start).Seconds())
	stream, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "app", Follow: true}).Stream(ctx)
	if err != nil {
		return err
	}
	defer stream.Close()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stream)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(45 * time.Second)
	reloads := 0
	for reloads < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				return fmt.Errorf("the app's log ended")
			}
			fmt.Fprintf(out, "  | %s\n", l)
			if strings.HasPrefix(l, "reload #") {
				reloads++
			}
		case <-deadline:
			return fmt.Errorf("no rotation within 45s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	say("the database credentials rotated %d times before their max TTL and the app was reloaded each time.", reloads)
	fmt.Fprintf(out, `demo: the stack and the demo Pod keep running. Look around:
  source .dev/env
  bin/kubectl -n %[1]s get pod %[2]s -o wide
  bin/kubectl -n %[1]s logs %[2]s -c ramvault-agent      # the agent's JSON log (no values)
  bin/kubectl -n %[1]s logs -f %[2]s -c app              # reloads as they happen
  bin/vault list sys/leases/lookup/database/creds/%[3]s
Stop everything with: make dev-down
`, ns, pod, role)
	return nil
}

func volumeNames(p *corev1.Pod) string {
	var n []string
	for _, v := range p.Spec.Volumes {
		n = append(n, v.Name)
	}
	return strings.Join(n, ", ")
}
