// Command bench-herd measures the herd the agents make when Vault comes back
// after an outage (issue 12: the peak request rate after the return is at
// most 3× the steady-state rate). On the running local stack it starts
// -agents real ramvault-agent processes on the host, each with a
// service-account token of its own (TokenRequest) and real Kubernetes auth,
// a short-TTL PostgreSQL lease and a KV secret re-read on a short refresh,
// all pointed at one fault proxy (test/faults) in front of the stack's
// Vault. Once they run steadily it refuses connections for -outage, then
// forwards again, and counts the agents' requests in a file audit device of
// Vault's enabled for the run.
//
//	make bench-herd                         (brings the stack up first)
//	go run ./test/cmd/bench-herd -agents 50 -outage 60s
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vault "github.com/hashicorp/vault/api"

	"github.com/ramvault/ramvault/test/faults"
	"github.com/ramvault/ramvault/test/stack"
)

type config struct {
	agents    int
	outage    time.Duration
	lease     time.Duration // TTL of each agent's database lease
	refresh   time.Duration // re-read interval of each agent's KV secret
	steady    time.Duration // the window before the outage the steady rate is the mean of
	after     time.Duration // the window after the return the peak is looked for in
	bucket    time.Duration
	exclusive bool
}

func main() {
	var c config
	flag.IntVar(&c.agents, "agents", 50, "agent processes")
	flag.DurationVar(&c.outage, "outage", 60*time.Second, "how long the proxy refuses connections")
	flag.DurationVar(&c.lease, "lease", 30*time.Second, "TTL of each agent's database lease (renewed at about 2/3)")
	flag.DurationVar(&c.refresh, "refresh", 30*time.Second, "re-read interval of each agent's KV secret")
	flag.DurationVar(&c.steady, "steady", time.Minute, "window before the outage whose mean rate is the steady state")
	flag.DurationVar(&c.after, "after", 90*time.Second, "window after Vault's return the peak is looked for in")
	flag.DurationVar(&c.bucket, "bucket", 5*time.Second, "width of the buckets the rates are counted in")
	flag.BoolVar(&c.exclusive, "exclusive", true, "wait until no test binary uses the stack (its exclusive lock), so that no other load shares Vault and the 2 cores")
	flag.Parse()
	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-herd:", err)
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench-herd:", err)
		os.Exit(1)
	}
}

func (c config) validate() error {
	var errs []string
	if c.agents < 1 {
		errs = append(errs, fmt.Sprintf("-agents %d: at least 1", c.agents))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-outage", c.outage}, {"-lease", c.lease}, {"-refresh", c.refresh}, {"-steady", c.steady}, {"-after", c.after}, {"-bucket", c.bucket}} {
		if d.v < time.Second {
			errs = append(errs, fmt.Sprintf("%s %v: at least 1s", d.name, d.v))
		}
	}
	if c.bucket > c.steady || c.bucket > c.after {
		errs = append(errs, fmt.Sprintf("-bucket %v: no wider than -steady and -after", c.bucket))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func progress(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s bench-herd: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(f, a...))
}

func run(c config) error {
	ctx := context.Background()
	env, cs, vc, err := stack.Clients()
	if err != nil {
		return err
	}
	if c.exclusive {
		release, err := stack.LockExclusive(env, func() {
			progress("waiting for the stack's exclusive lock (no test binary using it)")
		})
		if err != nil {
			return err
		}
		defer release()
	}
	const ns, role = "bench-herd", "bench-herd"
	if err := stack.AppNamespace(ctx, cs, ns); err != nil {
		return err
	}
	dropRole, err := env.AppRole(ctx, role, ns, `path "secret/data/bench-herd/*" { capabilities = ["read"] }
path "database/creds/bench-herd" { capabilities = ["read"] }`, nil)
	if err != nil {
		return err
	}
	defer dropRole()
	dbPath, dropDB, err := env.DBRole(ctx, role, c.lease.String(), "1h")
	if err != nil {
		return err
	}
	defer dropDB()
	if _, err := vc.KVv2("secret").Put(ctx, "bench-herd/config", map[string]any{"user": "herd"}); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "bench-herd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	agentBin, err := stack.BuildAgent(work)
	if err != nil {
		return err
	}

	// The audit device: every request Vault answers, one JSON line each.
	auditPath := "bench-herd-" + randHex(4)
	auditFile := filepath.Join(work, "audit.log")
	if err := vc.Sys().EnableAuditWithOptionsWithContext(ctx, auditPath, &vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditFile}}); err != nil {
		return fmt.Errorf("enable the audit device: %w", err)
	}
	defer func() { _ = vc.Sys().DisableAuditWithContext(context.Background(), auditPath) }()

	proxy, err := faults.Listen(stack.Gateway, env.VaultAddr)
	if err != nil {
		return err
	}
	defer proxy.Stop()

	// Started over one renewal period (2/3 of the lease), as Pods of a
	// cluster start at different times: started together, their renewals
	// would come in step for ever, and the steady state itself would be
	// bursts of -agents requests.
	spread := c.lease * 2 / 3
	progress("starting %d agents over %v (lease %v, KV refresh %v) through the proxy %s", c.agents, spread.Round(time.Second), c.lease, c.refresh, proxy.Addr())
	agents := make([]*agent, 0, c.agents)
	defer func() {
		for _, a := range agents {
			a.stop()
		}
	}()
	exp := int64(3600)
	for i := 0; i < c.agents; i++ {
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
			Audiences: []string{"vault"}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		a, err := startAgent(work, i, agentBin, proxy.Addr(), role, tr.Status.Token, map[string]string{
			"ramvault.io/secret-db": dbPath, "ramvault.io/secret-kv": "secret/data/bench-herd/config",
			"ramvault.io/refresh-kv": c.refresh.String()})
		if err != nil {
			return err
		}
		agents = append(agents, a)
		time.Sleep(spread / time.Duration(c.agents))
	}
	if err := waitAll(agents, 2*time.Minute, func(s status) bool { return s.Ready && !s.Degraded }); err != nil {
		return err
	}
	// One lease period for the schedules to settle, then the steady window.
	progress("all %d agents ready; settling %v, then the steady window of %v", len(agents), c.lease, c.steady)
	time.Sleep(c.lease)
	steadyFrom := time.Now()
	time.Sleep(c.steady)
	down := time.Now()
	if err := proxy.Set(faults.Mode{Kind: faults.Refuse}); err != nil {
		return err
	}
	progress("Vault unreachable (connections refused) for %v", c.outage)
	time.Sleep(c.outage)
	back := time.Now()
	if err := proxy.Set(faults.Mode{Kind: faults.Forward}); err != nil {
		return err
	}
	progress("Vault back; watching for %v", c.after)
	// Recovered: ready, not degraded, and the database lease (which ended
	// during the outage) fetched anew after the return.
	recovered := func(s status) bool { return s.Ready && !s.Degraded && s.Files["db"].Written.After(back) }
	var allBack time.Duration
	if err := waitAll(agents, c.after, recovered); err != nil {
		fmt.Fprintf(os.Stderr, "bench-herd: %v\n", err)
	} else {
		allBack = time.Since(back)
	}
	if rest := c.after - time.Since(back); rest > 0 {
		time.Sleep(rest)
	}
	end := back.Add(c.after)

	times, err := auditTimes(auditFile, ns)
	if err != nil {
		return err
	}
	var forwarded []time.Time
	for _, r := range proxy.Requests() {
		if r.Fault == "forward" && r.Status != 0 {
			forwarded = append(forwarded, r.Start)
		}
	}
	steadyN := count(times, steadyFrom, down)
	if steadyN == 0 {
		return fmt.Errorf("no request of namespace %s in the audit log's steady window (%d lines matched in all; the proxy forwarded %d in that window)",
			ns, len(times), count(forwarded, steadyFrom, down))
	}
	steady := float64(steadyN) / down.Sub(steadyFrom).Seconds()
	peak, peakAt := peakRate(times, back, end, c.bucket)
	steadyPeak, _ := peakRate(times, steadyFrom, down, c.bucket)
	peak1, _ := peakRate(times, back, end, time.Second)
	proxySteady := float64(count(forwarded, steadyFrom, down)) / down.Sub(steadyFrom).Seconds()
	proxyPeak, _ := peakRate(forwarded, back, end, c.bucket)
	ratio := peak / steady

	fmt.Printf("\nherd benchmark: %d ramvault-agent processes (Kubernetes auth, a %v PostgreSQL lease and a KV secret re-read every %v each), Vault refused for %v\n",
		len(agents), c.lease, c.refresh, c.outage)
	fmt.Printf("counted: Vault's audit log, responses to tokens of namespace %s (service_account_namespace), in %v buckets\n\n", ns, c.bucket)
	fmt.Printf("| %-58s | %12s |\n", "figure", "value")
	fmt.Printf("|%s|%s|\n", strings.Repeat("-", 60), strings.Repeat("-", 14))
	row := func(name, v string) { fmt.Printf("| %-58s | %12s |\n", name, v) }
	row(fmt.Sprintf("steady rate: mean over the %v before the outage", c.steady), fmt.Sprintf("%.2f req/s", steady))
	row(fmt.Sprintf("steady: highest %v bucket", c.bucket), fmt.Sprintf("%.2f req/s", steadyPeak))
	row(fmt.Sprintf("peak after the return: highest %v bucket in %v", c.bucket, c.after), fmt.Sprintf("%.2f req/s", peak))
	row("  … that bucket starts after the return at", peakAt.Round(time.Millisecond).String())
	row("peak after the return: highest 1s bucket", fmt.Sprintf("%.0f req/s", peak1))
	row("ratio peak / steady", fmt.Sprintf("%.2fx", ratio))
	row("requests during the outage reaching Vault", fmt.Sprint(count(times, down, back)))
	if allBack > 0 {
		row("time from the return to every agent recovered", allBack.Round(time.Millisecond).String())
	} else {
		row("time from the return to every agent recovered", "not within "+c.after.String())
	}
	row("cross-check, the proxy's log: steady rate", fmt.Sprintf("%.2f req/s", proxySteady))
	row(fmt.Sprintf("cross-check, the proxy's log: peak %v bucket", c.bucket), fmt.Sprintf("%.2f req/s", proxyPeak))
	fmt.Printf("\ngoal: peak ≤ 3x the steady rate (%s); every agent recovered (%s)\n", verdict(ratio <= 3), verdict(allBack > 0))
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// auditTimes is the time of every response in the audit log to a token of
// a service account of ns (a login's response carries the new token's).
func auditTimes(file, ns string) ([]time.Time, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("the audit log: %w", err)
	}
	defer f.Close()
	var out []time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			Time time.Time `json:"time"`
			Type string    `json:"type"`
			Auth struct {
				Metadata map[string]string `json:"metadata"`
			} `json:"auth"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Type != "response" || e.Auth.Metadata["service_account_namespace"] != ns {
			continue
		}
		out = append(out, e.Time)
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out, sc.Err()
}

func count(ts []time.Time, from, to time.Time) int {
	n := 0
	for _, t := range ts {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// peakRate is the highest rate in the buckets of width w from from on
// (whole buckets before to), and when its bucket starts after from.
func peakRate(ts []time.Time, from, to time.Time, w time.Duration) (float64, time.Duration) {
	best, at := 0, time.Duration(0)
	for s := from; !s.Add(w).After(to); s = s.Add(w) {
		if n := count(ts, s, s.Add(w)); n > best {
			best, at = n, s.Sub(from)
		}
	}
	return float64(best) / w.Seconds(), at
}

// agent is one ramvault-agent process in a tmpfs of its own.
type agent struct {
	dir string
	cmd *exec.Cmd
	log *os.File
}

func startAgent(work string, i int, bin, vaultAddr, role, token string, ann map[string]string) (*agent, error) {
	dir := filepath.Join(work, fmt.Sprintf("agent-%02d", i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mount: %v %s", err, out)
	}
	a := &agent{dir: dir}
	for _, d := range []string{"out", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			a.stop()
			return nil, err
		}
	}
	tokenFile := filepath.Join(dir, "sa-token")
	var lines strings.Builder
	for k, v := range ann {
		fmt.Fprintf(&lines, "%s=%q\n", k, v)
	}
	annFile := filepath.Join(dir, "annotations")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		a.stop()
		return nil, err
	}
	if err := os.WriteFile(annFile, []byte(lines.String()), 0o600); err != nil {
		a.stop()
		return nil, err
	}
	logf, err := os.Create(filepath.Join(work, fmt.Sprintf("agent-%02d.log", i)))
	if err != nil {
		a.stop()
		return nil, err
	}
	a.log = logf
	a.cmd = exec.Command(bin, "--mode=sidecar", "--vault-addr="+vaultAddr, "--role="+role, "--token-file="+tokenFile,
		"--annotations="+annFile, "--secrets-dir="+filepath.Join(dir, "out"), "--state-dir="+filepath.Join(dir, "state"),
		"--health-addr=", "--metrics-addr=")
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		a.cmd = nil
		a.stop()
		return nil, err
	}
	return a, nil
}

// stop ends the agent (SIGTERM: it revokes its lease and token) and
// unmounts its tmpfs.
func (a *agent) stop() {
	if a.cmd != nil && a.cmd.Process != nil {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = a.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = a.cmd.Process.Kill()
		}
		a.cmd = nil
	}
	if a.log != nil {
		a.log.Close()
		a.log = nil
	}
	_ = syscall.Unmount(a.dir, syscall.MNT_DETACH)
}

// status is what the bench reads of the agent's status file.
type status struct {
	Ready    bool `json:"ready"`
	Degraded bool `json:"degraded"`
	Files    map[string]struct {
		Written time.Time `json:"written"`
	} `json:"files"`
}

func (a *agent) status() (status, bool) {
	var s status
	b, err := os.ReadFile(filepath.Join(a.dir, "out", ".ramvault-status.json"))
	return s, err == nil && json.Unmarshal(b, &s) == nil
}

// waitAll polls every agent's status file until ok holds for each.
func waitAll(agents []*agent, timeout time.Duration, ok func(status) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		pending := 0
		for _, a := range agents {
			if s, read := a.status(); !read || !ok(s) {
				pending++
			}
		}
		if pending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d agents not there within %v (logs in the work directory)", pending, len(agents), timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
