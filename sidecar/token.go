package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ramvault/ramvault/sidecar/clock"
	"github.com/ramvault/ramvault/sidecar/state"
	"github.com/ramvault/ramvault/sidecar/vault"
)

// session is the agent's Vault token: the first login (or the token the
// init container left), a new login when Vault no longer honours it, and
// when it is due for renewal. The token itself is kept in the state store.
type session struct {
	cfg     config
	vault   vaultClient
	store   *state.Store
	clock   clock.Clock
	log     *slog.Logger
	metrics *metrics
	// onLogin is told of every new token (a login, or the token of
	// --vault-token-file), once it is the current one; nil: nobody.
	onLogin func()

	mu         sync.Mutex
	issued     time.Time     // of the last login or renewal
	granted    time.Duration // TTL then; 0: does not expire
	lastReauth time.Time
	retired    map[string]bool // tokens a new login replaced, not revoked yet
}

// oldTokenGrace is how long a token replaced by a planned new login (and
// the leases made with it, which end with it) stays valid after the app was
// reloaded onto the new credentials: an app that reconnects lazily, or a
// restart the kubelet takes its time over, still has working credentials
// meanwhile. Then it is revoked; at shutdown, at once.
const oldTokenGrace = 2 * time.Minute

// retire keeps old valid for oldTokenGrace, then revokes it (unless ctx
// ends first: shutdown revokes it then).
func (a *agent) retire(ctx context.Context, old string) {
	if old == "" || old == a.token.current() {
		return
	}
	a.token.mu.Lock()
	if a.token.retired == nil {
		a.token.retired = map[string]bool{}
	}
	a.token.retired[old] = true
	a.token.mu.Unlock()
	a.log.Info("previous vault token kept valid for the app to move to the new credentials", "revoked_in", oldTokenGrace.String())
	go func() {
		t := a.clock.NewTimer(oldTokenGrace)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if a.token.unretire(old) {
			a.token.revoke(old)
		}
	}()
}

// unretire takes a retired token off the list; it reports whether it was on
// it (so it is revoked once).
func (t *session) unretire(tok string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	ok := t.retired[tok]
	delete(t.retired, tok)
	return ok
}

// takeRetired empties the list of retired tokens and returns it.
func (t *session) takeRetired() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.retired))
	for tok := range t.retired {
		out = append(out, tok)
	}
	clear(t.retired)
	return out
}

// ensure loads the saved state and keeps its token if Vault still honours
// it; otherwise logs in.
func (t *session) ensure(ctx context.Context) error {
	if _, err := t.store.Load(); err != nil {
		t.log.Warn("agent state unreadable; starting afresh", "err", err)
	}
	if tok := t.store.Token().Token; tok != "" {
		t.vault.SetToken(tok)
		cctx, cancel := context.WithTimeout(ctx, t.cfg.CallTimeout)
		ttl, err := t.vault.LookupSelf(cctx)
		cancel()
		if err == nil && ttl > 0 {
			t.mu.Lock()
			t.issued, t.granted = t.clock.Now(), ttl
			t.mu.Unlock()
			t.log.Info("reusing the Pod's Vault token", "ttl", ttl.String())
			return nil
		}
		t.log.Info("saved Vault token no longer valid; logging in", "err", err)
	}
	t.store.Reset()
	return t.login(ctx)
}

// login logs in with the projected service-account token (or takes the
// token of --vault-token-file) and saves the new token.
func (t *session) login(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, t.cfg.CallTimeout)
	defer cancel()
	if t.cfg.VaultTokenFile != "" {
		b, err := os.ReadFile(t.cfg.VaultTokenFile)
		if err != nil {
			return fmt.Errorf("read --vault-token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		t.vault.SetToken(tok)
		ttl, err := t.vault.LookupSelf(cctx)
		if err != nil {
			return fmt.Errorf("the token in --vault-token-file: %w", err)
		}
		t.set(tok, ttl, true)
		t.loggedIn()
		return nil
	}
	auth, err := t.vault.Login(cctx, t.cfg.AuthPath, t.cfg.Role, t.cfg.TokenFile)
	t.metrics.login(err)
	if err != nil {
		return err
	}
	t.vault.SetToken(auth.ClientToken)
	t.set(auth.ClientToken, time.Duration(auth.LeaseDuration)*time.Second, auth.Renewable)
	t.log.Info("logged in to vault", "role", t.cfg.Role, "auth_path", t.cfg.AuthPath, "ttl_seconds", auth.LeaseDuration, "policies", strings.Join(auth.Policies, ","))
	t.loggedIn()
	return nil
}

func (t *session) loggedIn() {
	if t.onLogin != nil {
		t.onLogin()
	}
}

// set records a new token, valid for ttl from now (0: no end).
func (t *session) set(tok string, ttl time.Duration, renewable bool) {
	now := t.clock.Now()
	st := state.Token{Token: tok, Renewable: renewable}
	if ttl != 0 {
		st.Expires = now.Add(ttl)
	}
	t.mu.Lock()
	t.issued, t.granted = now, ttl
	t.mu.Unlock()
	if err := t.store.SetToken(st); err != nil {
		t.log.Error("saving agent state failed", "err", err)
	}
}

// renewed records a renewal that granted ttl from now.
func (t *session) renewed(ttl time.Duration, renewable bool) {
	now := t.clock.Now()
	t.mu.Lock()
	t.issued, t.granted = now, ttl
	t.mu.Unlock()
	st := t.store.Token()
	st.Expires, st.Renewable = now.Add(ttl), renewable
	if err := t.store.SetToken(st); err != nil {
		t.log.Error("saving agent state failed", "err", err)
	}
}

// lifetime is when the token was last issued or renewed, and for how long.
func (t *session) lifetime() (time.Time, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.issued, t.granted
}

func (t *session) current() string { return t.store.Token().Token }

// reloginIfInvalid logs in again when Vault denied a call (cause) because
// the agent's own token is no longer valid (revoked, expired), not because
// the policy denies the path. It reports whether it logged in: the leases
// made with the old token ended with it. At most one attempt every 2s.
func (t *session) reloginIfInvalid(ctx context.Context, cause error) bool {
	if t.cfg.VaultTokenFile != "" || !vault.Denied(cause) || ctx.Err() != nil {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, t.cfg.CallTimeout)
	_, err := t.vault.LookupSelf(cctx)
	cancel()
	if err == nil {
		return false // the token is fine: the policy denies this path
	}
	now := t.clock.Now()
	t.mu.Lock()
	if now.Sub(t.lastReauth) < 2*time.Second {
		t.mu.Unlock()
		return false
	}
	t.lastReauth = now
	t.mu.Unlock()
	t.log.Warn("vault token no longer valid; logging in again", "err", err)
	if err := t.login(ctx); err != nil {
		t.log.Error("login failed", "err", err)
		return false
	}
	return true
}

// revoke revokes a token a new login replaced (and the leases made with
// it), unless it is the current one.
func (t *session) revoke(token string) {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.CallTimeout)
	defer cancel()
	t.revokeWithin(ctx, token)
}

func (t *session) revokeWithin(ctx context.Context, token string) bool {
	if token == "" || token == t.current() {
		return false
	}
	if err := t.vault.RevokeToken(ctx, token); err != nil {
		t.log.Warn("revoking the previous vault token failed; it expires on its own", "err", err)
		return false
	}
	t.log.Info("previous vault token revoked")
	return true
}

// tokenLoop renews the agent's Vault token at about 2/3 of its TTL and logs
// in again when it can no longer be renewed; after a new login it fetches
// every leased secret anew (leases end with the token that made them).
func (a *agent) tokenLoop(ctx context.Context) {
	for {
		relogged := a.relogged.wait()
		issued, granted := a.token.lifetime()
		renewable := a.store.Token().Renewable
		if granted <= 0 { // root or non-expiring token
			<-ctx.Done()
			return
		}
		t := a.clock.NewTimer(issued.Add(jitter(granted*2/3, renewJitter)).Sub(a.clock.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-relogged:
			t.Stop()
			continue // a new login: plan from the new token
		case <-t.C:
		}
		if renewable {
			ttl, stillRenewable, err := a.renewToken(ctx, issued.Add(granted), granted)
			if err == nil && ttl >= granted*9/10 {
				a.token.renewed(ttl, stillRenewable)
				a.log.Info("vault token renewed", "ttl_seconds", int(ttl.Seconds()))
				continue
			}
			if err != nil && ctx.Err() != nil {
				return
			}
			a.log.Info("vault token can no longer be extended; logging in again", "err", err)
		}
		oldToken := a.token.current()
		if err := a.retry.do(ctx, "log in again", retryOpts{login: true}, a.token.login); err != nil {
			return
		}
		a.reissueLeased(ctx)
		// The old token's leases were replaced and the app reloaded:
		// revoke it (and them) once the app had time to move.
		a.retire(ctx, oldToken)
	}
}

// renewToken renews the agent's token, which ends at expires. As with a
// lease (renew), a failure without an answer is retried until the margin
// before that end: a new login would replace the token and with it every
// lease, so an outage over the renewal point would cost a re-issue and a
// reload of the app although the token was still good. A refusal is not
// retried: the caller logs in again.
func (a *agent) renewToken(ctx context.Context, expires time.Time, granted time.Duration) (ttl time.Duration, renewable bool, err error) {
	last := expires.Add(-renewMargin(granted))
	err = a.retry.do(ctx, "renew the vault token", retryOpts{deadline: last, giveUp: vault.Permanent}, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
		defer cancel()
		var err error
		ttl, renewable, err = a.vault.RenewSelf(cctx)
		return err
	})
	return ttl, renewable, err
}
