// Command bench-scale runs, on the local stack's one kubelet, ramvault and
// hashicorp/vault-k8s v1.6.2 + Vault Agent 1.21.0 side by side: per side a
// Deployment of N Pods in a namespace of its own, each Pod with the same
// secrets (KV v2 secrets and one PostgreSQL credential with a short TTL, so
// that renewal and re-issue happen), held for a steady window, then deleted.
// Vault's file audit device is on for each run and attributes every request
// to a side by the service account namespace of its token. It prints, per
// side and as ramvault/vault-k8s ratios: create → Ready, agent memory and
// CPU (cgroup v1), Vault requests by kind, PostgreSQL roles created,
// admission latency (the apiserver's histogram) and node memory; then the
// per-Pod slope over the N list, the goals of issue 13, and an SVG plot.
//
// It takes the stack's lock exclusively for the run (other tests wait), and
// it is not part of `make test`.
//
//	make bench-scale                                   (N = 10, 25, 50; 10-minute windows: about an hour)
//	go run ./test/cmd/bench-scale -n 10 -window 2m -scale 5,10
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/ramvault/ramvault/test/stack"
)

type options struct {
	n        int           // Pods per side, the headline run
	secrets  int           // secrets per Pod: one database credential, the rest KV v2
	window   time.Duration // steady-state window per run
	scale    []int         // the N list (n is added if missing)
	dbTTL    time.Duration
	dbMaxTTL time.Duration
	svg      string
	timeout  time.Duration // for all Pods of a run to be Ready
}

func main() {
	var o options
	var scale string
	flag.IntVar(&o.n, "n", 50, "Pods per side in the headline run")
	flag.IntVar(&o.secrets, "secrets", 3, "secrets per Pod: one PostgreSQL credential and secrets-1 KV v2 secrets")
	flag.DurationVar(&o.window, "window", 10*time.Minute, "steady-state window of each run")
	flag.StringVar(&scale, "scale", "10,25,50", "the N list: one run per side at each N (n is added if missing)")
	flag.DurationVar(&o.dbTTL, "db-ttl", time.Minute, "the database credential's TTL (renewed during the window)")
	flag.DurationVar(&o.dbMaxTTL, "db-max-ttl", 3*time.Minute, "its max TTL (re-issued during the window)")
	flag.StringVar(&o.svg, "svg", "docs/bench-scale.svg", "where to write the plot of memory and Vault requests against N")
	flag.DurationVar(&o.timeout, "ready-timeout", 10*time.Minute, "how long a run's Pods may take to be Ready")
	flag.Parse()
	if err := o.parse(scale); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

// parse checks the flags, every problem at once.
func (o *options) parse(scale string) error {
	var errs []error
	for _, f := range strings.Split(scale, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			errs = append(errs, fmt.Errorf("-scale: %q is not a Pod count (want a comma-separated list such as 10,25,50)", f))
			continue
		}
		o.scale = append(o.scale, v)
	}
	if o.n < 1 {
		errs = append(errs, fmt.Errorf("-n: %d Pods: want at least 1", o.n))
	} else if !slices.Contains(o.scale, o.n) {
		o.scale = append(o.scale, o.n)
	}
	slices.Sort(o.scale)
	o.scale = slices.Compact(o.scale)
	if o.secrets < 1 {
		errs = append(errs, fmt.Errorf("-secrets: %d: want at least 1 (the database credential)", o.secrets))
	}
	if o.window < 30*time.Second {
		errs = append(errs, fmt.Errorf("-window: %s is too short to measure a steady state: want at least 30s", o.window))
	}
	if o.dbTTL < 10*time.Second || o.dbMaxTTL < o.dbTTL {
		errs = append(errs, fmt.Errorf("-db-ttl %s, -db-max-ttl %s: want a TTL of at least 10s and a max TTL no shorter", o.dbTTL, o.dbMaxTTL))
	}
	return errors.Join(errs...)
}

// side is one injector and the Pods it injects.
type side struct {
	name   string // ramvault, vault-k8s
	ns     string // the Pods' namespace; also the Vault role's name
	hook   string // the webhook's name in the apiserver's admission metrics
	agents []string
	// annotations asks for kv (KV v2 paths) and db (a creds path).
	annotations func(role string, kv []string, db string) map[string]string
}

const (
	ramvaultSide = "ramvault"
	vaultK8sSide = "vault-k8s"
)

var sides = []side{
	{name: ramvaultSide, ns: "bench-scale-ramvault", hook: "inject.ramvault.io", agents: []string{"ramvault-agent"},
		annotations: func(role string, kv []string, db string) map[string]string {
			a := map[string]string{"ramvault.io/inject": "true", "ramvault.io/role": role, "ramvault.io/secret-db": db}
			for i, p := range kv {
				a[fmt.Sprintf("ramvault.io/secret-kv%d", i+1)] = p
			}
			return a
		}},
	{name: vaultK8sSide, ns: "bench-scale-vault-k8s", hook: peerHook, agents: []string{"vault-agent", "vault-agent-init"},
		annotations: func(role string, kv []string, db string) map[string]string {
			a := map[string]string{"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/role": role,
				"vault.hashicorp.com/agent-inject-secret-db": db}
			for i, p := range kv {
				a[fmt.Sprintf("vault.hashicorp.com/agent-inject-secret-kv%d", i+1)] = p
			}
			return a
		}},
}

// injectedBy says which side's agent a Pod carries ("" for none).
func injectedBy(p *corev1.Pod) string {
	for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
		for _, s := range sides {
			if slices.Contains(s.agents, c.Name) {
				return s.name
			}
		}
	}
	return ""
}

func run(ctx context.Context, o options, out io.Writer) error {
	env, cs, vc, err := stack.Clients()
	if err != nil {
		return err
	}
	release, err := stack.LockExclusive(env, func() {
		fmt.Fprintln(os.Stderr, "bench-scale: waiting for the stack's lock (running tests hold it shared; new ones wait for this bench)")
	})
	if err != nil {
		return fmt.Errorf("the stack's lock: %w", err)
	}
	defer release()
	if err := stack.Healthy(ctx, env); err != nil {
		return fmt.Errorf("the stack is not healthy (make dev-up): %w", err)
	}
	resume, err := stack.PausePrometheus(env)
	if err != nil {
		return err
	}
	defer resume()
	fmt.Fprintln(os.Stderr, "bench-scale: the stack's Prometheus is paused for the run (it scrapes ramvault's agents every 2 s, vault-k8s's agents have no metrics)")
	start := time.Now()
	fmt.Fprintln(os.Stderr, "bench-scale: importing localhost/vault-k8s:1.6.2 and localhost/vault:1.21.0 (built once, then cached)")
	if err := stack.ImportPeerImages(ctx, env); err != nil {
		return err
	}
	kv, cleanVault, err := setUpVault(ctx, env, vc, o)
	if err != nil {
		return err
	}
	defer cleanVault()
	dbPaths := map[string]string{}
	for _, s := range sides {
		if err := stack.AppNamespace(ctx, cs, s.ns); err != nil {
			return err
		}
		path, drop, err := env.DBRole(ctx, s.ns, o.dbTTL.String(), o.dbMaxTTL.String())
		if err != nil {
			return err
		}
		defer drop()
		dbPaths[s.name] = path
	}
	fmt.Fprintln(os.Stderr, "bench-scale: deploying vault-k8s's injector")
	dropPeer, err := deployPeer(ctx, cs, env, sides[1].ns)
	if err != nil {
		return err
	}
	defer dropPeer()

	results := map[string][]*result{}
	for _, n := range o.scale {
		for _, s := range sides {
			fmt.Fprintf(os.Stderr, "bench-scale: %s, %d Pods, %s window\n", s.name, n, o.window)
			r, err := runOne(ctx, cs, env, vc, o, s, n, s.annotations(s.ns, kv, dbPaths[s.name]))
			if err != nil {
				return fmt.Errorf("%s at N=%d: %w", s.name, n, err)
			}
			results[s.name] = append(results[s.name], r)
		}
	}
	report(out, o, results, time.Since(start))
	if o.svg != "" {
		if err := plot(o, results); err != nil {
			return err
		}
		abs, _ := filepath.Abs(o.svg)
		fmt.Fprintf(out, "\nplot: %s\n", abs)
	}
	return nil
}

// setUpVault writes the KV secrets and each side's policy and Kubernetes
// role (named as its namespace); the returned function removes them.
func setUpVault(ctx context.Context, env stack.Env, vc *vault.Client, o options) ([]string, func(), error) {
	var kv []string
	for i := 1; i < o.secrets; i++ {
		p := fmt.Sprintf("bench-scale/kv%d", i)
		if _, err := vc.KVv2("secret").Put(ctx, p, map[string]any{"user": fmt.Sprintf("user-%d", i), "password": "bench-scale"}); err != nil {
			return nil, nil, fmt.Errorf("KV secret %s: %w", p, err)
		}
		kv = append(kv, "secret/data/"+p)
	}
	var drops []func()
	cleanup := func() {
		for _, d := range drops {
			d()
		}
	}
	for _, s := range sides {
		policy := fmt.Sprintf("path \"secret/data/bench-scale/*\" { capabilities = [\"read\"] }\npath \"database/creds/%s\" { capabilities = [\"read\"] }\n", s.ns)
		// vault-k8s's agent logs in with the Pod's own service-account
		// token, whose audience is the apiserver's: its role checks none.
		var extra map[string]any
		if s.name == vaultK8sSide {
			extra = map[string]any{"audience": ""}
		}
		drop, err := env.AppRole(ctx, s.ns, s.ns, policy, extra)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		drops = append(drops, drop)
	}
	return kv, cleanup, nil
}
