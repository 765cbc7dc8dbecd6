package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// shared is the one stack a test binary uses. Package state is deliberate
// here (test harness only): the lock must be held once per process for the
// life of the process, however many tests call Require.
var shared struct {
	once sync.Once
	env  Env
	err  error
}

// Require returns the running stack, starting it first if it is not up and
// healthy. It holds a shared lock on the stack until the test binary exits,
// so Exclusive callers (which stop the stack) wait for it.
func Require(t testing.TB) Env {
	t.Helper()
	shared.once.Do(func() {
		if env, ok := external(); ok {
			shared.env = env
			return
		}
		shared.env, shared.err = acquire(Config{Progress: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	})
	if shared.err != nil {
		t.Fatalf("local stack: %v", shared.err)
	}
	return shared.env
}

// external is a cluster the tests did not start (kind: `make e2e-kind`),
// named by RAMVAULT_KUBECONFIG, with the variables of the env file
// (VAULT_ADDR, VAULT_TOKEN, PG*, RAMVAULT_POD_*) set by the caller. ramvault
// is already deployed there.
func external() (Env, bool) {
	kc := os.Getenv("RAMVAULT_KUBECONFIG")
	if kc == "" {
		return Env{}, false
	}
	var e Env
	for _, v := range e.vars() {
		*v.val = os.Getenv(v.name)
	}
	e.Kubeconfig, e.StateDir = kc, ""
	return e, true
}

// External says whether the tests run on a cluster they did not start, whose
// node they cannot look into.
func (e Env) External() bool { return e.StateDir == "" }

func acquire(cfg Config) (Env, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Env{}, err
	}
	fd, err := lockFile(cfg.Dir)
	if err != nil {
		return Env{}, err
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		return Env{}, err
	}
	ctx := context.Background()
	env, err := ReadEnv(filepath.Join(cfg.Dir, "env"))
	if err != nil || Healthy(ctx, env) != nil {
		res, uerr := Up(ctx, cfg)
		if uerr != nil {
			syscall.Close(fd)
			return Env{}, uerr
		}
		env = res.Env
		cfg.Progress("stack: up in %.1fs", res.Total.Seconds())
	} else if err := Deploy(ctx, env); err != nil {
		// Up deployed this checkout's images; a stack that was already up
		// gets them now (unchanged images restart nothing).
		syscall.Close(fd)
		return Env{}, err
	}
	// Downgrade to shared; the descriptor stays open (and locked) until exit.
	if err := syscall.Flock(fd, syscall.LOCK_SH); err != nil {
		return Env{}, err
	}
	return env, nil
}

// Exclusive takes the stack's lock exclusively for the rest of the test, after
// every other test binary using the stack has finished. For tests that stop
// or restart the stack; they must not call Require in the same binary.
func Exclusive(t testing.TB, cfg Config) {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := lockFile(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
}

// LockExclusive is Exclusive for the bench commands (outside a test): it
// waits until no test binary uses the stack, and returns the release.
func LockExclusive() (func(), error) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		return nil, err
	}
	fd, err := lockFile(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return func() { syscall.Close(fd) }, nil
}

func lockFile(root string) (int, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return -1, err
	}
	return syscall.Open(filepath.Join(root, "lock"), syscall.O_CREAT|syscall.O_RDWR|syscall.O_CLOEXEC, 0o600)
}

// Healthy checks that every component answers: apiserver, node Ready, Vault
// unsealed, PostgreSQL accepting the superuser.
func Healthy(ctx context.Context, env Env) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cs, err := KubeClient(env.Kubeconfig)
	if err != nil {
		return err
	}
	if err := nodeReady(ctx, cs); err != nil {
		return err
	}
	vc, err := env.VaultClient()
	if err != nil {
		return err
	}
	h, err := vc.Sys().HealthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	if h.Sealed {
		return fmt.Errorf("vault is sealed")
	}
	if _, err := vc.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		return fmt.Errorf("vault root token: %w", err)
	}
	conn, err := pgx.Connect(ctx, env.PGURL())
	if err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	return conn.Close(ctx)
}
