package demo_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ramvault/ramvault/test/stack"
)

// Both tests use the example's fixed namespace (ramvault-example) and
// Vault role: they are in one package so that they never run at once.

// TestMakeDemo runs `make demo`'s program (test/cmd/demo, what the Makefile
// `go run`s once the stack is up) on the stack and checks what it prints:
// the Pod Ready with the agent, both secret files on tmpfs for the app's
// uid, the app's PostgreSQL login, two rotations each followed by a reload
// and a login, exit status 0 — and nowhere the KV value, a database user
// name Vault issued, or the root token.
func TestMakeDemo(t *testing.T) {
	env := stack.Require(t)
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "demo")
	build := exec.Command("go", "build", "-o", bin, "./test/cmd/demo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./test/cmd/demo: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	out := stdout.String()
	t.Logf("the demo ran %.1fs; it printed:\n%s", time.Since(start).Seconds(), out)
	if runErr != nil {
		t.Fatalf("the demo failed: %v\nstderr:\n%s", runErr, stderr.String())
	}

	for _, want := range []string{
		`(?m)^demo: configuring Vault: KV secret secret/ramvault-example/config`,
		`(?m)^demo: Pod example-app-\S+ Ready in \d+\.\ds`,
		`(?m)^demo: the in-cluster webhook added init container\(s\) (\S+, )*ramvault-agent\b`,
		`(?m)^    /var/run/secrets/ramvault/config\s+tmpfs\s+mode 0400 uid 10001, [1-9]\d* bytes$`,
		`(?m)^    /var/run/secrets/ramvault/db\s+tmpfs\s+mode 0400 uid 10001, [1-9]\d* bytes$`,
		`(?m)^demo: PostgreSQL login with the file's credentials: ok \(credentials [0-9a-f]+…\)$`,
		`(?m)^demo: the credentials rotated before their max TTL; the app was reloaded each time and logged in [1-9]\d* times in all\.$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("the demo's output has no line matching %s", want)
		}
	}
	// Each rotation: a reload by SIGHUP, a new credentials generation and a
	// login that works.
	reloads := regexp.MustCompile(`(?m)^demo: +\d+\.\ds  reload #(\d+) by SIGHUP: credentials generation (\d+) \([0-9a-f]+…\), PostgreSQL login (.*)$`).FindAllStringSubmatch(out, -1)
	lastReload, lastGen := 0, 0
	for _, m := range reloads {
		n, _ := strconv.Atoi(m[1])
		g, _ := strconv.Atoi(m[2])
		if n < lastReload || g < lastGen {
			t.Errorf("reload %d, generation %d after reload %d, generation %d", n, g, lastReload, lastGen)
		}
		if m[3] != "ok" {
			t.Errorf("after reload #%d the app's login: %s", n, m[3])
		}
		lastReload, lastGen = n, g
	}
	if lastReload < 2 || lastGen < 3 {
		t.Errorf("the demo shows %d reload line(s), the last reload #%d and generation %d; want reload #2 and generation 3 at least", len(reloads), lastReload, lastGen)
	}

	// No value: the KV secret the demo wrote, the root token, the database
	// users Vault created for the demo's role (their names are credentials too).
	secrets := map[string]string{"the KV secret's api_key": exampleAPIKey(t, env), "the Vault root token": env.VaultToken}
	for i, u := range vaultDBUsers(t, env, "ramvault") {
		secrets[fmt.Sprintf("database user #%d", i+1)] = u
	}
	if len(secrets) < 3 {
		t.Errorf("PostgreSQL has no user Vault issued for the demo's role; the leak check below would not see one")
	}
	all := out + stderr.String()
	for what, v := range secrets {
		if len(v) < 6 {
			t.Fatalf("%s is %d characters: not a useful leak check", what, len(v))
		}
		if strings.Contains(all, v) {
			t.Errorf("the demo printed %s", what)
		}
	}
}

// exampleAPIKey is the value of the example's KV secret in Vault.
func exampleAPIKey(t *testing.T, env stack.Env) string {
	t.Helper()
	vc, err := env.VaultClient()
	if err != nil {
		t.Fatal(err)
	}
	kv, err := vc.KVv2("secret").Get(context.Background(), "ramvault-example/config")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(kv.Data["api_key"])
}

// vaultDBUsers lists the PostgreSQL roles Vault created for database roles
// whose name contains role (Vault's default user name template:
// v-<auth display name>-<role>-<random>-<time>).
func vaultDBUsers(t *testing.T, env stack.Env, role string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, env.PGURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%' AND strpos(rolname, $1) > 0`, role)
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return users
}

// helmPath is the README's "With Helm" path: the shell commands between its
// markers.
func helmPath(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- helm-path:begin -->")
	block, _, ok2 := strings.Cut(rest, "<!-- helm-path:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no <!-- helm-path:begin --> … <!-- helm-path:end --> block")
	}
	block = strings.TrimSpace(block)
	body, ok := strings.CutPrefix(block, "```sh\n")
	body, ok2 = strings.CutSuffix(body, "```")
	if !ok || !ok2 {
		t.Fatalf("README.md's helm-path block is not one ```sh code block:\n%s", block)
	}
	return body
}

// TestReadmeHelmPath runs the README's Helm path, exactly its commands, on
// the running stack: ramvault installed with `helm install` as a release of
// its own, the example app injected by it, `kubectl ramvault status` on the
// example, `helm uninstall`. The status must list the example's two secrets
// (the KV secret and the database credentials) by their Vault paths and
// kinds; after the path, nothing of the release is left.
func TestReadmeHelmPath(t *testing.T) {
	env := stack.Require(t)
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := helmPath(t, root)
	const release, relNS, appNS = "rv-helm", "rv-helm", "ramvault-example"
	for _, want := range []string{"helm install " + release, "-n " + relNS, "kubectl ramvault status deploy/example-app -n " + appNS, "helm uninstall " + release} {
		if !strings.Contains(script, want) {
			t.Fatalf("the README's Helm path has no %q (this test cleans up by those names):\n%s", want, script)
		}
	}
	// The path starts as a user's does after `make dev-up`, which writes
	// .dev/env; a stack the tests started has not written it.
	devEnv := filepath.Join(root, ".dev", "env")
	if _, err := os.Stat(devEnv); os.IsNotExist(err) {
		if err := os.MkdirAll(filepath.Dir(devEnv), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(devEnv, []byte(env.Shell()), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(devEnv) })
	}
	home := t.TempDir()
	kubectl := func(args ...string) {
		_ = exec.Command(filepath.Join(root, "bin", "kubectl"), append([]string{"--kubeconfig", env.Kubeconfig}, args...)...).Run()
	}
	t.Cleanup(func() { // what the path removes itself, if it stopped before
		_ = exec.Command(filepath.Join(root, "bin", "helm"), "uninstall", release, "-n", relNS, "--wait", "--kubeconfig", env.Kubeconfig).Run()
		kubectl("delete", "namespace", appNS, relNS, "--ignore-not-found", "--wait=false")
	})

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -euo pipefail -x\n"+script)
	cmd.Dir = root
	// Helm's cache, config and data of its own; the rest as a user's shell.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("the README's Helm path ran %.1fs; stdout:\n%s", time.Since(start).Seconds(), stdout.String())
	if runErr != nil {
		t.Fatalf("the README's Helm path failed: %v\nstderr (with the commands, set -x):\n%s", runErr, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		`(?m)^Pod ramvault-example/example-app-\S+: agent sidecar, version \S+, `,
		`(?m)^SECRET\s+PATH\s+KIND\s+FETCHED\s+EXPIRES`,
		`(?m)^config\s+secret/data/ramvault-example/config\s+kv-v2\s`,
		`(?m)^db\s+database/creds/ramvault-example\s+leased\s`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("`kubectl ramvault status` printed no line matching %s", want)
		}
	}
	if v := exampleAPIKey(t, env); len(v) < 6 || strings.Contains(out+stderr.String(), v) {
		t.Errorf("the README's Helm path printed the example's KV secret (or it is too short to check: %d characters)", len(v))
	}
	// helm uninstall and the namespaces' deletion: nothing of the release left
	// (its cluster-wide objects are named after it).
	for _, kind := range []string{"mutatingwebhookconfigurations", "clusterroles", "clusterrolebindings"} {
		b, err := exec.Command(filepath.Join(root, "bin", "kubectl"), "--kubeconfig", env.Kubeconfig, "get", kind, "-o", "name").Output()
		if err != nil {
			t.Fatalf("kubectl get %s: %v", kind, err)
		}
		for _, l := range strings.Fields(string(b)) {
			if strings.Contains(l, release) {
				t.Errorf("after the path, %s is left", l)
			}
		}
	}
}
