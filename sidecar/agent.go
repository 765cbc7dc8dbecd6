package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/pkg/tmpfs"
	"github.com/ramvault/ramvault/sidecar/clock"
	"github.com/ramvault/ramvault/sidecar/reload"
	"github.com/ramvault/ramvault/sidecar/render"
	"github.com/ramvault/ramvault/sidecar/state"
	"github.com/ramvault/ramvault/sidecar/vault"
)

// vaultClient is every call the agent makes to Vault: a *vault.Client, or a
// fake in the tests of the agent's loops.
type vaultClient interface {
	SetToken(token string)
	Login(ctx context.Context, authPath, role, jwtFile string) (*vault.Auth, error)
	LookupSelf(ctx context.Context) (time.Duration, error)
	RenewSelf(ctx context.Context) (ttl time.Duration, renewable bool, err error)
	RevokeSelf(ctx context.Context) error
	// RevokeToken revokes another token than the current one.
	RevokeToken(ctx context.Context, token string) error
	// Get reads a secret (KV v1/v2 detected from its mount), or writes
	// params to path when method is "write".
	Get(ctx context.Context, method, path string, params map[string]string) (*vault.Secret, error)
	// ReadPath is the path a read of path requests (KV v2: with data/).
	ReadPath(ctx context.Context, path string) (string, error)
	RenewLease(ctx context.Context, leaseID string, increment time.Duration) (time.Duration, error)
	RevokeLease(ctx context.Context, leaseID string) error
}

// secretFiles is the secrets directory: a *tmpfs.Writer, or memory in tests.
type secretFiles interface {
	Write(name string, data []byte, mode os.FileMode) (bool, error)
	// WriteSet writes files together: none if one cannot be staged.
	WriteSet(files []tmpfs.File) ([]string, error)
	Exists(name string) bool
	// MkdirAll creates a directory and its parents, keeping any that
	// exists (never replaced: it may be a bind mount's source).
	MkdirAll(name string) error
	// RemoveStaged deletes the temporary files of a write a killed agent
	// did not finish, and returns their names.
	RemoveStaged() ([]string, error)
}

// agent keeps a Pod's secret files fresh. Its parts: the token session
// (token.go), the Pod's files and their distinct Vault requests (deps.go),
// each request's lifecycle and the set writes (secrets.go), the retry policy
// (retry.go), the status file (status.go) and the health and metrics
// endpoints (health.go, metrics.go).
type agent struct {
	cfg      config
	log      *slog.Logger
	clock    clock.Clock
	vault    vaultClient
	files    secretFiles
	store    *state.Store
	token    *session
	retry    *retrier
	graph    *graph
	reloader *reload.Reloader
	metrics  *metrics
	rotated  *rotation // the service-account token file changed
	relogged *rotation // a new login replaced an invalid token: leases to re-issue now
	ready    atomic.Bool

	txMu   sync.Mutex             // one change of the files at a time
	epoch  atomic.Int64           // new logins that voided every lease
	values map[*dep]*vault.Secret // the last response of each dep (txMu); the files are rendered from these

	statusMu sync.Mutex
	written  map[string]time.Time // by file
	next     map[string]time.Time // each dep's next renewal or re-read
}

// newAgent validates the configuration and prepares the agent; nothing is
// fetched.
func newAgent(cfg config) (*agent, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w, err := tmpfs.New(cfg.SecretsDir)
	if err != nil {
		return nil, err
	}
	store, err := state.Open(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	v, err := vault.New(vault.Options{Addr: cfg.VaultAddr, CACert: cfg.CACert, TLSServerName: cfg.TLSServerName, Namespace: cfg.VaultNamespace, Timeout: cfg.CallTimeout})
	if err != nil {
		return nil, err
	}
	return assemble(cfg, v, w, store)
}

// assemble wires the agent's parts around its edges (Vault, the secrets
// directory, the state store); cfg has its defaults.
func assemble(cfg config, v vaultClient, files secretFiles, store *state.Store) (*agent, error) {
	m := newMetrics(cfg.Clock.Now)
	g, err := buildGraph(cfg.Spec.Secrets, render.Limits{Clock: cfg.Clock})
	if err != nil {
		return nil, err
	}
	for _, f := range g.files {
		f.path = cfg.Spec.VolumePath(f.secret)
	}
	a := &agent{cfg: cfg, log: cfg.Log, clock: cfg.Clock, vault: v, files: files, store: store, graph: g,
		metrics: m, rotated: newRotation(), relogged: newRotation(),
		values: map[*dep]*vault.Secret{}, written: map[string]time.Time{}, next: map[string]time.Time{}}
	a.token = &session{cfg: cfg, vault: v, store: store, clock: cfg.Clock, log: cfg.Log, metrics: m}
	if cfg.Spec.InjectToken {
		a.token.onLogin = func() {
			if err := a.writeToken(context.Background()); err != nil {
				a.log.Warn("writing the token file failed; the app has the previous token", "file", spec.TokenFile, "err", err)
			}
		}
	}
	a.retry = &retrier{policy: defaultRetry(), clock: cfg.Clock, log: cfg.Log, rotated: a.rotated, degraded: a.setDegraded}
	a.reloader = reload.New(reload.Options{Log: cfg.Log, SignalProcess: cfg.SignalProcess,
		SignalMountPath: cfg.SignalMountPath, SecretsDir: cfg.SecretsDir, Clock: cfg.Clock, Observe: m.reload})
	return a, nil
}

// Run fetches every secret and writes the files; in init mode it then
// returns, in sidecar mode it keeps them fresh until ctx ends, then revokes
// its leases and token within the shutdown grace period.
func (a *agent) Run(ctx context.Context) error {
	if a.cfg.Harden {
		harden(a.log)
	}
	// An agent SIGKILLed (or OOM-killed) while staging a set left its
	// temporary files beside the secrets: no reader sees them as a secret,
	// but they hold one, and they fill the volume.
	if removed, err := a.files.RemoveStaged(); err != nil {
		a.log.Warn("removing temporary files a killed agent left failed", "err", err)
	} else if len(removed) > 0 {
		a.log.Info("removed temporary files of a write a killed agent did not finish", "files", removed)
	}
	if err := a.makeMountDirs(); err != nil {
		return err
	}
	if a.cfg.VaultTokenFile == "" {
		// Off the path to the first login: setting up the watch took
		// 1.5-2.3 ms of the start on a busy 2-core node.
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			if tw := watchTokenFile(a.cfg.TokenFile, a.log); tw != nil {
				tw.run(wctx, a.rotated)
			}
		}()
	}
	if a.cfg.Mode == modeSidecar {
		stop, err := a.serve()
		if err != nil {
			return err
		}
		defer stop()
	}
	firstCtx := ctx
	if a.cfg.Mode == modeInit {
		var cancel context.CancelFunc
		firstCtx, cancel = context.WithTimeout(ctx, a.cfg.InitDeadline)
		defer cancel()
	}
	if err := a.firstWrite(firstCtx); err != nil {
		if a.cfg.Mode == modeInit && errors.Is(firstCtx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("secrets not written within %s: %w", a.cfg.InitDeadline, err)
		}
		if ctx.Err() != nil {
			a.shutdown()
			return nil
		}
		return err
	}
	if a.cfg.Mode == modeInit {
		a.log.Info("all secrets written; handing over to the sidecar", "secrets", len(a.cfg.Spec.Secrets))
		return nil
	}
	releaseMemory()
	var wg sync.WaitGroup
	wg.Go(func() { a.tokenLoop(ctx) })
	for _, d := range a.graph.deps {
		wg.Go(func() { a.depLoop(ctx, d) })
	}
	<-ctx.Done()
	wg.Wait()
	a.shutdown()
	return nil
}

// firstWrite logs in (or reuses the token the init container left) and
// writes every file whose dependencies are not still valid on the volume,
// as one set, retrying with backoff.
func (a *agent) firstWrite(ctx context.Context) error {
	if err := a.retry.do(ctx, "log in", retryOpts{login: true, maxWait: firstWriteMaxWait}, a.token.ensure); err != nil {
		return err
	}
	if a.cfg.Spec.InjectToken {
		// Also when the saved token was reused (no login), and again if
		// writing it on login failed.
		if err := a.retry.do(ctx, "write the token file", retryOpts{maxWait: firstWriteMaxWait}, a.writeToken); err != nil {
			return err
		}
	}
	if err := a.retry.do(ctx, "look up KV mounts", retryOpts{maxWait: firstWriteMaxWait}, a.mergeKVAliases); err != nil {
		return err
	}
	var due []*dep
	for _, d := range a.graph.deps {
		if a.stillValid(d) {
			a.log.Info("secret still valid from an earlier run; reusing its lease", "dependency", d.name)
			continue
		}
		due = append(due, d)
	}
	// A file already there (from the init container or an earlier run)
	// may be in use by the app: if it changes, the app must be told.
	existed := map[*file]bool{}
	for _, f := range a.graph.files {
		existed[f] = a.files.Exists(f.path)
	}
	var static []*file // a template with no dependency: written once
	for _, f := range a.graph.files {
		if len(f.deps) == 0 && !existed[f] {
			static = append(static, f)
		}
	}
	var written []*file
	if len(due) > 0 || len(static) > 0 {
		c := newChange(due, true)
		c.files = static
		err := a.retry.do(ctx, "first write", retryOpts{maxWait: firstWriteMaxWait}, func(ctx context.Context) error {
			var err error
			written, err = a.apply(ctx, c)
			return err
		})
		if err != nil {
			return err
		}
	}
	a.ready.Store(true)
	a.writeStatus()
	if a.cfg.Mode == modeSidecar {
		// A restarted sidecar that had to fetch anew tells the running app
		// (whether or not it could keep the saved token).
		var told []*file
		for _, f := range written {
			if existed[f] {
				told = append(told, f)
			}
		}
		a.reloader.Reload(ctx, a.reloadsOf(told))
	}
	return nil
}

// leaseRevokeTimeout bounds each lease's revocation at shutdown: one slow
// answer must not use the grace the token's revocation needs.
const leaseRevokeTimeout = 2 * time.Second

// shutdown revokes every lease and the token, under a fresh deadline (the
// run's context is already cancelled), and forgets the state. The leases
// are revoked together, each under its own short timeout, within the first
// part of the grace; the token's revocation keeps the rest (at least half
// of the grace, or a call timeout), so it always gets its turn. The log
// says which leases were and were not revoked, and whether the token was.
func (a *agent) shutdown() {
	start := time.Now()
	grace := a.cfg.ShutdownGrace
	tok := a.store.Token()
	if tok.Token == "" {
		return
	}
	tokenShare := min(a.cfg.CallTimeout, grace/2)
	leaseCtx, cancel := context.WithTimeout(context.Background(), grace-tokenShare)
	defer cancel()

	// Revoke each lease at once where the policy allows sys/leases/revoke;
	// revoking the token below revokes them in any case (Vault does that
	// in the background, within seconds).
	type result struct {
		name string
		err  error
	}
	var results []result
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, ss := range a.store.Secrets() {
		if ss.LeaseID == "" {
			continue
		}
		wg.Go(func() {
			cctx, c := context.WithTimeout(leaseCtx, min(a.cfg.CallTimeout, leaseRevokeTimeout))
			err := a.vault.RevokeLease(cctx, ss.LeaseID)
			c()
			mu.Lock()
			results = append(results, result{name, err})
			mu.Unlock()
		})
	}
	// Tokens a new login replaced, still in their grace: revoked now too.
	var retiredRevoked, retiredNot atomic.Int32
	for _, old := range a.token.takeRetired() {
		wg.Go(func() {
			cctx, c := context.WithTimeout(leaseCtx, min(a.cfg.CallTimeout, leaseRevokeTimeout))
			defer c()
			if a.token.revokeWithin(cctx, old) {
				retiredRevoked.Add(1)
			} else {
				retiredNot.Add(1)
			}
		})
	}
	wg.Wait()
	slices.SortFunc(results, func(x, y result) int { return strings.Compare(x.name, y.name) })
	revoked, notRevoked := []string{}, []string{}
	deniedOnce := false
	for _, r := range results {
		switch {
		case r.err == nil:
			revoked = append(revoked, r.name)
			continue
		case vault.Denied(r.err):
			if !deniedOnce {
				a.log.Info("the policy does not allow sys/leases/revoke; leases end with the token's revocation", "hint", "grant update on sys/leases/revoke to revoke them at once")
				deniedOnce = true
			}
		default:
			a.log.Warn("revoking a lease failed", "secret", r.name, "err", r.err)
		}
		notRevoked = append(notRevoked, r.name)
	}

	tokenRevoked := false
	if a.cfg.VaultTokenFile == "" {
		cctx, c := context.WithDeadline(context.Background(), start.Add(grace))
		if err := a.vault.RevokeSelf(cctx); err != nil {
			a.log.Warn("revoking the vault token failed", "err", err)
		} else {
			tokenRevoked = true
		}
		c()
	}
	if err := a.store.Clear(); err != nil {
		a.log.Warn("clearing agent state failed", "err", err)
	}
	kv := []any{"leases_revoked_explicitly", len(revoked), "leases_revoked", revoked, "leases_not_revoked", notRevoked, "token_revoked", tokenRevoked, "previous_tokens_revoked", retiredRevoked.Load(), "previous_tokens_not_revoked", retiredNot.Load(), "took", time.Since(start).Round(time.Millisecond).String()}
	switch {
	case tokenRevoked:
		a.log.Info("shut down: token revoked", kv...)
	case a.cfg.VaultTokenFile != "":
		a.log.Info("shut down: the --vault-token-file token is left as it was", kv...)
	default:
		a.log.Warn("shut down: token NOT revoked; it and the leases not revoked end at their TTL", append(kv, "token_expires", tok.Expires)...)
	}
}

// makeMountDirs creates the directory of each mount of the secrets volume
// in the target containers other than its root (spec.MountDirPrefix/<i>),
// before anything else. The injector mounts them with a subPath, and the
// agent runs before any container that mounts them (its init container, or
// its native sidecar whose postStart hook holds the next containers back
// until the first write). A subPath that does not exist when a container
// starts is created by the kubelet (makeMounts in pkg/kubelet/
// kubelet_pods.go: subpather.SafeMakeDir with the mode of the volume's
// root, 0777 for an emptyDir), as root: world-writable, and not the app's.
// Created here they are the agent's uid, the app's, mode 0700. An existing
// directory is kept: once a container has started it is a bind mount's
// source, and a new one would not be seen through the mount.
func (a *agent) makeMountDirs() error {
	for _, m := range a.cfg.Spec.Mounts() {
		if m.SubPath == "" {
			continue
		}
		if err := a.files.MkdirAll(m.SubPath); err != nil {
			return fmt.Errorf("directory of the mount %s in the secrets volume: %w", m.Path, err)
		}
	}
	return nil
}

// writeToken writes the agent's current Vault token to spec.TokenFile in
// the secrets directory (inject-token), mode 0400, the app's uid: the app
// then has the Pod's Vault identity, as with vault-k8s's
// agent-inject-token. It is rewritten on every new login (the content is
// equal, and not rewritten, otherwise); the app re-reads it, as a Vault
// Agent token sink's reader does — no reload is made for it. The token is
// never logged: the writer's errors name the file only.
func (a *agent) writeToken(context.Context) error {
	tok := a.token.current()
	if tok == "" {
		return errors.New("no vault token yet")
	}
	_, err := a.files.Write(spec.TokenFile, []byte(tok), 0o400)
	return err
}
