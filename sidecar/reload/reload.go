// Package reload tells the app that its secret files changed: a signal to
// its processes, a POST to its reload URL, or one failing liveness probe so
// the kubelet restarts it.
package reload

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/sidecar/clock"
)

// Options configure a Reloader.
type Options struct {
	Log           *slog.Logger
	SignalProcess string // the process name signal:<SIG> reloads
	// SignalMountPath, instead of SignalProcess: signal:<SIG> reloads the
	// main process of every container that mounts the secrets volume
	// (SecretsDir in the agent) at this path.
	SignalMountPath string
	SecretsDir      string
	Clock           clock.Clock // waits between the tries of an http reload
	// Observe, when set, is told the result of every reload, by kind.
	Observe func(kind string, err error)
}

// Reloader tells the app about new secrets.
type Reloader struct {
	log           *slog.Logger
	signalProcess string
	mountPath     string // SignalMountPath
	secretsDir    string
	procDir       string // /proc; a test may point elsewhere
	self          int    // the agent's pid
	kill          func(pid int, sig syscall.Signal) error
	http          *http.Client
	clock         clock.Clock
	observe       func(kind string, err error)

	mu        sync.Mutex
	restartAt time.Time // the last "restart" reload
}

// RestartWindow is how long after a "restart" reload the app containers'
// liveness probe fails: one probe period of the injector's restart probe
// (5 s) and 2 s to spare, so the kubelet's probe fails at least once
// whoever else asks, and the restarted container's first probe (10 s after
// it starts) falls after it. A window, not a count: a request from the Pod
// network cannot use up the failure meant for the kubelet, and no state is
// kept per name asked.
const RestartWindow = 7 * time.Second

// New is a Reloader; a nil Clock is the real one, a nil Log discards.
func New(o Options) *Reloader {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	if o.Observe == nil {
		o.Observe = func(string, error) {}
	}
	if o.SignalMountPath != "" {
		o.SignalMountPath = path.Clean(o.SignalMountPath)
	}
	return &Reloader{log: o.Log, signalProcess: o.SignalProcess, mountPath: o.SignalMountPath, secretsDir: o.SecretsDir,
		procDir: "/proc", self: os.Getpid(), kill: syscall.Kill, clock: o.Clock, observe: o.Observe,
		http: &http.Client{Timeout: 5 * time.Second}}
}

// Reload performs each distinct reload once; it runs after every file of a
// rotation is written.
func (r *Reloader) Reload(ctx context.Context, rs []spec.Reload) {
	seen := map[string]bool{}
	for _, rl := range rs {
		if rl.Kind == "" || rl.Kind == spec.ReloadNone || seen[rl.String()] {
			continue
		}
		seen[rl.String()] = true
		err := r.one(ctx, rl)
		r.observe(string(rl.Kind), err)
		if err != nil {
			r.log.Error("reload failed", "reload", rl.String(), "err", err)
		} else {
			r.log.Info("app reloaded", "reload", rl.String())
		}
	}
}

func (r *Reloader) one(ctx context.Context, rl spec.Reload) error {
	switch rl.Kind {
	case spec.ReloadSignal:
		return r.signal(rl.Signal)
	case spec.ReloadHTTP:
		return r.post(ctx, rl.URL)
	case spec.ReloadRestart:
		r.mu.Lock()
		r.restartAt = r.clock.Now()
		r.mu.Unlock()
		return nil
	}
	return nil
}

// signal sends sig to every process named r.signalProcess visible in the
// shared process namespace (other than the agent itself), or, with a mount
// path, to the main process of each container that mounts the secrets
// volume there (signalByMount).
func (r *Reloader) signal(sig syscall.Signal) error {
	if r.mountPath != "" {
		return r.signalByMount(sig)
	}
	if r.signalProcess == "" {
		return fmt.Errorf("no process name to signal: set ramvault.io/signal-process")
	}
	ents, err := os.ReadDir(r.procDir)
	if err != nil {
		return err
	}
	sent := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == r.self {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(r.procDir, e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != r.signalProcess {
			continue
		}
		if err := r.kill(pid, sig); err != nil {
			return fmt.Errorf("signal %s to %s (pid %d): %w", sig, r.signalProcess, pid, err)
		}
		sent++
	}
	if sent == 0 {
		return fmt.Errorf("no process named %q to signal (is shareProcessNamespace on and ramvault.io/signal-process right?)", r.signalProcess)
	}
	return nil
}

// post POSTs to the app's reload URL, retrying a few times.
func (r *Reloader) post(ctx context.Context, url string) error {
	var last error
	for attempt, wait := 0, 200*time.Millisecond; attempt < 5; attempt, wait = attempt+1, wait*2 {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
		if err != nil {
			return err
		}
		resp, err := r.http.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return nil
			}
			err = fmt.Errorf("POST %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.clock.After(wait):
		}
	}
	return last
}

// ShouldRestart reports whether the app containers' liveness probe must
// fail now, so the kubelet restarts them onto new secrets: for
// RestartWindow after each "restart" reload. Every target container fails
// together (each is restarted once); the name the probe gives is not
// trusted or kept.
func (r *Reloader) ShouldRestart() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.restartAt.IsZero() {
		return false
	}
	return r.clock.Now().Before(r.restartAt.Add(RestartWindow))
}
