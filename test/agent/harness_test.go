// Package agent tests ramvault-agent, run as its real binary outside a
// cluster, against the stack's real Vault 1.21.0 and PostgreSQL: logging in
// with real service-account tokens of the stack's apiserver.
package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ramvault/ramvault/test/stack"
)

// The test binary doubles as the app being reloaded: re-executed under the
// name "hupcounter" it counts SIGHUPs into a file.
func TestMain(m *testing.M) {
	if os.Getenv("RAMVAULT_TEST_HUPCOUNTER") != "" {
		hupCounter(os.Getenv("RAMVAULT_TEST_HUPCOUNTER"))
		return
	}
	os.Exit(m.Run())
}

func hupCounter(file string) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM)
	n := 0
	for s := range ch {
		if s == syscall.SIGTERM {
			return
		}
		n++
		_ = os.WriteFile(file, []byte(fmt.Sprint(n)), 0o644)
	}
}

// env is one test's world: a namespace and service account on the real
// apiserver, a Vault role for it, tmpfs directories, the agent binary.
type env struct {
	t       *testing.T
	stack   stack.Env
	cs      *kubernetes.Clientset
	vc      *vault.Client
	ns      string
	role    string
	dir     string // tmpfs root for this test
	agent   string // path of the built agent binary
	planted []string
}

var buildOnce struct {
	sync.Once
	path string
	err  error
}

func agentBinary(t *testing.T) string {
	buildOnce.Do(func() {
		root, err := stack.RepoRoot()
		if err != nil {
			buildOnce.err = err
			return
		}
		dir, err := os.MkdirTemp("", "ramvault-agent-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "ramvault-agent")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", buildOnce.path, "./cmd/ramvault-agent")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

func newEnv(t *testing.T, policy string) *env {
	t.Helper()
	se := stack.Require(t)
	cs, err := stack.KubeClient(se.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := se.VaultClient()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, stack: se, cs: cs, vc: vc, agent: agentBinary(t)}
	e.ns = stack.Namespace(t, cs, nil)
	e.role = "agent-" + e.ns
	cleanup, err := se.AppRole(context.Background(), e.role, e.ns, policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	e.dir = mountTmpfs(t, "8m")
	return e
}

// mountTmpfs mounts a fresh tmpfs of the given size for the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// saToken writes a fresh audience-bound token of the test's service account.
func (e *env) saToken(path string) {
	e.t.Helper()
	exp := int64(600)
	tr, err := e.cs.CoreV1().ServiceAccounts(e.ns).CreateToken(context.Background(), "app", &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{Audiences: []string{"vault"}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.plant(tr.Status.Token)
	if err := os.WriteFile(path, []byte(tr.Status.Token), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// plant records a value that must never appear in any log.
func (e *env) plant(v string) { e.planted = append(e.planted, v) }

// agentProc is a running agent.
type agentProc struct {
	cmd     *exec.Cmd
	log     *stack.LogBuffer
	secrets string
	state   string
	health  string
	metrics string
	done    chan error
}

// start runs the agent with annotations; extra flags appended.
func (e *env) start(mode string, annotations map[string]string, extra ...string) *agentProc {
	e.t.Helper()
	secrets, state := filepath.Join(e.dir, "secrets"), filepath.Join(e.dir, "state")
	for _, d := range []string{secrets, state} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			e.t.Fatal(err)
		}
	}
	tokenFile := filepath.Join(e.dir, "sa-token")
	if _, err := os.Stat(tokenFile); err != nil {
		e.saToken(tokenFile)
	}
	var ann strings.Builder
	for k, v := range annotations {
		fmt.Fprintf(&ann, "%s=%q\n", k, v)
	}
	annFile := filepath.Join(e.dir, "annotations")
	if err := os.WriteFile(annFile, []byte(ann.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
	port, mport := freePort(e.t), freePort(e.t)
	args := append([]string{"--mode=" + mode, "--vault-addr=" + e.stack.VaultAddr, "--role=" + e.role,
		"--token-file=" + tokenFile, "--annotations=" + annFile, "--secrets-dir=" + secrets, "--state-dir=" + state,
		fmt.Sprintf("--health-addr=127.0.0.1:%d", port), fmt.Sprintf("--metrics-addr=127.0.0.1:%d", mport), "--call-timeout=3s"}, extra...)
	p := &agentProc{log: &stack.LogBuffer{}, secrets: secrets, state: state, health: fmt.Sprintf("http://127.0.0.1:%d", port), metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", mport), done: make(chan error, 1)}
	p.cmd = exec.Command(e.agent, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	// The agent inherits no Vault settings from the test's environment.
	p.cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	e.t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
			}
		}
		e.assertNoPlanted(p.log.String())
		if e.t.Failed() {
			e.t.Logf("agent log:\n%s", p.log.String())
		}
	})
	return p
}

func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("agent exited with %v after SIGTERM\n%s", err, p.log.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not exit within 20s of SIGTERM")
	}
}

func (e *env) assertNoPlanted(logs string) {
	for _, v := range e.planted {
		if v != "" && strings.Contains(logs, v) {
			e.t.Errorf("a planted secret value or token (%d chars) appears in the agent's log", len(v))
		}
	}
}

func (p *agentProc) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.health + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("agent exited (%v) before ready:\n%s", err, p.log.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("agent not ready within %s:\n%s", timeout, p.log.String())
}

func (p *agentProc) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.secrets, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// counterServer counts POSTs, like an app's reload endpoint.
func counterServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost {
			n.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}
