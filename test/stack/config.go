// Package stack runs ramvault's real local test stack on this machine: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd + kubelet
// with a CNI bridge, a Vault dev server wired to the cluster, PostgreSQL, and
// Prometheus scraping ramvault through the shipped configuration.
//
// There is one stack per machine: the kubelet, the pod bridge, cgroups and the
// fixed ports are host-wide, so a second copy could not run beside the first.
// Its state lives under Config.Dir (default /var/lib/ramvault-dev) whichever
// checkout started it, so a later run — CI on a fresh clone, say — finds and
// clears what an abruptly ended run left behind.
//
// Sharing between test packages: every test that needs the stack calls
// Require. The first caller starts the stack (under an exclusive file lock) and
// leaves it running; every caller then holds a shared lock for the life of its
// test binary. Tests that must stop the stack (the lifecycle test) take the
// exclusive lock, so they wait until no other test binary is using it.
// `make test` tears the stack down at the end.
package stack

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Fixed network layout of the stack. Everything lives on loopback or on the
// pod bridge this package creates; nothing is sent anywhere else.
const (
	BridgeName       = "rvdev0"
	Gateway          = "10.88.77.1" // host side of the pod bridge: apiserver, Vault, PostgreSQL listen here
	PodCIDR          = "10.88.77.0/24"
	ServiceCIDR      = "10.0.0.0/24"
	KubernetesSvcIP  = "10.0.0.1"
	APIServerPort    = 6443
	VaultPort        = 8200
	PostgresPort     = 15432
	NodeName         = "node1"
	iptablesChain    = "RAMVAULT-DEV"
	BusyboxImage     = "localhost/busybox:e2e"
	PauseImage       = "registry.k8s.io/pause:3.10"
	ReviewerSA       = "vault-reviewer"
	DatabaseMount    = "database"
	DatabaseConfig   = "postgres"
	defaultStateRoot = "/var/lib/ramvault-dev"
)

// Config says where the stack keeps its state and finds its binaries.
type Config struct {
	// Dir is the state root (pki, data, logs, pid files). Default
	// $RAMVAULT_STACK_DIR or /var/lib/ramvault-dev.
	Dir string
	// Bin holds the binaries `make tools` builds. Default $RAMVAULT_BIN or
	// <repo>/bin.
	Bin string
	// Progress receives one line per step; nil means os.Stderr.
	Progress func(format string, args ...any)
}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		c.Dir = os.Getenv("RAMVAULT_STACK_DIR")
	}
	if c.Dir == "" {
		c.Dir = defaultStateRoot
	}
	if c.Bin == "" {
		c.Bin = os.Getenv("RAMVAULT_BIN")
	}
	if c.Bin == "" {
		root, err := RepoRoot()
		if err != nil {
			return c, err
		}
		c.Bin = filepath.Join(root, "bin")
	}
	if c.Progress == nil {
		c.Progress = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	var err error
	if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return c, err
	}
	c.Bin, err = filepath.Abs(c.Bin)
	return c, err
}

// Tool is the path of a binary `make tools` builds: in $RAMVAULT_BIN, else
// the checkout's bin/ (as the stack finds its own).
func Tool(name string) (string, error) {
	c, err := Config{}.withDefaults()
	if err != nil {
		return "", err
	}
	return filepath.Join(c.Bin, name), nil
}

// RepoRoot finds the ramvault checkout containing the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/ramvault/ramvault\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside the ramvault checkout (no go.mod of github.com/ramvault/ramvault above the working directory); set RAMVAULT_BIN")
		}
		dir = parent
	}
}

// paths of the stack's files, all under Config.Dir.
type paths struct{ root string }

func (p paths) join(elem ...string) string {
	return filepath.Join(append([]string{p.root}, elem...)...)
}
func (p paths) pki(name string) string      { return p.join("pki", name) }
func (p paths) logFile(name string) string  { return p.join("logs", name+".log") }
func (p paths) pidFile(name string) string  { return p.join("run", name+".pid") }
func (p paths) cache(elem ...string) string { return p.join(append([]string{"cache"}, elem...)...) }
func (p paths) envFile() string             { return p.join("env") }
func (p paths) adminKubeconfig() string     { return p.join("admin.kubeconfig") }
func (p paths) containerdSock() string      { return p.join("run", "containerd.sock") }
func (p paths) kubeletRoot() string         { return p.join("kubelet") }
