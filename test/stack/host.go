package stack

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupRoots are where containerd puts the containers of the k8s.io
// namespace (cgroup v1 hierarchies and the unified one, whichever exist).
func cgroupDirs() []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
	if fi, err := os.Stat("/sys/fs/cgroup/k8s.io"); err == nil && fi.IsDir() {
		dirs = append(dirs, "/sys/fs/cgroup/k8s.io")
	}
	return dirs
}

// setupNetwork creates the pod bridge with the gateway address (so Vault, the
// apiserver and PostgreSQL can bind to it before the first Pod exists) and
// one NAT rule in a chain of ours: Pods reach the `kubernetes` Service IP at
// the apiserver. No kube-proxy: the apiserver resolves webhook Services to
// endpoint IPs itself (--enable-aggregator-routing).
func setupNetwork(ctx context.Context) error {
	if _, err := os.Stat("/sys/class/net/" + BridgeName); err != nil {
		if _, err := run(ctx, "ip", "link", "add", BridgeName, "type", "bridge"); err != nil {
			return err
		}
	}
	if out, _ := run(ctx, "ip", "-4", "-o", "addr", "show", "dev", BridgeName); !strings.Contains(out, Gateway+"/") {
		if _, err := run(ctx, "ip", "addr", "add", Gateway+"/24", "dev", BridgeName); err != nil {
			return err
		}
	}
	if _, err := run(ctx, "ip", "link", "set", BridgeName, "up"); err != nil {
		return err
	}
	// Binding to the gateway works only once the address is no longer tentative.
	for i := 0; i < 40; i++ {
		out, _ := run(ctx, "ip", "-4", "-o", "addr", "show", "dev", BridgeName)
		if !strings.Contains(out, "tentative") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ipt := func(args ...string) error {
		_, err := run(ctx, append([]string{"iptables", "-w", "-t", "nat"}, args...)...)
		return err
	}
	if ipt("-L", iptablesChain, "-n") != nil {
		if err := ipt("-N", iptablesChain); err != nil {
			return err
		}
	}
	if err := ipt("-F", iptablesChain); err != nil {
		return err
	}
	if err := ipt("-A", iptablesChain, "-d", KubernetesSvcIP, "-p", "tcp", "--dport", "443",
		"-j", "DNAT", "--to-destination", fmt.Sprintf("%s:%d", Gateway, APIServerPort)); err != nil {
		return err
	}
	if ipt("-C", "PREROUTING", "-j", iptablesChain) != nil {
		return ipt("-I", "PREROUTING", "-j", iptablesChain)
	}
	return nil
}

// cleanHost undoes everything the stack does to the host, whether a clean
// Down or a run that was killed left it: processes, container cgroups,
// mounts, pod network namespaces, the bridge, the NAT chain.
func cleanHost(ctx context.Context, root string) error {
	var errs []string
	if err := stopAll(root, 5*time.Second); err != nil {
		errs = append(errs, err.Error())
	}
	killCgroups()
	for _, ns := range ourNetns(ctx) {
		_ = syscall.Unmount(ns, syscall.MNT_DETACH)
		if err := os.Remove(ns); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err.Error())
		}
	}
	for _, m := range mountsUnder(root) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
			errs = append(errs, fmt.Sprintf("unmount %s: %v", m, err))
		}
	}
	if _, err := os.Stat("/sys/class/net/" + BridgeName); err == nil {
		if _, err := run(ctx, "ip", "link", "del", BridgeName); err != nil {
			errs = append(errs, err.Error())
		}
	}
	ipt := func(args ...string) error {
		_, err := run(ctx, append([]string{"iptables", "-w", "-t", "nat"}, args...)...)
		return err
	}
	for ipt("-C", "PREROUTING", "-j", iptablesChain) == nil {
		if err := ipt("-D", "PREROUTING", "-j", iptablesChain); err != nil {
			errs = append(errs, err.Error())
			break
		}
	}
	if ipt("-L", iptablesChain, "-n") == nil {
		_ = ipt("-F", iptablesChain)
		if err := ipt("-X", iptablesChain); err != nil {
			errs = append(errs, err.Error())
		}
	}
	removeCgroups()
	// CNI's result cache for our network lives outside the state root.
	// (named <network>-<container>-<ifname>; containerd adds a loopback network)
	for _, pattern := range []string{cniNetwork + "-*", "cni-loopback-*"} {
		old, _ := filepath.Glob("/var/lib/cni/results/" + pattern)
		for _, f := range old {
			_ = os.Remove(f)
		}
	}
	// Directories the kubelet, containerd and CNI create at fixed host paths:
	// removed when empty (rmdir refuses otherwise), with the kubelet's stale
	// device-plugin socket.
	_ = os.Remove("/var/lib/kubelet/device-plugins/kubelet.sock")
	// Shim sockets of ours; only when no containerd shim runs at all (the
	// host has no other containerd then).
	if !anyProcessNamed("containerd-shim") {
		socks, _ := filepath.Glob("/run/containerd/s/*")
		for _, f := range socks {
			_ = os.Remove(f)
		}
	}
	for _, d := range []string{"/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/run/containerd/s", "/run/containerd", "/var/lib/cni/results", "/var/lib/cni"} {
		_ = syscall.Rmdir(d)
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleaning the host: %s", strings.Join(errs, "; "))
	}
	return nil
}

// killCgroups SIGKILLs every process left in the containers' cgroups (a
// killed containerd shim leaves its container running).
func killCgroups() {
	for i := 0; i < 20; i++ {
		found := false
		for _, d := range cgroupDirs() {
			_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
				if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						found = true
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				return nil
			})
		}
		if !found {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeCgroups removes the containers' (now empty) cgroup directories.
func removeCgroups() {
	for _, d := range cgroupDirs() {
		var dirs []string
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		for _, p := range dirs {
			_ = syscall.Rmdir(p)
		}
	}
}

// mountsUnder lists mount points at or below root, deepest first.
func mountsUnder(root string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == root || strings.HasPrefix(mp, root+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ourNetns lists the pod network namespaces (/run/netns/cni-*) whose
// interfaces carry an address of our pod network.
func ourNetns(ctx context.Context) []string {
	names, _ := filepath.Glob("/run/netns/cni-*")
	var out []string
	for _, p := range names {
		o, err := run(ctx, "ip", "-n", filepath.Base(p), "-4", "-o", "addr")
		if err != nil || strings.Contains(o, " 10.88.77.") || !strings.Contains(o, "inet ") {
			// unreadable or empty namespaces of CNI are leftovers too
			out = append(out, p)
		}
	}
	return out
}

// Leftovers describes anything of the stack still on the host; empty means
// the host is clean.
func Leftovers(cfg Config) ([]string, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	var out []string
	for _, pid := range alive(ourProcesses(cfg.Dir)) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("process %d: %s", pid, strings.ReplaceAll(string(b), "\x00", " ")))
	}
	for _, m := range mountsUnder(cfg.Dir) {
		out = append(out, "mount "+m)
	}
	for _, ns := range ourNetns(ctx) {
		out = append(out, "network namespace "+ns)
	}
	if _, err := os.Stat("/sys/class/net/" + BridgeName); err == nil {
		out = append(out, "bridge "+BridgeName)
	}
	if o, _ := run(ctx, "ip", "-o", "link"); strings.Contains(o, "master "+BridgeName) {
		out = append(out, "veth attached to "+BridgeName)
	}
	if _, err := run(ctx, "iptables", "-w", "-t", "nat", "-L", iptablesChain, "-n"); err == nil {
		out = append(out, "iptables nat chain "+iptablesChain)
	}
	for _, d := range cgroupDirs() {
		subs, _ := os.ReadDir(d)
		for _, s := range subs {
			if s.IsDir() {
				out = append(out, "cgroup "+filepath.Join(d, s.Name()))
			}
		}
	}
	return out, nil
}

// KillAllForTest SIGKILLs every process of the stack and cleans nothing, as
// when a session is ended abruptly. Only the lifecycle test uses it.
func KillAllForTest(cfg Config) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return
	}
	killGroups(ourProcesses(cfg.Dir), syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond)
}

func anyProcessNamed(prefix string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if b, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.HasPrefix(string(b), prefix) {
			return true
		}
	}
	return false
}
