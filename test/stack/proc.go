package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// component is one long-running process of the stack.
type component struct {
	name   string
	logf   string
	exited chan struct{} // closed when the process ends
	err    error         // its exit status, valid after exited is closed
}

type startOpts struct {
	env  []string
	dir  string
	cred *syscall.Credential
}

// start launches a component detached from the caller: its own session (so it
// outlives a test binary and can be stopped as a group), output to its log
// file (never a pipe, which would break when the caller exits), pid recorded.
func (s *Stack) start(name string, argv []string, o startOpts) (*component, error) {
	logf := s.p.logFile(name)
	out, err := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	if o.cred != nil {
		_ = os.Chown(logf, int(o.cred.Uid), int(o.cred.Gid))
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = o.dir
	cmd.Env = append(os.Environ(), o.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: o.cred}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := os.WriteFile(s.p.pidFile(name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return nil, err
	}
	c := &component{name: name, logf: logf, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// waitFor polls ready until it succeeds, the component exits or the deadline
// passes; a failure quotes the tail of the component's log.
func (c *component) waitFor(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited (%v) before it was ready: %v\n%s", c.name, c.err, last, logTail(c.logf, 25))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s: %v\n%s", c.name, timeout, last, logTail(c.logf, 25))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail returns the last n lines of a log, framed for an error message.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log at %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- last %d lines of %s ---\n%s", len(lines), path, strings.Join(lines, "\n"))
}

// run executes a short helper command and returns its combined output; the
// error carries that output.
func run(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// ourProcesses lists the PIDs whose command line mentions the state root:
// every component is started with at least one path under it, so this finds
// them whether this run started them or an abruptly ended earlier one did.
func ourProcesses(root string) []int {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		if bytes.Contains(b, []byte(root+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killGroups sends sig to the process group of each pid (each component leads
// its own session, so this reaches its children too, such as PostgreSQL
// backends whose command lines name nothing of ours).
func killGroups(pids []int, sig syscall.Signal) {
	for _, pid := range pids {
		pgid, err := syscall.Getpgid(pid)
		if err != nil || pgid <= 1 || pgid == syscall.Getpgrp() {
			_ = syscall.Kill(pid, sig)
			continue
		}
		_ = syscall.Kill(-pgid, sig)
	}
}

// stopAll ends every process of ours: SIGTERM, then SIGKILL after grace.
func stopAll(root string, grace time.Duration) error {
	pids := ourProcesses(root)
	if len(pids) == 0 {
		return nil
	}
	// PostgreSQL's "fast" shutdown is SIGINT (SIGTERM waits for clients).
	var pg, rest []int
	for _, pid := range pids {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "postgres" {
			pg = append(pg, pid)
		} else {
			rest = append(rest, pid)
		}
	}
	killGroups(pg, syscall.SIGINT)
	killGroups(rest, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if len(alive(pids)) == 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	killGroups(alive(pids), syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	if left := alive(pids); len(left) > 0 {
		return fmt.Errorf("processes still running after SIGKILL: %v", left)
	}
	return nil
}

func alive(pids []int) []int {
	var out []int
	for _, pid := range pids {
		// A zombie still answers kill(0); read its state instead.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 0 && f[0] == "Z" {
			continue
		}
		out = append(out, pid)
	}
	return out
}

var errNotReady = errors.New("not ready")
