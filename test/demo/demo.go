// Package demo is `make demo`: on the running local stack, with ramvault
// deployed in it, the example app of examples/app (its Deployment as users
// apply it, pointed at the stack's PostgreSQL) gets a KV secret and
// short-lived PostgreSQL credentials from Vault as files on tmpfs, logs in
// with them, sees them rotate and is reloaded by signal — shown in the
// terminal without a single value.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	vault "github.com/hashicorp/vault/api"

	"github.com/ramvault/ramvault/test/stack"
)

// The names examples/app/deployment.yaml and examples/kind/setup-vault.sh use.
const (
	ns         = "ramvault-example"
	sa         = "example-app"
	role       = "ramvault-example"
	deployment = "example-app"
	manifest   = "examples/app/deployment.yaml"
)

// status is what the demo shows of the example app's GET /status.
type status struct {
	SignalReloads         int64  `json:"signal_reloads"`
	DBLoginsOK            int64  `json:"db_logins_ok"`
	DBConnected           bool   `json:"db_connected"`
	LastDBError           string `json:"last_db_error"`
	CredentialGeneration  int    `json:"credential_generation"`
	CredentialFingerprint string `json:"credential_fingerprint"`
	Files                 []struct {
		Name       string `json:"name"`
		Size       int64  `json:"size"`
		Mode       string `json:"mode"`
		UID        int    `json:"uid"`
		Filesystem string `json:"filesystem"`
	} `json:"files"`
}

// Run configures Vault for the example, applies the example's manifest (the
// in-cluster webhook injects its Pod) and narrates.
func Run(ctx context.Context, out io.Writer) error {
	env, cs, vc, err := stack.Clients()
	if err != nil {
		return err
	}
	say := func(f string, a ...any) { fmt.Fprintf(out, "demo: "+f+"\n", a...) }
	if err := setupVault(ctx, env, vc, say); err != nil {
		return err
	}

	objs, err := exampleObjects(env)
	if err != nil {
		return err
	}
	say("applying %s (namespace %s, Pod Security restricted); the app's annotations:", manifest, ns)
	var dep *appsv1.Deployment
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			dep = d
			for _, k := range []string{"ramvault.io/secret-config", "ramvault.io/secret-db", "ramvault.io/reload"} {
				fmt.Fprintf(out, "    %s: %s\n", k, d.Spec.Template.Annotations[k])
			}
		}
	}
	start := time.Now()
	if err := apply(ctx, cs, objs); err != nil {
		return err
	}
	pod, err := waitReady(ctx, cs, dep)
	if err != nil {
		return err
	}
	say("Pod %s Ready in %.1fs (the app started only once its secrets were written)", pod.Name, time.Since(start).Seconds())
	var sidecars []string
	for _, c := range pod.Spec.InitContainers {
		sidecars = append(sidecars, c.Name)
	}
	var vols []string
	for _, v := range pod.Spec.Volumes {
		vols = append(vols, v.Name)
	}
	say("the in-cluster webhook added init container(s) %s (a native sidecar) and volumes %s", strings.Join(sidecars, ", "), strings.Join(vols, ", "))

	st, err := appStatus(ctx, cs, pod.Name)
	if err != nil {
		return err
	}
	say("the app sees (values never shown):")
	for _, f := range st.Files {
		fmt.Fprintf(out, "    /var/run/secrets/ramvault/%-8s %-6s mode %s uid %d, %d bytes\n", f.Name, f.Filesystem, f.Mode, f.UID, f.Size)
	}
	say("PostgreSQL login with the file's credentials: %s (credentials %s…)", okText(st.DBConnected, st.LastDBError), st.CredentialFingerprint)

	say("waiting for two rotations of the database credentials (max TTL 20s)…")
	last := st
	deadline := time.Now().Add(75 * time.Second)
	for last.SignalReloads < 2 {
		if time.Now().After(deadline) {
			return fmt.Errorf("no two rotations within 75s; the agent's log: bin/kubectl -n %s logs %s -c ramvault-agent", ns, pod.Name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		s, err := appStatus(ctx, cs, pod.Name)
		if err != nil {
			continue
		}
		if s.SignalReloads != last.SignalReloads || s.CredentialGeneration != last.CredentialGeneration {
			say("%5.1fs  reload #%d by SIGHUP: credentials generation %d (%s…), PostgreSQL login %s",
				time.Since(start).Seconds(), s.SignalReloads, s.CredentialGeneration, s.CredentialFingerprint, okText(s.DBConnected, s.LastDBError))
		}
		last = s
	}
	say("the credentials rotated before their max TTL; the app was reloaded each time and logged in %d times in all.", last.DBLoginsOK)
	fmt.Fprintf(out, `demo: the stack, ramvault and the example keep running. Look around:
  source .dev/env
  bin/kubectl -n %[1]s get pods -o wide
  bin/kubectl -n %[1]s logs deploy/%[2]s -c ramvault-agent   # the agent's JSON log (no values)
  bin/kubectl get --raw /api/v1/namespaces/%[1]s/pods/%[3]s:8080/proxy/status   # the app's status
  bin/kubectl -n ramvault-system logs deploy/ramvault-injector  # the webhook
Stop everything with: make dev-down
`, ns, deployment, pod.Name)
	return nil
}

// SetupVault is the demo's first step alone (`go run ./test/cmd/demo
// -setup-vault`): the running stack's Vault configured for the example app.
func SetupVault(ctx context.Context, out io.Writer) error {
	env, _, vc, err := stack.Clients()
	if err != nil {
		return err
	}
	return setupVault(ctx, env, vc, func(f string, a ...any) { fmt.Fprintf(out, "demo: "+f+"\n", a...) })
}

// setupVault writes the example's KV secret (a fresh value each run, never
// shown), its policy and Kubernetes auth role, and its database role.
func setupVault(ctx context.Context, env stack.Env, vc *vault.Client, say func(string, ...any)) error {
	say("configuring Vault: KV secret secret/%s/config, database role %s (TTL 10s, max 20s), Kubernetes auth role %s for %s/%s",
		role, role, role, ns, sa)
	if _, err := vc.KVv2("secret").Put(ctx, role+"/config", map[string]any{"api_key": fmt.Sprintf("demo-%d", time.Now().UnixNano())}); err != nil {
		return err
	}
	if _, err := env.AppRole(ctx, role, ns, `path "secret/data/`+role+`/*" { capabilities = ["read"] }
path "database/creds/`+role+`" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }`, map[string]any{"bound_service_account_names": sa, "token_ttl": "1h"}); err != nil {
		return err
	}
	_, _, err := env.DBRole(ctx, role, "10s", "20s")
	return err
}

func okText(ok bool, errText string) string {
	if ok {
		return "ok"
	}
	return "failed: " + errText
}

// exampleObjects reads the example's manifest and points the app at the
// stack's PostgreSQL (the manifest names the kind path's Service).
func exampleObjects(env stack.Env) ([]runtime.Object, error) {
	root, err := stack.RepoRoot()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(root, manifest))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	us, err := stack.DecodeObjects(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", manifest, err)
	}
	var objs []runtime.Object
	for _, u := range us {
		var o runtime.Object
		switch u.GetKind() {
		case "Namespace":
			o = &corev1.Namespace{}
		case "ServiceAccount":
			o = &corev1.ServiceAccount{}
		case "Deployment":
			o = &appsv1.Deployment{}
		default:
			return nil, fmt.Errorf("%s: unexpected %s", manifest, u.GetKind())
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, o); err != nil {
			return nil, err
		}
		if d, ok := o.(*appsv1.Deployment); ok {
			for i := range d.Spec.Template.Spec.Containers {
				c := &d.Spec.Template.Spec.Containers[i]
				for j := range c.Env {
					switch c.Env[j].Name {
					case "PGHOST":
						c.Env[j].Value = env.PodPGHost
					case "PGPORT":
						c.Env[j].Value = env.PodPGPort
					}
				}
			}
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// apply creates the namespace and ServiceAccount unless they exist, and the
// Deployment afresh (a rerun of the demo starts a new Pod).
func apply(ctx context.Context, cs kubernetes.Interface, objs []runtime.Object) error {
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Namespace:
			_, err = cs.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			fg := metav1.DeletePropagationForeground
			if derr := cs.AppsV1().Deployments(ns).Delete(ctx, o.Name, metav1.DeleteOptions{PropagationPolicy: &fg}); derr == nil {
				_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
					_, err := cs.AppsV1().Deployments(ns).Get(ctx, o.Name, metav1.GetOptions{})
					return apierrors.IsNotFound(err), nil
				})
			}
			_, err = cs.AppsV1().Deployments(ns).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// waitReady waits for a Ready Pod of the Deployment.
func waitReady(ctx context.Context, cs kubernetes.Interface, d *appsv1.Deployment) (*corev1.Pod, error) {
	sel := metav1.FormatLabelSelector(d.Spec.Selector)
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 120*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, nil
		}
		for i := range pods.Items {
			pod = &pods.Items[i]
			if pod.DeletionTimestamp == nil && stack.PodRunningReady(pod) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		desc := ""
		if pod != nil {
			desc = stack.DescribePod(cs, ns, pod.Name, pod)
		}
		return nil, fmt.Errorf("no Ready Pod of %s: %w\n%s", d.Name, err, desc)
	}
	return pod, nil
}

// appStatus reads the app's GET /status through the apiserver's Pod proxy.
func appStatus(ctx context.Context, cs kubernetes.Interface, pod string) (status, error) {
	var s status
	b, err := cs.CoreV1().Pods(ns).ProxyGet("http", pod, "8080", "/status", nil).DoRaw(ctx)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}
