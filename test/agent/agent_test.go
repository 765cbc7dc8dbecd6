package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/test/stack"
)

type dbCreds struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (e *env) pgLogin(c dbCreds) error {
	url := fmt.Sprintf("postgres://%s:%s@%s:%s/postgres?sslmode=disable&connect_timeout=5", c.Username, c.Password, e.stack.PGHost, e.stack.PGPort)
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		return err
	}
	return conn.Close(context.Background())
}

func (e *env) dbRole(ttl, maxTTL string) string {
	e.t.Helper()
	return stack.DBRoleFor(e.t, e.stack, e.role, ttl, maxTTL)
}

func readCreds(t *testing.T, p *agentProc) dbCreds {
	t.Helper()
	var c dbCreds
	if err := json.Unmarshal([]byte(p.read(t, "db")), &c); err != nil || c.Username == "" {
		t.Fatalf("db file is not the credentials JSON: %v", err)
	}
	return c
}

// Dynamic database credentials: written and usable; rotated before the max
// TTL; the app reloaded by signal (a real process counting SIGHUPs) and by
// HTTP (a real server counting POSTs); the new credentials usable; on SIGTERM
// the leases are revoked and the old credentials no longer log in.
func TestDatabaseCredentialsRotateReloadAndAreRevokedOnShutdown(t *testing.T) {
	e := newEnv(t, `path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }`)
	path := e.dbRole("4s", "10s")

	// The app processes: a SIGHUP counter found by name, an HTTP endpoint.
	counterBin := filepath.Join(t.TempDir(), "hupcounter")
	self, _ := os.Executable()
	if out, err := exec.Command("cp", self, counterBin).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	hupFile := filepath.Join(t.TempDir(), "hups")
	app := exec.Command(counterBin)
	app.Env = append(os.Environ(), "RAMVAULT_TEST_HUPCOUNTER="+hupFile)
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Process.Kill(); _ = app.Wait() })
	srv, posts := counterServer(t)

	p := e.start("sidecar", map[string]string{
		"ramvault.io/secret-db":  path,
		"ramvault.io/reload":     "signal:SIGHUP",
		"ramvault.io/secret-db2": path,
		"ramvault.io/reload-db2": "http:" + srv.URL + "/reload",
	}, "--signal-process=hupcounter")
	p.waitReady(t, 30*time.Second)
	first := readCreds(t, p)
	e.plant(first.Password)
	if err := e.pgLogin(first); err != nil {
		t.Fatalf("the written credentials do not log in: %v", err)
	}
	fi, err := os.Stat(filepath.Join(p.secrets, "db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o400 {
		t.Errorf("file mode %v, want 0400", fi.Mode().Perm())
	}

	// Max TTL 10s: new credentials must arrive before the first ones end.
	var rotated dbCreds
	stack.WaitFor(t, 12*time.Second, "rotated credentials", func() bool {
		rotated = readCreds(t, p)
		return rotated.Username != first.Username
	})
	e.plant(rotated.Password)
	if err := e.pgLogin(rotated); err != nil {
		t.Fatalf("the rotated credentials do not log in: %v", err)
	}
	stack.WaitFor(t, 5*time.Second, "a SIGHUP to the app", func() bool {
		b, _ := os.ReadFile(hupFile)
		n, _ := strconv.Atoi(string(b))
		return n >= 1
	})
	stack.WaitFor(t, 12*time.Second, "a reload POST", func() bool { return posts.Load() >= 1 })
	db2 := dbCreds{}
	if err := json.Unmarshal([]byte(p.read(t, "db2")), &db2); err != nil {
		t.Fatal(err)
	}
	e.plant(db2.Password)

	cur := readCreds(t, p)
	p.stop(t)
	for _, c := range []dbCreds{cur, db2} {
		if err := e.pgLogin(c); err == nil {
			t.Errorf("credentials of %s still log in after the agent's shutdown revoked their lease", c.Username)
		}
	}
	if _, err := os.Stat(filepath.Join(p.state, "agent-state.json")); !os.IsNotExist(err) {
		t.Errorf("agent state left behind after shutdown: %v", err)
	}
}

// KV v2: an update reaches the file within the refresh interval; nothing is
// rewritten while the content is unchanged. KV v1 is detected too.
func TestKVUpdatesArePickedUpAndUnchangedContentIsNotRewritten(t *testing.T) {
	e := newEnv(t, `path "secret/data/*" { capabilities = ["read"] }
path "kv1/*" { capabilities = ["read"] }`)
	ctx := context.Background()
	name := "agent-kv-" + e.ns
	if _, err := e.vc.KVv2("secret").Put(ctx, name, map[string]any{"password": "first-" + e.ns}); err != nil {
		t.Fatal(err)
	}
	e.plant("first-" + e.ns)
	e.plant("second-" + e.ns)
	e.plant("v1-" + e.ns)
	if err := e.vc.Sys().Mount("kv1", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil && !strings.Contains(err.Error(), "path is already in use") {
		t.Fatal(err)
	}
	if _, err := e.vc.Logical().Write("kv1/"+name, map[string]any{"token": "v1-" + e.ns}); err != nil {
		t.Fatal(err)
	}
	p := e.start("sidecar", map[string]string{
		"ramvault.io/secret-app":  "secret/" + name, // v2 without data/: detected like the Vault CLI does
		"ramvault.io/key-app":     "password",
		"ramvault.io/refresh-app": "1s",
		"ramvault.io/secret-old":  "kv1/" + name,
		"ramvault.io/format-old":  "dotenv",
	})
	p.waitReady(t, 30*time.Second)
	if got := p.read(t, "app"); got != "first-"+e.ns {
		t.Fatalf("raw file holds a different value (%d bytes)", len(got))
	}
	if got := p.read(t, "old"); got != fmt.Sprintf("TOKEN=%q\n", "v1-"+e.ns) {
		t.Fatalf("KV v1 dotenv file is not as rendered (%d bytes)", len(got))
	}
	before, _ := os.Stat(filepath.Join(p.secrets, "app"))
	time.Sleep(3 * time.Second) // three refresh intervals, nothing changed
	after, _ := os.Stat(filepath.Join(p.secrets, "app"))
	if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Error("the file was rewritten although its content did not change")
	}
	if _, err := e.vc.KVv2("secret").Put(ctx, name, map[string]any{"password": "second-" + e.ns}); err != nil {
		t.Fatal(err)
	}
	stack.WaitFor(t, 5*time.Second, "the KV update in the file", func() bool { return p.read(t, "app") == "second-"+e.ns })
	var status struct {
		Ready   bool `json:"ready"`
		Secrets map[string]struct {
			Version string `json:"version"`
		} `json:"secrets"`
	}
	if err := json.Unmarshal([]byte(p.read(t, spec.StatusFile)), &status); err != nil {
		t.Fatal(err)
	}
	if !status.Ready || status.Secrets["app"].Version != "2" {
		t.Errorf("status file: %+v; want ready and app at version 2", status)
	}
	if strings.Contains(p.read(t, spec.StatusFile), "second-") {
		t.Error("the status file holds a secret value")
	}
	resp, err := http.Get(p.metrics)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ramvault_agent_file_writes_total{secret="app"} 2`, `ramvault_agent_fetches_total{secret="app",result="success"}`,
		`ramvault_agent_logins_total{result="success"} 1`, "ramvault_agent_degraded 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	e.assertNoPlanted(string(body))
}

// Init mode writes everything and exits 0; the sidecar then continues with
// the same token and leases: one login per Pod, even after a crash.
func TestInitHandsTokenAndLeasesToTheSidecar(t *testing.T) {
	e := newEnv(t, `path "database/creds/*" { capabilities = ["read"] }`)
	path := e.dbRole("1m", "5m")
	ann := map[string]string{"ramvault.io/secret-db": path}
	initp := e.start("init", ann)
	select {
	case err := <-initp.done:
		if err != nil {
			t.Fatalf("init exited %v:\n%s", err, initp.log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("init did not finish")
	}
	first := readCreds(t, initp)
	e.plant(first.Password)
	side := e.start("sidecar", ann)
	side.waitReady(t, 20*time.Second)
	if strings.Contains(side.log.String(), "logged in to vault") {
		t.Error("the sidecar logged in again instead of reusing the init container's token")
	}
	if got := readCreds(t, side); got.Username != first.Username {
		t.Error("the sidecar fetched new credentials instead of keeping the init container's lease")
	}
	// A crash (SIGKILL) and restart reuses the state too.
	_ = side.cmd.Process.Kill()
	<-side.done
	again := e.start("sidecar", ann)
	again.waitReady(t, 20*time.Second)
	if strings.Contains(again.log.String(), "logged in to vault") {
		t.Error("a restarted sidecar logged in again")
	}
	again.stop(t)
	// This policy cannot revoke leases one by one: they end with the token,
	// which Vault revokes in the background.
	stack.WaitFor(t, 15*time.Second, "the credentials to be refused after the token's revocation", func() bool { return e.pgLogin(first) != nil })
}

// Vault paused (SIGSTOP) for 20 s mid-lease: the files stay, the agent
// reports degraded, and it recovers when Vault returns.
func TestVaultOutageKeepsFilesAndRecovers(t *testing.T) {
	e := newEnv(t, `path "database/creds/*" { capabilities = ["read"] }`)
	path := e.dbRole("8s", "1h")
	p := e.start("sidecar", map[string]string{"ramvault.io/secret-db": path})
	p.waitReady(t, 30*time.Second)
	c := readCreds(t, p)
	e.plant(c.Password)
	pid := vaultPID(t, e)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	time.Sleep(20 * time.Second)
	if got := readCreds(t, p); got.Username != c.Username {
		t.Fatal("the credentials file changed while Vault was unreachable")
	}
	if !strings.Contains(p.log.String(), "retrying") {
		t.Error("no retry logged while Vault was paused")
	}
	resume()
	stack.WaitFor(t, 40*time.Second, "recovered credentials that log in", func() bool {
		got := readCreds(t, p)
		e.plant(got.Password)
		return e.pgLogin(got) == nil
	})
}

func vaultPID(t *testing.T, e *env) int {
	b, err := os.ReadFile(filepath.Join(e.stack.StateDir, "run", "vault.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// The kubelet rotates the projected token in place. Here the first token
// is bound to a Secret that is then deleted (so it can no longer log in), the
// file gets a new token, and the agent's Vault token is revoked: the agent
// must log in again with the file's new content and keep the secret fresh.
func TestTokenFileRotationIsUsedWhenTheAgentLogsInAgain(t *testing.T) {
	e := newEnv(t, `path "secret/data/*" { capabilities = ["read"] }`)
	ctx := context.Background()
	name := "agent-rot-" + e.ns
	e.plant("one-" + e.ns)
	e.plant("two-" + e.ns)
	if _, err := e.vc.KVv2("secret").Put(ctx, name, map[string]any{"k": "one-" + e.ns}); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(e.dir, "sa-token")
	e.boundToken(tokenFile, "bind-1")
	p := e.start("sidecar", map[string]string{"ramvault.io/secret-a": "secret/data/" + name, "ramvault.io/key-a": "k", "ramvault.io/refresh-a": "1s"})
	p.waitReady(t, 30*time.Second)

	e.boundToken(tokenFile, "bind-2")
	if err := e.cs.CoreV1().Secrets(e.ns).Delete(ctx, "bind-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile(filepath.Join(p.state, "agent-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var saved struct{ Token string }
	if err := json.Unmarshal(st, &saved); err != nil || saved.Token == "" {
		t.Fatalf("no token in the agent state: %v", err)
	}
	e.plant(saved.Token)
	if _, err := e.vc.Logical().Write("auth/token/revoke", map[string]any{"token": saved.Token}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.vc.KVv2("secret").Put(ctx, name, map[string]any{"k": "two-" + e.ns}); err != nil {
		t.Fatal(err)
	}
	stack.WaitFor(t, 20*time.Second, "the update after a new login", func() bool { return p.read(t, "a") == "two-"+e.ns })
	if n := strings.Count(p.log.String(), "logged in to vault"); n != 2 {
		t.Errorf("%d logins, want 2 (start, then after the revocation)", n)
	}
}

// boundToken writes a token bound to a new Secret named bind; deleting the
// Secret invalidates the token.
func (e *env) boundToken(path, bind string) {
	e.t.Helper()
	ctx := context.Background()
	sec, err := e.cs.CoreV1().Secrets(e.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: bind}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	exp := int64(600)
	tr, err := e.cs.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, "app", &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		Audiences: []string{"vault"}, ExpirationSeconds: &exp,
		BoundObjectRef: &authv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: bind, UID: sec.UID}}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.plant(tr.Status.Token)
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(tr.Status.Token), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		e.t.Fatal(err)
	}
}

// PKI issue (method write with parameters) writes certificate, key and chain
// through a template with the PEM helpers.
func TestPKICertificateIsIssuedAndRendered(t *testing.T) {
	e := newEnv(t, `path "pki-agent/issue/*" { capabilities = ["update"] }`)
	if err := e.vc.Sys().Mount("pki-agent", &vault.MountInput{Type: "pki", Config: vault.MountConfigInput{MaxLeaseTTL: "24h"}}); err != nil && !strings.Contains(err.Error(), "already in use") {
		t.Fatal(err)
	}
	if _, err := e.vc.Logical().Write("pki-agent/root/generate/internal", map[string]any{"common_name": "ramvault test CA", "ttl": "24h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.vc.Logical().Write("pki-agent/roles/web", map[string]any{"allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	p := e.start("init", map[string]string{
		"ramvault.io/secret-tls":   "pki-agent/issue/web",
		"ramvault.io/method-tls":   "write",
		"ramvault.io/params-tls":   "common_name=app.example.com,ttl=30m",
		"ramvault.io/template-tls": `{{ pemChain .Data }}{{ pemKey .Data }}`,
	})
	if err := <-p.done; err != nil {
		t.Fatalf("init: %v\n%s", err, p.log.String())
	}
	pem := p.read(t, "tls")
	if strings.Count(pem, "BEGIN CERTIFICATE") != 2 || !strings.Contains(pem, "PRIVATE KEY") {
		t.Fatalf("tls file lacks certificate, chain or key (%d bytes)", len(pem))
	}
	// The key's first base64 line must never reach a log.
	keyBody := pem[strings.Index(pem, "PRIVATE KEY-----")+len("PRIVATE KEY-----"):]
	e.plant(strings.Fields(keyBody)[0])
}

// Bad configuration fails fast with a message naming what to change.
func TestInitFailsClearlyWhenVaultRefuses(t *testing.T) {
	e := newEnv(t, `path "secret/data/nothing" { capabilities = ["read"] }`)
	p := e.start("init", map[string]string{"ramvault.io/secret-x": "secret/data/forbidden-" + e.ns}, "--init-deadline=3s")
	select {
	case err := <-p.done:
		if err == nil {
			t.Fatal("init succeeded without access")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("init did not give up at its deadline")
	}
	if log := p.log.String(); !strings.Contains(log, "secrets not written within 3s") || !strings.Contains(log, "permission denied") {
		t.Errorf("the failure does not say what went wrong:\n%s", log)
	}
}

// A Vault token that reaches its max TTL cannot be renewed: the agent logs in
// again before it ends and re-issues the leased secrets made with it (they
// end with the old token), so the files stay valid throughout.
func TestTokenAtItsMaxTTLLeadsToANewLoginAndFreshLeases(t *testing.T) {
	e := newEnv(t, `path "database/creds/*" { capabilities = ["read"] }`)
	if _, err := e.stack.AppRole(context.Background(), e.role, e.ns, `path "database/creds/*" { capabilities = ["read"] }`,
		map[string]any{"token_ttl": "3s", "token_max_ttl": "6s"}); err != nil {
		t.Fatal(err)
	}
	path := e.dbRole("1m", "10m")
	p := e.start("sidecar", map[string]string{"ramvault.io/secret-db": path})
	p.waitReady(t, 30*time.Second)
	first := readCreds(t, p)
	e.plant(first.Password)
	stack.WaitFor(t, 15*time.Second, "a second login", func() bool { return strings.Count(p.log.String(), "logged in to vault") >= 2 })
	var second dbCreds
	stack.WaitFor(t, 10*time.Second, "credentials issued under the new token", func() bool {
		second = readCreds(t, p)
		return second.Username != first.Username
	})
	e.plant(second.Password)
	time.Sleep(4 * time.Second) // past the first token's max TTL
	if err := e.pgLogin(readCreds(t, p)); err != nil {
		t.Fatalf("the current credentials do not log in after the first token ended: %v", err)
	}
}
