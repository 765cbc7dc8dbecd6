// Command bench-agent compares ramvault-agent with Vault Agent 1.21.0 on the
// running local stack, same machine, same run: time from process start to
// all files written, and RSS after 30 s idle, with 5 secrets (3 KV v2, 2
// dynamic PostgreSQL credentials) and the same Kubernetes auth.
//
//	make bench-agent            (brings the stack up first)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	agentBin := filepath.Join(work, "ramvault-agent")
	b := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", agentBin, "./cmd/ramvault-agent")
	b.Dir, b.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := b.CombinedOutput(); err != nil {
		return fmt.Errorf("build agent: %v\n%s", err, out)
	}
	vaultBin := filepath.Join(root, "bin", "vault")
	files := []string{"kv1", "kv2", "kv3", "db1", "db2"}

	ramvault := peer{name: "ramvault-agent", files: files, start: func(dir string) (*exec.Cmd, error) {
		ann := filepath.Join(dir, "annotations")
		var a strings.Builder
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(&a, "ramvault.io/secret-kv%d=%q\n", i, fmt.Sprintf("secret/data/bench/kv%d", i))
		}
		for i := 1; i <= 2; i++ {
			fmt.Fprintf(&a, "ramvault.io/secret-db%d=%q\n", i, "database/creds/bench-agent")
		}
		if err := os.WriteFile(ann, []byte(a.String()), 0o600); err != nil {
			return nil, err
		}
		return exec.Command(agentBin, "--mode=sidecar", "--vault-addr="+env.VaultAddr, "--role="+role, "--token-file="+tokenFile,
			"--annotations="+ann, "--secrets-dir="+filepath.Join(dir, "out"), "--state-dir="+filepath.Join(dir, "state"),
			"--health-addr=", "--metrics-addr="), nil
	}}
	vaultAgent := peer{name: "vault agent 1.21.0", files: files, start: func(dir string) (*exec.Cmd, error) {
		var h strings.Builder
		fmt.Fprintf(&h, "vault { address = %q }\n", env.VaultAddr)
		fmt.Fprintf(&h, "auto_auth {\n  method \"kubernetes\" {\n    mount_path = \"auth/kubernetes\"\n    config = { role = %q, token_path = %q }\n  }\n}\n", role, tokenFile)
		h.WriteString("template_config { static_secret_render_interval = \"5m\" }\n")
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(&h, "template {\n  destination = %q\n  perms = \"0400\"\n  contents = \"{{ with secret \\\"secret/data/bench/kv%d\\\" }}{{ .Data.data | toJSON }}{{ end }}\"\n}\n", filepath.Join(dir, "out", fmt.Sprintf("kv%d", i)), i)
		}
		for i := 1; i <= 2; i++ {
			fmt.Fprintf(&h, "template {\n  destination = %q\n  perms = \"0400\"\n  contents = \"{{ with secret \\\"database/creds/bench-agent\\\" }}{{ .Data | toJSON }}{{ end }}\"\n}\n", filepath.Join(dir, "out", fmt.Sprintf("db%d", i)))
		}
		conf := filepath.Join(dir, "agent.hcl")
		if err := os.WriteFile(conf, []byte(h.String()), 0o600); err != nil {
			return nil, err
		}
		c := exec.Command(vaultBin, "agent", "-config="+conf, "-log-level=warn")
		c.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
		return c, nil
	}}

	type result struct {
		times []time.Duration
		rss   int64
	}
	results := map[string]*result{}
	for _, p := range []peer{ramvault, vaultAgent} {
		r := &result{}
		results[p.name] = r
		for i := 0; i <= runs; i++ {
			keep := i == runs // the last run stays up for the idle RSS reading
			d, rss, err := once(p, work, keep, idle)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			if i > 0 || runs == 0 { // the first run warms caches for both alike
				r.times = append(r.times, d)
			}
			if keep {
				r.rss = rss
			}
			// ramvault-agent revokes its token and leases when stopped
			// (Vault Agent does not), and Vault drops the PostgreSQL roles
			// in the background: let that finish, or it lands in the next
			// measured start (back to back, the median rose by ~25 ms).
			time.Sleep(settle)
		}
		fmt.Fprintf(os.Stderr, "%s: done\n", p.name)
	}
	rv, va := results[ramvault.name], results[vaultAgent.name]
	med := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	fmt.Printf("\nagent benchmark: 5 secrets (3 KV v2, 2 PostgreSQL credentials), Kubernetes auth, %d cold starts each, same machine, same run\n\n", len(rv.times))
	fmt.Printf("| %-36s | %14s | %18s | %9s |\n", "metric", "ramvault-agent", "vault agent 1.21.0", "ratio")
	fmt.Printf("|%s|%s|%s|%s|\n", strings.Repeat("-", 38), strings.Repeat("-", 16), strings.Repeat("-", 20), strings.Repeat("-", 11))
	mr, mv := med(rv.times), med(va.times)
	fmt.Printf("| %-36s | %12.1fms | %16.1fms | %8.2fx |\n", "start → all files written (median)", ms(mr), ms(mv), float64(mr)/float64(mv))
	fmt.Printf("| %-36s | %11.1fMiB | %15.1fMiB | %8.2fx |\n", fmt.Sprintf("RSS after %s idle", idle), mib(rv.rss), mib(va.rss), float64(rv.rss)/float64(va.rss))
	fmt.Printf("\ngoals: time ≤ 0.25x of Vault Agent; RSS ≤ 12 MiB\n")
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func mib(b int64) float64        { return float64(b) / (1 << 20) }

// once starts an agent in a fresh tmpfs, waits for every file, and either
// stops it or lets it idle and reads its RSS.
func once(p peer, work string, keep bool, idle time.Duration) (time.Duration, int64, error) {
	dir, err := os.MkdirTemp(work, "run-")
	if err != nil {
		return 0, 0, err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("mount: %v %s", err, out)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	for _, d := range []string{"out", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return 0, 0, err
		}
	}
	cmd, err := p.start(dir)
	if err != nil {
		return 0, 0, err
	}
	logf, _ := os.Create(filepath.Join(work, strings.ReplaceAll(p.name, " ", "-")+".log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
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
			return 0, 0, fmt.Errorf("files not written within 60s; log:\n%s", b)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	if !keep {
		return took, 0, nil
	}
	time.Sleep(idle)
	return took, rss(cmd.Process.Pid), nil
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}
