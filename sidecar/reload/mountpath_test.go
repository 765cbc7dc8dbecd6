package reload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/ramvault/ramvault/pkg/spec"
)

// fakeProc is a /proc tree: per pid its status, stat, mountinfo and mount
// namespace link.
type fakeProc struct {
	t   *testing.T
	dir string
}

func newFakeProc(t *testing.T) *fakeProc { return &fakeProc{t: t, dir: t.TempDir()} }

// mountLine is a mountinfo line of a mount point on device dev.
func mountLine(id int, dev, point string) string {
	return fmt.Sprintf("%d 1 %s / %s ro,relatime shared:1 - tmpfs tmpfs rw,size=1024k", id, dev, point)
}

func (p *fakeProc) add(name string, ppid int, ns string, start int, mounts ...string) {
	p.t.Helper()
	d := filepath.Join(p.dir, name)
	if err := os.MkdirAll(filepath.Join(d, "ns"), 0o755); err != nil {
		p.t.Fatal(err)
	}
	lines := []string{mountLine(20, "0:30", "/")}
	for i, m := range mounts {
		dev, point, _ := strings.Cut(m, " ")
		lines = append(lines, mountLine(30+i, dev, point))
	}
	files := map[string]string{
		"status":    fmt.Sprintf("Name:\tproc%s\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t%s\nPid:\t%s\nPPid:\t%d\n", name, name, name, ppid),
		"stat":      fmt.Sprintf("%s (a (tricky) name) S %d 1 1 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 %d 1000 10\n", name, ppid, start),
		"mountinfo": strings.Join(lines, "\n") + "\n",
	}
	for f, c := range files {
		if err := os.WriteFile(filepath.Join(d, f), []byte(c), 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
	if ns != "" {
		if err := os.Symlink(ns, filepath.Join(d, "ns", "mnt")); err != nil {
			p.t.Fatal(err)
		}
	}
}

func signalReloader(t *testing.T, procDir, mountPath string) (*Reloader, *[]int, *[]error) {
	var killed []int
	var results []error
	r := New(Options{SignalMountPath: mountPath, SecretsDir: spec.AgentSecretsDir, Observe: func(_ string, err error) { results = append(results, err) }})
	r.procDir, r.self = procDir, 7
	r.kill = func(pid int, sig syscall.Signal) error {
		if sig != syscall.SIGHUP {
			t.Errorf("signal %v, want SIGHUP", sig)
		}
		killed = append(killed, pid)
		return nil
	}
	return r, &killed, &results
}

// The main process of each container that mounts the secrets volume at the
// mount path is signalled once per reload: not the pause process (PID 1),
// not the agent, not a child (PPid not 0), not a process started later in
// the same container (kubectl exec), and not a container that mounts
// another volume at the same path.
func TestASignalByMountPathReachesTheTargetsMainProcessesOnly(t *testing.T) {
	const vol, other = "0:55", "0:77"
	p := newFakeProc(t)
	p.add("self", 0, "mnt:[7]", 100, vol+" "+spec.AgentSecretsDir, "0:56 /ramvault/state")
	p.add("1", 0, "mnt:[1]", 1, vol+" /vault/secrets")          // pause: excluded whatever it mounts
	p.add("7", 0, "mnt:[7]", 100, vol+" "+spec.AgentSecretsDir) // the agent
	p.add("10", 0, "mnt:[100]", 500, vol+" /vault/secrets", vol+" /etc/tls")
	p.add("11", 10, "mnt:[100]", 510, vol+" /vault/secrets")  // a worker of 10
	p.add("12", 0, "mnt:[100]", 900, vol+" /vault/secrets")   // kubectl exec into 10's container
	p.add("20", 0, "mnt:[200]", 400, other+" /vault/secrets") // another container, another volume
	p.add("30", 0, "mnt:[300]", 600, vol+" /vault/secrets")   // a second target container
	p.add("40", 0, "mnt:[400]", 300, "0:88 /data")            // a container without the volume
	p.add("50", 0, "", 700, vol+" /vault/secrets/sub")        // the volume elsewhere only
	r, killed, results := signalReloader(t, p.dir, "/vault/secrets")

	sig := spec.Reload{Kind: spec.ReloadSignal, Signal: syscall.SIGHUP}
	r.Reload(context.Background(), []spec.Reload{sig, sig})
	slices.Sort(*killed)
	if !slices.Equal(*killed, []int{10, 30}) {
		t.Errorf("signalled %v, want [10 30] (the two targets' main processes), once each", *killed)
	}
	if len(*results) != 1 || (*results)[0] != nil {
		t.Errorf("results %v, want one success", *results)
	}
}

// No process mounting the path is a failed reload that names it.
func TestASignalByMountPathWithNoTargetFails(t *testing.T) {
	p := newFakeProc(t)
	p.add("self", 0, "mnt:[7]", 100, "0:55 "+spec.AgentSecretsDir)
	p.add("7", 0, "mnt:[7]", 100, "0:55 "+spec.AgentSecretsDir)
	p.add("20", 0, "mnt:[200]", 400, "0:77 /vault/secrets")
	r, killed, results := signalReloader(t, p.dir, "/vault/secrets")
	r.Reload(context.Background(), []spec.Reload{{Kind: spec.ReloadSignal, Signal: syscall.SIGHUP}})
	if len(*killed) != 0 {
		t.Errorf("signalled %v", *killed)
	}
	if len(*results) != 1 || (*results)[0] == nil || !strings.Contains((*results)[0].Error(), "/vault/secrets") {
		t.Errorf("results %v, want one failure naming /vault/secrets", *results)
	}
}

// A mount point with a space is escaped in mountinfo (\040).
func TestMountinfoEscapes(t *testing.T) {
	p := newFakeProc(t)
	p.add("self", 0, "mnt:[7]", 100, `0:55 /ramvault/secrets`)
	p.add("10", 0, "mnt:[100]", 500, `0:55 /my\040secrets`)
	r, killed, _ := signalReloader(t, p.dir, "/my secrets")
	r.Reload(context.Background(), []spec.Reload{{Kind: spec.ReloadSignal, Signal: syscall.SIGHUP}})
	if !slices.Equal(*killed, []int{10}) {
		t.Errorf("signalled %v, want [10]", *killed)
	}
}
