package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Command implements the devstack verbs behind `make dev-up`, `make dev-down`.
//   - up: start the stack unless it is already up and healthy; either way
//     write <repo>/.dev/env and print how long each component took.
//   - down: stop it and clean the host (waits for running tests).
//   - status: say whether it is up and healthy.
//   - leftovers: list anything of ours left on the host; error if any.
func Command(ctx context.Context, verb string, out io.Writer) error {
	cfg, err := Config{Progress: func(f string, a ...any) { fmt.Fprintf(out, f+"\n", a...) }}.withDefaults()
	if err != nil {
		return err
	}
	repo, err := RepoRoot()
	if err != nil {
		return err
	}
	devEnv := filepath.Join(repo, ".dev", "env")
	switch verb {
	case "up":
		fd, err := lockFile(cfg.Dir)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
			return err
		}
		if env, err := ReadEnv(filepath.Join(cfg.Dir, "env")); err == nil && Healthy(ctx, env) == nil {
			fmt.Fprintln(out, "stack: already up and healthy; deploying this checkout's ramvault")
			if err := Deploy(ctx, env); err != nil {
				return err
			}
			return finishUp(out, env, devEnv)
		}
		res, err := Up(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "stack: up in %.2fs\n", res.Total.Seconds())
		return finishUp(out, res.Env, devEnv)
	case "down":
		fd, err := lockFile(cfg.Dir)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
			return err
		}
		if err := Down(ctx, cfg); err != nil {
			return err
		}
		if err := os.Remove(devEnv); err != nil && !os.IsNotExist(err) {
			return err
		}
		fmt.Fprintln(out, "stack: down; host clean")
		return nil
	case "status":
		env, err := ReadEnv(filepath.Join(cfg.Dir, "env"))
		if err != nil {
			return fmt.Errorf("stack is not up (run `make dev-up`): %w", err)
		}
		if err := Healthy(ctx, env); err != nil {
			return fmt.Errorf("stack is not healthy: %w", err)
		}
		fmt.Fprintln(out, "stack: up and healthy")
		return nil
	case "leftovers":
		left, err := Leftovers(cfg)
		if err != nil {
			return err
		}
		if len(left) > 0 {
			return errors.New("left on the host:\n  " + strings.Join(left, "\n  "))
		}
		fmt.Fprintln(out, "stack: nothing left on the host")
		return nil
	}
	return fmt.Errorf("unknown verb %q: want up, down, status or leftovers", verb)
}

func finishUp(out io.Writer, env Env, devEnv string) error {
	if err := env.WriteFile(devEnv); err != nil {
		return err
	}
	fmt.Fprintf(out, "stack: wrote %s — `source %s` then use kubectl (bin/kubectl), Vault at %s, PostgreSQL at %s:%s\n",
		devEnv, devEnv, env.VaultAddr, env.PGHost, env.PGPort)
	return nil
}
