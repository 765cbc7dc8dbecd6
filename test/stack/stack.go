package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Stack is a stack being brought up.
type Stack struct {
	cfg Config
	p   paths
	env Env

	mu      sync.Mutex
	timings []Timing
}

// Timing is how long one component took from start to ready.
type Timing struct {
	Name string
	Took time.Duration
}

// Result is what Up returns: how to reach the stack and how long it took.
type Result struct {
	Env     Env
	Timings []Timing
	Total   time.Duration
}

func (s *Stack) timed(name string, f func() error) error {
	start := time.Now()
	if err := f(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	took := time.Since(start)
	s.mu.Lock()
	s.timings = append(s.timings, Timing{name, took})
	s.mu.Unlock()
	s.cfg.Progress("  %-24s ready in %5.2fs", name, took.Seconds())
	return nil
}

// Up clears whatever an earlier run left and starts the whole stack, waiting
// for each component to be ready. On error everything started is stopped
// again and the error quotes the failing component's log.
func Up(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	if os.Geteuid() != 0 {
		return Result{}, errors.New("the local stack runs a real kubelet and needs root; run as root (or use the kind path, see README)")
	}
	if err := checkBinaries(cfg.Bin); err != nil {
		return Result{}, err
	}
	start := time.Now()
	s := &Stack{cfg: cfg, p: paths{cfg.Dir}}
	res, err := s.up(ctx)
	if err != nil {
		cfg.Progress("stack failed; cleaning up")
		_ = cleanHost(context.Background(), cfg.Dir)
		return Result{}, err
	}
	res.Total = time.Since(start)
	return res, nil
}

func checkBinaries(bin string) error {
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "vault", "pause", "prometheus"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s in %s: run `make tools`", strings.Join(missing, ", "), bin)
	}
	for _, b := range []string{"containerd", "runc", "ctr", "iptables", "ip", "unshare", pgBin + "/postgres", "/usr/lib/cni/bridge", "/bin/busybox"} {
		if _, err := lookPath(b); err != nil {
			return fmt.Errorf("%s not found: run `make deps`", b)
		}
	}
	return nil
}

func (s *Stack) up(ctx context.Context) (Result, error) {
	s.cfg.Progress("stack: state in %s", s.p.root)
	if err := s.timed("clear leftovers", func() error {
		if err := cleanHost(ctx, s.p.root); err != nil {
			return err
		}
		return resetState(s.p.root)
	}); err != nil {
		return Result{}, err
	}
	for _, d := range []string{"pki", "run", "logs", "etcd", "kubelet", "kubelet-plugins", "pod-logs", "containerd", "runc", "opt", "cni/net.d", "cni/ipam", "vault/plugins", "cache"} {
		if err := os.MkdirAll(s.p.join(d), 0o755); err != nil {
			return Result{}, err
		}
	}
	if err := s.timed("pki + network", func() error {
		if err := genPKI(s.p.join("pki")); err != nil {
			return err
		}
		if err := s.writeConfigs(); err != nil {
			return err
		}
		return setupNetwork(ctx)
	}); err != nil {
		return Result{}, err
	}
	s.env = Env{
		Kubeconfig:   s.p.adminKubeconfig(),
		VaultAddr:    fmt.Sprintf("http://%s:%d", Gateway, VaultPort),
		PodVaultAddr: fmt.Sprintf("http://%s:%d", Gateway, VaultPort),
		PGHost:       "127.0.0.1",
		PGPort:       fmt.Sprint(PostgresPort),
		PGUser:       "postgres",
		PodPGHost:    Gateway,
		PodPGPort:    fmt.Sprint(PostgresPort),
		CACert:       s.p.pki("ca.crt"),
		StateDir:     s.p.root,
		VaultToken:   "dev-root-" + randHex(12),
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.timed("etcd", func() error { return s.startEtcd(gctx) }); err != nil {
			return err
		}
		return s.timed("kube-apiserver", func() error { return s.startAPIServer(gctx) })
	})
	g.Go(func() error { return s.timed("containerd + images", func() error { return s.startContainerd(gctx) }) })
	g.Go(func() error { return s.timed("postgresql", func() error { return s.startPostgres(gctx) }) })
	g.Go(func() error { return s.timed("vault", func() error { return s.startVault(gctx) }) })
	if err := g.Wait(); err != nil {
		return Result{}, err
	}

	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() error { return s.timed("kubelet (node Ready)", func() error { return s.startKubelet(gctx) }) })
	g.Go(func() error {
		return s.timed("kube-controller-manager", func() error { return s.startControllerManager(gctx) })
	})
	g.Go(func() error { return s.timed("kube-scheduler", func() error { return s.startScheduler(gctx) }) })
	g.Go(func() error { return s.timed("vault wiring", func() error { return s.wireVault(gctx) }) })
	if err := g.Wait(); err != nil {
		return Result{}, err
	}
	if err := s.timed("ramvault (in-cluster)", func() error { return Deploy(ctx, s.env) }); err != nil {
		return Result{}, err
	}
	if err := s.timed("prometheus", func() error { return s.startPrometheus(ctx) }); err != nil {
		return Result{}, err
	}
	if err := s.env.WriteFile(s.p.envFile()); err != nil {
		return Result{}, err
	}
	return Result{Env: s.env, Timings: s.timings}, nil
}

// Down stops every component and undoes every host change; it is a no-op on
// a clean host. The cache (PostgreSQL template, image archives) is kept.
func Down(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if err := cleanHost(ctx, cfg.Dir); err != nil {
		return err
	}
	return resetState(cfg.Dir)
}

// resetState removes everything under the state root but the cache and the
// lock file.
func resetState(root string) error {
	ents, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return os.MkdirAll(root, 0o755)
	}
	if err != nil {
		return err
	}
	if m := mountsUnder(root); len(m) > 0 {
		return fmt.Errorf("refusing to delete %s: still mounted: %s", root, strings.Join(m, ", "))
	}
	for _, e := range ents {
		if e.Name() == "cache" || e.Name() == "lock" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			return err
		}
	}
	return os.Chmod(root, 0o755)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
