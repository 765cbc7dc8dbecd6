package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/pkg/tmpfs"
)

// Modes of the agent.
const (
	ModeInit    = "init"
	ModeSidecar = "sidecar"
)

// Config is everything the agent needs; cmd/ramvault-agent builds it from
// flags and the Pod's annotations.
type Config struct {
	Mode           string
	VaultAddr      string
	CACert         string
	TLSServerName  string
	VaultNamespace string
	AuthPath       string
	Role           string
	TokenFile      string // projected service-account token (Kubernetes auth)
	VaultTokenFile string // instead of logging in, use this Vault token (debugging by hand)
	SecretsDir     string
	StateDir       string
	Spec           *spec.Annotations
	SignalProcess  string
	HealthAddr     string // "" disables the health server
	MetricsAddr    string // "" disables metrics
	CallTimeout    time.Duration
	InitDeadline   time.Duration
	ShutdownGrace  time.Duration
	Log            *slog.Logger
	Harden         bool // mlockall, not dumpable, umask 077 (process-wide; off in tests)

	// Test seams.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

func (c *Config) defaults() {
	if c.CallTimeout == 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.InitDeadline == 0 {
		c.InitDeadline = 2 * time.Minute
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.AuthPath == "" {
		c.AuthPath = "kubernetes"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.After == nil {
		c.After = time.After
	}
}

// validate reports every problem at once, each naming the flag to set.
func (c *Config) validate() error {
	var errs []error
	if c.Mode != ModeInit && c.Mode != ModeSidecar {
		errs = append(errs, fmt.Errorf("--mode %q: want init or sidecar", c.Mode))
	}
	if c.VaultAddr == "" {
		errs = append(errs, errors.New("--vault-addr is required (or ramvault.io/vault-addr)"))
	}
	if c.VaultTokenFile == "" && (c.TokenFile == "" || c.Role == "") {
		errs = append(errs, errors.New("--token-file and --role are required to log in (or --vault-token-file when debugging)"))
	}
	if c.SecretsDir == "" {
		errs = append(errs, errors.New("--secrets-dir is required"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required"))
	}
	if c.Spec == nil || len(c.Spec.Secrets) == 0 {
		errs = append(errs, errors.New("no secrets configured: give --annotations a file with ramvault.io/secret-<name> entries"))
	}
	return errors.Join(errs...)
}

// Agent keeps a Pod's secret files fresh.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	v         *vaultAPI
	w         *tmpfs.Writer
	store     *stateStore
	renderers map[string]*renderer
	reloader  *reloader
	metrics   *metrics
	rotated   *rotation // the service-account token file changed
	ready     atomic.Bool

	mu           sync.Mutex
	st           *state
	tokenIssued  time.Time
	tokenGranted time.Duration
	reused       bool // the token came from saved state (init container or an earlier sidecar)
	lastReauth   time.Time
}

// New validates the configuration and prepares the agent; nothing is fetched.
func New(cfg Config) (*Agent, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w, err := tmpfs.New(cfg.SecretsDir)
	if err != nil {
		return nil, err
	}
	store, err := newStateStore(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	v, err := newVaultAPI(cfg)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Log, v: v, w: w, store: store, renderers: map[string]*renderer{}, metrics: newMetrics(cfg.Now), rotated: newRotation()}
	for _, s := range cfg.Spec.Secrets {
		r, err := newRenderer(s)
		if err != nil {
			return nil, err
		}
		a.renderers[s.Name] = r
	}
	a.reloader = newReloader(cfg.Log, cfg.SignalProcess, a.metrics)
	return a, nil
}

// Run fetches every secret and writes the files; in init mode it then
// returns, in sidecar mode it keeps them fresh until ctx ends, then revokes
// its leases and token within the shutdown grace period.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.Harden {
		harden(a.log)
	}
	if a.cfg.VaultTokenFile == "" {
		// Off the path to the first login: setting up the watch took
		// 1.5-2.3 ms of the start on a busy 2-core node.
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go watchTokenFile(wctx, a.cfg.TokenFile, a.rotated, a.log)
	}
	if a.cfg.Mode == ModeSidecar {
		stop, err := a.serve()
		if err != nil {
			return err
		}
		defer stop()
	}
	firstCtx := ctx
	if a.cfg.Mode == ModeInit {
		var cancel context.CancelFunc
		firstCtx, cancel = context.WithTimeout(ctx, a.cfg.InitDeadline)
		defer cancel()
	}
	if err := a.firstWrite(firstCtx); err != nil {
		if a.cfg.Mode == ModeInit && errors.Is(firstCtx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("secrets not written within %s: %w", a.cfg.InitDeadline, err)
		}
		if ctx.Err() != nil {
			a.shutdown()
			return nil
		}
		return err
	}
	if a.cfg.Mode == ModeInit {
		a.log.Info("all secrets written; handing over to the sidecar", "secrets", len(a.cfg.Spec.Secrets))
		return nil
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.tokenLoop(ctx) }()
	for _, s := range a.cfg.Spec.Secrets {
		wg.Add(1)
		go func() { defer wg.Done(); a.secretLoop(ctx, s) }()
	}
	<-ctx.Done()
	wg.Wait()
	a.shutdown()
	return nil
}

// firstWrite logs in (or reuses the token the init container left) and
// writes every secret not already valid on the volume, retrying with backoff.
func (a *Agent) firstWrite(ctx context.Context) error {
	if err := retryLogin(ctx, a, "log in", a.ensureToken); err != nil {
		return err
	}
	// Every secret is fetched concurrently: the first write is what the
	// app waits for.
	var (
		mu      sync.Mutex
		reloads []spec.Reload
		errs    []error
		wg      sync.WaitGroup
	)
	for _, s := range a.cfg.Spec.Secrets {
		if a.stillValid(s) {
			a.log.Info("secret still valid from an earlier run; reusing its lease", "secret", s.Name)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := retry(ctx, a, "fetch "+s.Name, func(ctx context.Context) error {
				changed, err := a.fetchAndWrite(ctx, s)
				if changed {
					mu.Lock()
					reloads = append(reloads, a.cfg.Spec.ReloadFor(s))
					mu.Unlock()
				}
				return err
			})
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	a.ready.Store(true)
	a.writeStatus()
	if a.cfg.Mode == ModeSidecar && a.reused {
		// A restarted sidecar that had to fetch anew tells the running app.
		a.reloader.reload(ctx, reloads)
	}
	return nil
}

// stillValid reports whether a secret's file and lease (from the state the
// init container or an earlier sidecar left) can be kept.
func (a *Agent) stillValid(s spec.Secret) bool {
	a.mu.Lock()
	ss, ok := a.st.Secrets[s.Name]
	a.mu.Unlock()
	if !ok || ss.Path != s.Path {
		return false
	}
	if _, err := os.Stat(filepath.Join(a.w.Dir(), s.Name)); err != nil {
		return false
	}
	if !ss.Expires.IsZero() && a.cfg.Now().After(ss.Expires.Add(-ss.LeaseDuration/3)) {
		return false
	}
	return true
}

// ensureToken loads the saved state and keeps its token if Vault still
// honours it; otherwise logs in.
func (a *Agent) ensureToken(ctx context.Context) error {
	st, err := a.store.load()
	if err != nil {
		a.log.Warn("agent state unreadable; starting afresh", "err", err)
	}
	if st != nil && st.Token != "" {
		a.v.setToken(st.Token)
		cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
		ttl, err := a.v.lookupSelf(cctx)
		cancel()
		if err == nil && ttl > 0 {
			a.mu.Lock()
			a.st = st
			a.tokenIssued, a.tokenGranted, a.reused = a.cfg.Now(), ttl, true
			a.mu.Unlock()
			a.log.Info("reusing the Pod's Vault token", "ttl", ttl.String())
			return nil
		}
		a.log.Info("saved Vault token no longer valid; logging in", "err", err)
	}
	a.mu.Lock()
	a.st = &state{Secrets: map[string]secretState{}}
	a.mu.Unlock()
	return a.login(ctx)
}

func (a *Agent) login(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	defer cancel()
	if a.cfg.VaultTokenFile != "" {
		b, err := os.ReadFile(a.cfg.VaultTokenFile)
		if err != nil {
			return fmt.Errorf("read --vault-token-file: %w", err)
		}
		a.v.setToken(strings.TrimSpace(string(b)))
		ttl, err := a.v.lookupSelf(cctx)
		if err != nil {
			return fmt.Errorf("the token in --vault-token-file: %w", err)
		}
		a.setToken(strings.TrimSpace(string(b)), ttl, true)
		return nil
	}
	auth, err := a.v.login(cctx, a.cfg.AuthPath, a.cfg.Role, a.cfg.TokenFile)
	a.metrics.login(err)
	if err != nil {
		return err
	}
	a.v.setToken(auth.ClientToken)
	a.setToken(auth.ClientToken, time.Duration(auth.LeaseDuration)*time.Second, auth.Renewable)
	a.log.Info("logged in to vault", "role", a.cfg.Role, "auth_path", a.cfg.AuthPath, "ttl_seconds", auth.LeaseDuration, "policies", strings.Join(auth.Policies, ","))
	return nil
}

func (a *Agent) setToken(tok string, ttl time.Duration, renewable bool) {
	a.mu.Lock()
	now := a.cfg.Now()
	a.st.Token, a.st.Renewable = tok, renewable
	a.st.TokenExpires = now.Add(ttl)
	if ttl == 0 {
		a.st.TokenExpires = time.Time{}
	}
	a.tokenIssued, a.tokenGranted = now, ttl
	a.mu.Unlock()
	a.save()
}

func (a *Agent) save() {
	a.mu.Lock()
	b, _ := json.Marshal(a.st)
	var cp state
	_ = json.Unmarshal(b, &cp)
	a.mu.Unlock()
	if err := a.store.save(&cp); err != nil {
		a.log.Error("saving agent state failed", "err", err)
	}
}

// fetchAndWrite gets a secret, renders and writes its file, and records the
// lease. It reports whether the file changed.
func (a *Agent) fetchAndWrite(ctx context.Context, s spec.Secret) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	f, err := a.v.get(cctx, s.Method, s.Path, s.Params)
	cancel()
	a.metrics.fetch(s.Name, err)
	if err != nil {
		return false, fmt.Errorf("fetch secret %q from %s: %w", s.Name, s.Path, err)
	}
	content, err := a.renderers[s.Name].render(f)
	if err != nil {
		return false, err
	}
	changed, err := a.w.Write(s.Name, content, s.FileMode)
	if err != nil {
		return false, err
	}
	now := a.cfg.Now()
	ss := secretState{Path: s.Path, LeaseID: f.LeaseID, LeaseDuration: f.LeaseDuration, Renewable: f.Renewable, Issued: now, Version: f.Version}
	switch {
	case f.LeaseID != "" && f.LeaseDuration > 0:
		ss.Expires = now.Add(f.LeaseDuration)
	case !f.NotAfter.IsZero():
		ss.Expires = f.NotAfter
		ss.LeaseDuration = f.NotAfter.Sub(now)
	}
	a.mu.Lock()
	if old, ok := a.st.Secrets[s.Name]; ok && !changed {
		ss.Written = old.Written
	} else {
		ss.Written = now
	}
	a.st.Secrets[s.Name] = ss
	a.mu.Unlock()
	a.save()
	a.metrics.setExpiry(s.Name, ss.Expires)
	if changed {
		a.metrics.write(s.Name)
		a.log.Info("secret file written", "secret", s.Name, "version", f.Version, "lease_seconds", int(f.LeaseDuration.Seconds()))
		a.writeStatus()
	}
	return changed, nil
}

// secretLoop keeps one secret fresh: renew its lease at about 2/3 of its
// TTL, fetch anew before it ends or when renewal is refused, or re-read it
// at its refresh interval when it has no lease.
func (a *Agent) secretLoop(ctx context.Context, s spec.Secret) {
	for {
		a.mu.Lock()
		ss := a.st.Secrets[s.Name]
		a.mu.Unlock()
		renew, at := a.plan(s, ss)
		select {
		case <-ctx.Done():
			return
		case <-a.cfg.After(at.Sub(a.cfg.Now())):
		}
		a.mu.Lock()
		cur := a.st.Secrets[s.Name]
		a.mu.Unlock()
		if cur.LeaseID != ss.LeaseID || !cur.Issued.Equal(ss.Issued) {
			continue // re-issued meanwhile (new login): plan again from the new lease
		}
		if renew {
			err := a.renew(ctx, s, ss)
			if err == nil {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("lease renewal refused; fetching a new secret", "secret", s.Name, "err", err)
		}
		var changed bool
		err := retry(ctx, a, "refresh "+s.Name, func(ctx context.Context) error {
			var err error
			changed, err = a.fetchAndWrite(ctx, s)
			return err
		})
		if err != nil {
			return // ctx ended
		}
		if changed {
			a.reloader.reload(ctx, []spec.Reload{a.cfg.Spec.ReloadFor(s)})
		}
	}
}

// plan decides the next action for a secret and when.
func (a *Agent) plan(s spec.Secret, ss secretState) (renew bool, at time.Time) {
	now := a.cfg.Now()
	if ss.Expires.IsZero() || ss.LeaseDuration <= 0 {
		return false, maxTime(ss.Issued, now.Add(-s.Refresh)).Add(s.Refresh)
	}
	// Renew (or re-issue) at about 2/3 of the remaining lifetime, minus
	// up to 10% jitter so Pods started together spread out.
	remaining := ss.Expires.Sub(ss.Issued)
	due := ss.Issued.Add(jitter(remaining * 2 / 3))
	renewable := ss.Renewable && ss.LeaseID != ""
	// A renewal that was granted less than asked means the max TTL is near:
	// fetch anew instead.
	if renewable && ss.Expires.Sub(ss.Issued) < ss.LeaseDuration*9/10 {
		renewable = false
	}
	return renewable, due
}

func (a *Agent) renew(ctx context.Context, s spec.Secret, ss secretState) error {
	var ttl time.Duration
	err := retryWith(ctx, a, "renew "+s.Name, retryOpts{deadline: ss.Expires}, func(ctx context.Context) error {
		var err error
		ttl, err = a.v.renewLease(ctx, ss.LeaseID, ss.LeaseDuration)
		a.metrics.renewal(s.Name, err)
		return err
	})
	if err != nil {
		return err
	}
	now := a.cfg.Now()
	a.mu.Lock()
	cur := a.st.Secrets[s.Name]
	cur.Issued, cur.Expires = now, now.Add(ttl)
	a.st.Secrets[s.Name] = cur
	a.mu.Unlock()
	a.save()
	a.metrics.setExpiry(s.Name, cur.Expires)
	a.writeStatus()
	a.log.Info("lease renewed", "secret", s.Name, "ttl_seconds", int(ttl.Seconds()))
	return nil
}

// tokenLoop renews the agent's Vault token at about 2/3 of its TTL and logs
// in again when it can no longer be renewed; after a new login it fetches
// every leased secret anew (leases end with the token that made them).
func (a *Agent) tokenLoop(ctx context.Context) {
	for {
		a.mu.Lock()
		issued, granted, renewable := a.tokenIssued, a.tokenGranted, a.st.Renewable
		a.mu.Unlock()
		if granted <= 0 { // root or non-expiring token
			<-ctx.Done()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-a.cfg.After(issued.Add(jitter(granted * 2 / 3)).Sub(a.cfg.Now())):
		}
		if renewable {
			cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
			ttl, stillRenewable, err := a.v.renewSelf(cctx)
			cancel()
			if err == nil && ttl >= granted*9/10 {
				a.mu.Lock()
				a.st.Renewable = stillRenewable
				a.mu.Unlock()
				a.setTokenTTL(ttl)
				a.log.Info("vault token renewed", "ttl_seconds", int(ttl.Seconds()))
				continue
			}
			if err != nil && ctx.Err() != nil {
				return
			}
			a.log.Info("vault token can no longer be extended; logging in again", "err", err)
		}
		oldToken := a.currentToken()
		if err := retryLogin(ctx, a, "log in again", a.login); err != nil {
			return
		}
		a.reissueLeased(ctx)
		// The old token's leases were replaced; revoke it (and them).
		go a.revokeToken(oldToken)
	}
}

func (a *Agent) setTokenTTL(ttl time.Duration) {
	a.mu.Lock()
	now := a.cfg.Now()
	a.tokenIssued, a.tokenGranted = now, ttl
	a.st.TokenExpires = now.Add(ttl)
	a.mu.Unlock()
	a.save()
}

func (a *Agent) currentToken() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.Token
}

func (a *Agent) revokeToken(token string) {
	if token == "" || token == a.currentToken() {
		return
	}
	v := a.v.withToken(token)
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.CallTimeout)
	defer cancel()
	if err := v.revokeSelf(ctx); err != nil {
		a.log.Warn("revoking the previous vault token failed; it expires on its own", "err", err)
	}
}

// reissueLeased fetches every leased secret under the current token, writes
// all files, then reloads once.
func (a *Agent) reissueLeased(ctx context.Context) {
	var reloads []spec.Reload
	for _, s := range a.cfg.Spec.Secrets {
		a.mu.Lock()
		leased := a.st.Secrets[s.Name].LeaseID != ""
		a.mu.Unlock()
		if !leased {
			continue
		}
		var changed bool
		if err := retry(ctx, a, "re-issue "+s.Name, func(ctx context.Context) error {
			var err error
			changed, err = a.fetchAndWrite(ctx, s)
			return err
		}); err != nil {
			return
		}
		if changed {
			reloads = append(reloads, a.cfg.Spec.ReloadFor(s))
		}
	}
	a.reloader.reload(ctx, reloads)
}

// shutdown revokes every lease and the token, under a fresh deadline (the
// run's context is already cancelled), and forgets the state.
func (a *Agent) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
	defer cancel()
	a.mu.Lock()
	st := a.st
	a.mu.Unlock()
	if st == nil || st.Token == "" {
		return
	}
	// Revoke each lease at once where the policy allows sys/leases/revoke;
	// revoking the token below revokes them in any case (Vault does that
	// in the background, within seconds).
	revoked := 0
	for name, ss := range st.Secrets {
		if ss.LeaseID == "" {
			continue
		}
		cctx, c := context.WithTimeout(ctx, a.cfg.CallTimeout)
		err := a.v.revokeLease(cctx, ss.LeaseID)
		c()
		if denied(err) {
			a.log.Info("the policy does not allow sys/leases/revoke; leases end with the token's revocation", "hint", "grant update on sys/leases/revoke to revoke them at once")
			break
		}
		if err != nil {
			a.log.Warn("revoking a lease failed", "secret", name, "err", err)
			continue
		}
		revoked++
	}
	if a.cfg.VaultTokenFile == "" {
		cctx, c := context.WithTimeout(ctx, a.cfg.CallTimeout)
		if err := a.v.revokeSelf(cctx); err != nil {
			a.log.Warn("revoking the vault token failed", "err", err)
		}
		c()
	}
	if err := a.store.clear(); err != nil {
		a.log.Warn("clearing agent state failed", "err", err)
	}
	a.log.Info("shut down: token revoked", "leases_revoked_explicitly", revoked)
}

// writeStatus writes the status file beside the secrets: names, versions,
// lease ends — never values.
func (a *Agent) writeStatus() {
	type entry struct {
		Path    string    `json:"path"`
		Version string    `json:"version,omitempty"`
		Expires time.Time `json:"expires,omitzero"`
		Written time.Time `json:"written"`
		Leased  bool      `json:"leased"`
	}
	st := struct {
		Ready    bool             `json:"ready"`
		Degraded bool             `json:"degraded"`
		Secrets  map[string]entry `json:"secrets"`
	}{Ready: a.ready.Load(), Secrets: map[string]entry{}}
	a.mu.Lock()
	for n, ss := range a.st.Secrets {
		st.Secrets[n] = entry{Path: ss.Path, Version: ss.Version, Expires: ss.Expires, Written: ss.Written, Leased: ss.LeaseID != ""}
	}
	a.mu.Unlock()
	a.metrics.mu.Lock()
	st.Degraded = a.metrics.degraded
	a.metrics.mu.Unlock()
	b, _ := json.MarshalIndent(st, "", "  ")
	if _, err := a.w.Write(spec.StatusFile, append(b, '\n'), 0o400); err != nil {
		a.log.Warn("writing the status file failed", "err", err)
	}
}

// serve starts the health and metrics servers.
func (a *Agent) serve() (func(), error) {
	var servers []*http.Server
	start := func(addr string, h http.Handler) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(ln) }()
		return nil
	}
	if err := start(a.cfg.HealthAddr, a.healthMux()); err != nil {
		return nil, err
	}
	if err := start(a.cfg.MetricsAddr, a.metrics); err != nil {
		return nil, err
	}
	return func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}, nil
}

func (a *Agent) healthMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	readyFn := func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "secrets not written yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}
	mux.HandleFunc("/readyz", readyFn)
	mux.HandleFunc("/startup", readyFn)
	mux.HandleFunc("/restart-probe", func(w http.ResponseWriter, r *http.Request) {
		if a.reloader.shouldRestart(r.URL.Query().Get("container")) {
			http.Error(w, "secrets rotated: restart to load them", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// retry runs f until it succeeds or ctx ends, backing off with jitter up to
// a cap; denials back off faster to the cap. A denial caused by an invalid
// agent token (revoked, expired) triggers a new login first.
func retry(ctx context.Context, a *Agent, what string, f func(context.Context) error) error {
	return retryWith(ctx, a, what, retryOpts{}, f)
}

// retryLogin is retry for a login: a denial does not lead to another login,
// and a new service-account token (the kubelet rotated the file) ends the
// backoff at once.
func retryLogin(ctx context.Context, a *Agent, what string, f func(context.Context) error) error {
	return retryWith(ctx, a, what, retryOpts{login: true}, f)
}

type retryOpts struct {
	deadline time.Time // give up rather than wait past it (zero: never)
	login    bool      // f logs in
}

// reauth logs in again when Vault denied a call because the agent's own
// token is no longer valid; the leases made with it ended with it, so every
// leased secret is marked for re-issue.
func (a *Agent) reauth(ctx context.Context, cause error) {
	if a.cfg.VaultTokenFile != "" || !denied(cause) {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	_, err := a.v.lookupSelf(cctx)
	cancel()
	if err == nil {
		return // the token is fine: the policy denies this path
	}
	a.mu.Lock()
	if a.cfg.Now().Sub(a.lastReauth) < 2*time.Second {
		a.mu.Unlock()
		return
	}
	a.lastReauth = a.cfg.Now()
	a.mu.Unlock()
	a.log.Warn("vault token no longer valid; logging in again", "err", err)
	if err := a.login(ctx); err != nil {
		a.log.Error("login failed", "err", err)
		return
	}
	a.mu.Lock()
	now := a.cfg.Now()
	for n, ss := range a.st.Secrets {
		if ss.LeaseID != "" {
			ss.Expires, ss.Renewable = now, false
			a.st.Secrets[n] = ss
		}
	}
	a.mu.Unlock()
	a.save()
}

// retryWith is retry with options.
func retryWith(ctx context.Context, a *Agent, what string, o retryOpts, f func(context.Context) error) error {
	wait := 250 * time.Millisecond
	const maxWait = 30 * time.Second
	for attempt := 1; ; attempt++ {
		// Taken before the attempt: a token rotation during it counts.
		rotated := a.rotated.wait()
		err := f(ctx)
		if err == nil {
			if attempt > 1 {
				a.log.Info("recovered", "what", what, "attempts", attempt)
			}
			a.metrics.setDegraded(false)
			return nil
		}
		a.metrics.setDegraded(true)
		if ctx.Err() != nil {
			return err
		}
		if !o.login {
			a.reauth(ctx, err)
		}
		if permanent(err) {
			wait = min(wait*4, maxWait)
		}
		if !o.deadline.IsZero() && a.cfg.Now().Add(wait).After(o.deadline) {
			return err
		}
		// A new service-account token can help a login, and a call Vault
		// denied: its retry logs in again when the agent's token is invalid.
		if !o.login && !denied(err) {
			rotated = nil
		}
		a.log.Warn("vault call failed; retrying", "what", what, "attempt", attempt, "retry_in", wait.String(), "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-a.cfg.After(jitter(wait)):
		case <-rotated:
			a.log.Info("service-account token file changed; retrying now", "what", what)
		}
		wait = min(wait*2, maxWait)
	}
}

// jitter returns d minus up to 10%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - time.Duration(rand.Int64N(int64(d)/10+1))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
