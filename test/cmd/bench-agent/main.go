// Command bench-agent compares ramvault-agent with Vault Agent 1.21.0 on the
// running local stack, same machine, same run: time from process start to
// all files written, and RSS after 30 s idle, with the same auth, for two
// Pods: 5 secrets (3 KV v2, 2 dynamic PostgreSQL credentials), and 10
// templated files over 3 KV v2 secrets and one PostgreSQL credential (the
// same templates for both agents). Each is run with Vault's kubernetes auth
// (a TokenReview to the apiserver at every login) and with its jwt auth
// (Vault checks the token's signature itself).
//
// Between the agents' starts, a bare client in this process logs in and
// makes the shape's distinct reads at once: the floor, Vault's own time,
// which no agent can go below. Starts are interleaved (floor, ramvault,
// Vault Agent, again), so a slow minute of Vault or the apiserver falls on
// all three alike.
//
//	make bench-agent            (brings the stack up first)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vault "github.com/hashicorp/vault/api"

	"github.com/ramvault/ramvault/test/stack"
)

func main() {
	runs := flag.Int("runs", 5, "cold starts per agent")
	idle := flag.Duration("idle", 30*time.Second, "idle time before reading RSS")
	settle := flag.Duration("settle", time.Second, "pause after an agent exits, before the next start")
	flag.Parse()
	if err := run(*runs, *idle, *settle); err != nil {
		fmt.Fprintln(os.Stderr, "bench-agent:", err)
		os.Exit(1)
	}
}

type peer struct {
	name  string
	start func(dir string) (*exec.Cmd, error)
	files []string
}

func run(runs int, idle, settle time.Duration) error {
	ctx := context.Background()
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	env, cs, vc, err := stack.Clients()
	if err != nil {
		return err
	}
	const ns, role = "bench-agent", "bench-agent"
	if err := stack.AppNamespace(ctx, cs, ns); err != nil {
		return err
	}
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: []string{"vault"}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if _, err := env.AppRole(ctx, role, ns, `path "secret/data/bench/*" { capabilities = ["read"] }
path "database/creds/bench-agent" { capabilities = ["read"] }`, map[string]any{"token_ttl": "1h"}); err != nil {
		return err
	}
	if _, _, err := env.DBRole(ctx, role, "10m", "1h"); err != nil {
		return err
	}
	for i := 1; i <= 3; i++ {
		if _, err := vc.KVv2("secret").Put(ctx, fmt.Sprintf("bench/kv%d", i), map[string]any{"user": "u", "password": fmt.Sprintf("bench-%d", i)}); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "bench-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	tokenFile := filepath.Join(work, "sa-token")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		return err
	}
	agentBin, err := stack.BuildAgent(work)
	if err != nil {
		return err
	}
	vaultBin := filepath.Join(root, "bin", "vault")

	if err := jwtAuth(ctx, vc, env, ns, role); err != nil {
		return err
	}
	for _, auth := range []string{"kubernetes", "jwt"} {
		for _, sh := range shapes() {
			if err := compare(ctx, env, auth, role, agentBin, vaultBin, tokenFile, tr.Status.Token, work, sh, runs, idle, settle); err != nil {
				return err
			}
		}
	}
	return nil
}

// jwtAuth mounts Vault's jwt method at auth/jwt, verifying the stack's
// service-account tokens with the issuer's public key (no TokenReview),
// with the same role as the Kubernetes mount.
func jwtAuth(ctx context.Context, vc *vault.Client, env stack.Env, ns, role string) error {
	pub, err := os.ReadFile(filepath.Join(env.StateDir, "pki", "sa.pub"))
	if err != nil {
		return fmt.Errorf("the stack's service-account public key: %w", err)
	}
	mounts, err := vc.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return err
	}
	if _, ok := mounts["jwt/"]; !ok {
		if err := vc.Sys().EnableAuthWithOptionsWithContext(ctx, "jwt", &vault.EnableAuthOptions{Type: "jwt"}); err != nil {
			return err
		}
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "auth/jwt/config", map[string]any{
		"jwt_validation_pubkeys": []string{string(pub)}, "bound_issuer": "https://kubernetes.default.svc.cluster.local",
	}); err != nil {
		return err
	}
	_, err = vc.Logical().WriteWithContext(ctx, "auth/jwt/role/"+role, map[string]any{
		"role_type": "jwt", "bound_audiences": []string{"vault"}, "user_claim": "sub",
		"bound_subject": "system:serviceaccount:" + ns + ":app", "token_policies": []string{role}, "token_ttl": "1h",
	})
	return err
}

// compare measures one shape with one auth method: the bare-client floor,
// ramvault-agent and Vault Agent, one start of each in turn (so a slower
// minute of Vault or the apiserver falls on all three alike), and prints
// the table.
func compare(ctx context.Context, env stack.Env, auth, role, agentBin, vaultBin, tokenFile, jwt, work string, sh shape, runs int, idle, settle time.Duration) error {
	ramvault := peer{name: "ramvault-agent", files: sh.files(), start: func(dir string) (*exec.Cmd, error) {
		ann := filepath.Join(dir, "annotations")
		var a strings.Builder
		for _, f := range sh.ramvault {
			fmt.Fprintf(&a, "%s=%q\n", f.key, f.value)
		}
		if err := os.WriteFile(ann, []byte(a.String()), 0o600); err != nil {
			return nil, err
		}
		return exec.Command(agentBin, "--mode=sidecar", "--vault-addr="+env.VaultAddr, "--role="+role, "--token-file="+tokenFile,
			"--auth-path="+auth, "--annotations="+ann, "--secrets-dir="+filepath.Join(dir, "out"), "--state-dir="+filepath.Join(dir, "state"),
			"--health-addr=", "--metrics-addr="), nil
	}}
	vaultAgent := peer{name: "vault agent 1.21.0", files: sh.files(), start: func(dir string) (*exec.Cmd, error) {
		conf := filepath.Join(dir, "agent.json")
		if err := os.WriteFile(conf, vaultAgentConfig(env.VaultAddr, auth, role, tokenFile, filepath.Join(dir, "out"), sh.templates), 0o600); err != nil {
			return nil, err
		}
		c := exec.Command(vaultBin, "agent", "-config="+conf, "-log-level=warn")
		c.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
		return c, nil
	}}
	rv, va, fl := &result{}, &result{}, &floor{}
	var logins, reads []time.Duration
	for i := 0; i <= runs; i++ {
		keep := i == runs // the last start of each agent idles for the RSS reading
		l, r, err := floorOnce(ctx, env.VaultAddr, auth, role, jwt, sh.reads())
		if err != nil {
			return err
		}
		time.Sleep(settle)
		if err := rv.once(ramvault, work, keep, idle); err != nil {
			return err
		}
		time.Sleep(settle)
		if err := va.once(vaultAgent, work, keep, idle); err != nil {
			return err
		}
		time.Sleep(settle)
		if i == 0 && runs > 0 {
			rv.times, va.times = nil, nil // the first round warms caches for all alike
			continue
		}
		logins, reads = append(logins, l), append(reads, r)
	}
	fl.login, fl.reads = median(logins), median(reads)
	fmt.Printf("\nagent benchmark: %s, %s auth, %d cold starts each, same machine, same run\n\n", sh.name, auth, len(rv.times))
	fmt.Printf("| %-36s | %14s | %18s | %9s |\n", "metric", "ramvault-agent", "vault agent 1.21.0", "ratio")
	fmt.Printf("|%s|%s|%s|%s|\n", strings.Repeat("-", 38), strings.Repeat("-", 16), strings.Repeat("-", 20), strings.Repeat("-", 11))
	mr, mv := median(rv.times), median(va.times)
	fmt.Printf("| %-36s | %12.1fms | %16.1fms | %8.2fx |\n", "start → all files written (median)", ms(mr), ms(mv), float64(mr)/float64(mv))
	fmt.Printf("| %-36s | %12.1fms | %16.1fms | %8.2fx |\n", "  of which the agent's own (− floor)", ms(mr-fl.login-fl.reads), ms(mv-fl.login-fl.reads), float64(mr-fl.login-fl.reads)/float64(mv-fl.login-fl.reads))
	fmt.Printf("| %-36s | %11.1fMiB | %15.1fMiB | %8.2fx |\n", fmt.Sprintf("RSS after %s idle", idle), mib(rv.rss[0]), mib(va.rss[0]), float64(rv.rss[0])/float64(va.rss[0]))
	fmt.Printf("| %-36s | %11.1fMiB | %15.1fMiB | %8.2fx |\n", "  of which anonymous (heap, stacks)", mib(rv.rss[1]), mib(va.rss[1]), float64(rv.rss[1])/float64(va.rss[1]))
	fmt.Printf("\nfloor (a bare client in this process, between the agents' starts, median): login %.1f ms, then the %d distinct reads\n"+
		"at once %.1f ms: %.1f ms that neither agent can go below, %.2fx of Vault Agent's time.\n",
		ms(fl.login), len(sh.reads()), ms(fl.reads), ms(fl.login+fl.reads), float64(fl.login+fl.reads)/float64(mv))
	fmt.Printf("goals: time ≤ 0.25x of Vault Agent (%s); RSS ≤ 12 MiB (%s)\n",
		verdict(float64(mr) <= 0.25*float64(mv)), verdict(rv.rss[0] <= 12<<20))
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// file is one ramvault.io/ annotation of a shape.
type file struct{ key, value string }

// template is one Vault Agent template stanza: a file and its contents.
type template struct{ name, contents string }

// shape is a Pod's secrets, written for both agents: ramvault's
// annotations and Vault Agent's templates, the same files.
type shape struct {
	name      string
	ramvault  []file
	templates []template
}

func (s shape) files() []string {
	out := make([]string, len(s.templates))
	for i, t := range s.templates {
		out[i] = t.name
	}
	return out
}

// shapes are the Pods benchmarked: the 5 secrets of ramvault's own
// annotations (3 KV v2, 2 PostgreSQL credentials), and 10 templated files
// over 3 KV secrets and one PostgreSQL credential, the same consul-template
// text for both agents.
func shapes() []shape {
	five := shape{name: "5 secrets (3 KV v2, 2 PostgreSQL credentials)"}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("kv%d", i)
		five.ramvault = append(five.ramvault, file{"ramvault.io/secret-" + name, fmt.Sprintf("secret/data/bench/kv%d", i)})
		five.templates = append(five.templates, template{name, fmt.Sprintf(`{{ with secret "secret/data/bench/kv%d" }}{{ .Data.data | toJSON }}{{ end }}`, i)})
	}
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("db%d", i)
		five.ramvault = append(five.ramvault, file{"ramvault.io/secret-" + name, "database/creds/bench-agent"})
		five.templates = append(five.templates, template{name, `{{ with secret "database/creds/bench-agent" }}{{ .Data | toJSON }}{{ end }}`})
	}
	const db = `database/creds/bench-agent`
	kv := func(i int) string { return fmt.Sprintf("secret/bench/kv%d", i) } // KV v2 without /data/, as consul-template reads it
	ten := shape{name: "10 templated files (3 KV v2 secrets, 1 PostgreSQL credential)", templates: []template{
		{"config.json", `{{ with secret "` + kv(1) + `" }}{{ .Data.data | toJSON }}{{ end }}`},
		{"config.yaml", `{{ with secret "` + kv(2) + `" }}{{ .Data.data | toYAML }}{{ end }}`},
		{"app.properties", `{{ with secret "` + kv(1) + `" }}{{ range $k, $v := .Data.data }}app.{{ $k }}={{ $v }}
{{ end }}{{ end }}`},
		{"db.env", `{{ with secret "` + db + `" }}export PGUSER={{ .Data.username }}
export PGPASSWORD={{ .Data.password }}
{{ end }}`},
		{"dsn", `{{ with secret "` + kv(3) + `" }}{{ $h := .Data.data.user }}{{ with secret "` + db + `" }}postgres://{{ .Data.username }}:{{ .Data.password }}@{{ $h }}:5432/app{{ end }}{{ end }}`},
		{"db.json", `{{ with secret "` + db + `" }}{{ .Data | toJSONPretty }}{{ end }}`},
		{"password", `{{ with secret "` + kv(3) + `" }}{{ .Data.data.password }}{{ end }}`},
		{"all.env", `{{ with secret "` + kv(1) + `" }}{{ range $k, $v := .Data.data }}KV1_{{ $k | toUpper }}={{ $v }}
{{ end }}{{ end }}{{ with secret "` + kv(2) + `" }}{{ range $k, $v := .Data.data }}KV2_{{ $k | toUpper }}={{ $v }}
{{ end }}{{ end }}{{ with secret "` + kv(3) + `" }}{{ range $k, $v := .Data.data }}KV3_{{ $k | toUpper }}={{ $v }}
{{ end }}{{ end }}`},
		{"pair", `{{ with secret "` + kv(1) + `" }}{{ .Data.data.user }}{{ end }}:{{ with secret "` + kv(2) + `" }}{{ .Data.data.password }}{{ end }}`},
		{"meta", `{{ with secret "` + kv(2) + `" }}version={{ .Data.metadata.version }}{{ end }}`},
	}}
	for _, t := range ten.templates {
		ten.ramvault = append(ten.ramvault, file{"ramvault.io/template-" + t.name, t.contents})
	}
	return []shape{five, ten}
}

// vaultAgentConfig is Vault Agent's configuration (JSON, which it reads as
// HCL) for a shape's templates, with the same Kubernetes login.
func vaultAgentConfig(addr, auth, role, tokenFile, out string, templates []template) []byte {
	var ts []map[string]any
	for _, t := range templates {
		ts = append(ts, map[string]any{"destination": filepath.Join(out, t.name), "perms": "0400", "contents": t.contents})
	}
	b, _ := json.MarshalIndent(map[string]any{
		"vault": map[string]any{"address": addr},
		// A list of one method: Vault Agent 1.21.0 reads a method given as
		// a bare object as no method ("one and only one method block").
		"auto_auth": map[string]any{"method": []any{map[string]any{"type": auth, "mount_path": "auth/" + auth,
			"config": authConfig(auth, role, tokenFile)}}},
		"template_config": map[string]any{"static_secret_render_interval": "5m"},
		"template":        ts,
	}, "", "  ")
	return b
}

// authConfig is Vault Agent's auto_auth method config: the kubernetes
// method reads the token from token_path, the jwt method from path.
func authConfig(auth, role, tokenFile string) map[string]any {
	if auth == "jwt" {
		return map[string]any{"role": role, "path": tokenFile, "remove_jwt_after_reading": false}
	}
	return map[string]any{"role": role, "token_path": tokenFile}
}

type result struct {
	times []time.Duration
	rss   [2]int64 // VmRSS, RssAnon
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func mib(b int64) float64        { return float64(b) / (1 << 20) }

// once starts an agent in a fresh tmpfs, waits for every file, and either
// stops it or lets it idle and reads its RSS. A stopped ramvault-agent
// revokes its token and leases (Vault Agent does not) and Vault drops the
// PostgreSQL roles in the background: the caller lets that settle before
// the next start, or it lands in it (back to back, the median rose ~25 ms).
func (r *result) once(p peer, work string, keep bool, idle time.Duration) error {
	d, rss, err := start(p, work, keep, idle)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	r.times = append(r.times, d)
	if keep {
		r.rss = rss
	}
	return nil
}

func start(p peer, work string, keep bool, idle time.Duration) (time.Duration, [2]int64, error) {
	dir, err := os.MkdirTemp(work, "run-")
	if err != nil {
		return 0, [2]int64{}, err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		return 0, [2]int64{}, fmt.Errorf("mount: %v %s", err, out)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	for _, d := range []string{"out", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return 0, [2]int64{}, err
		}
	}
	cmd, err := p.start(dir)
	if err != nil {
		return 0, [2]int64{}, err
	}
	logf, _ := os.Create(filepath.Join(work, strings.ReplaceAll(p.name, " ", "-")+".log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, [2]int64{}, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		logf.Close()
	}()
	deadline := start.Add(60 * time.Second)
	for {
		all := true
		for _, f := range p.files {
			if fi, err := os.Stat(filepath.Join(dir, "out", f)); err != nil || fi.Size() == 0 {
				all = false
				break
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			return 0, [2]int64{}, fmt.Errorf("files not written within 60s; log:\n%s", b)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	if !keep {
		return took, [2]int64{}, nil
	}
	time.Sleep(idle)
	total, anon := rss(cmd.Process.Pid)
	return took, [2]int64{total, anon}, nil
}

// rss is the process's resident memory (VmRSS), and the part of it that is
// anonymous (heap, stacks: RssAnon); the rest are pages of files, mostly the
// binary's own code and data.
func rss(pid int) (total, anon int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			total = kb * 1024
		case "RssAnon:":
			anon = kb * 1024
		}
	}
	return total, anon
}

// reads are the distinct Vault reads of a shape, as paths Vault serves
// (KV v2 with data/): the least both agents must fetch after logging in
// (both fetch the 5-secret shape's two database files as one lease).
func (s shape) reads() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range s.templates {
		for _, m := range secretRef.FindAllStringSubmatch(t.contents, -1) {
			p := m[1]
			if strings.HasPrefix(p, "secret/") && !strings.HasPrefix(p, "secret/data/") {
				p = "secret/data/" + strings.TrimPrefix(p, "secret/")
			}
			if !seen[p] {
				out = append(out, p)
			}
			seen[p] = true
		}
	}
	return out
}

var secretRef = regexp.MustCompile(`secret "([^"]+)"`)

// floor is the time Vault itself takes for a shape (medians).
type floor struct{ login, reads time.Duration }

// floorOnce asks Vault what an agent must, with a bare client and no
// agent around it: the login, then every distinct read at once. It
// revokes the token (and so the leases) after.
func floorOnce(ctx context.Context, addr, auth, role, jwt string, reads []string) (login, all time.Duration, err error) {
	c, err := vault.NewClient(&vault.Config{Address: addr, MaxRetries: 0})
	if err != nil {
		return 0, 0, err
	}
	c.ClearToken()
	t0 := time.Now()
	s, err := c.Logical().WriteWithContext(ctx, "auth/"+auth+"/login", map[string]any{"role": role, "jwt": jwt})
	if err != nil {
		return 0, 0, fmt.Errorf("floor: log in: %w", err)
	}
	t1 := time.Now()
	c.SetToken(s.Auth.ClientToken)
	errs := make(chan error, len(reads))
	for _, p := range reads {
		go func() {
			_, err := c.Logical().ReadWithContext(ctx, p)
			errs <- err
		}()
	}
	for range reads {
		if e := <-errs; e != nil && err == nil {
			err = fmt.Errorf("floor: read: %w", e)
		}
	}
	t2 := time.Now()
	_ = c.Auth().Token().RevokeSelfWithContext(ctx, "")
	return t1.Sub(t0), t2.Sub(t1), err
}
