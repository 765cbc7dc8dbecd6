package sidecar

import (
	"context"
	"fmt"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/sidecar/render"
	"github.com/ramvault/ramvault/sidecar/state"
	"github.com/ramvault/ramvault/sidecar/vault"
)

// renewJitter is the fraction of a renewal's wait taken off at random, so
// Pods started together spread out.
const renewJitter = 0.1

// stillValid reports whether a secret's file and lease (from the state the
// init container or an earlier sidecar left) can be kept.
func (a *agent) stillValid(s spec.Secret) bool {
	ss, ok := a.store.Secret(s.Name)
	if !ok || ss.Path != s.Path {
		return false
	}
	if !a.files.Exists(s.Name) {
		return false
	}
	if !ss.Expires.IsZero() && a.clock.Now().After(ss.Expires.Add(-ss.LeaseDuration/3)) {
		return false
	}
	return true
}

// fetchWithRelogin gets a secret, renders and writes its file, and records the lease.
// It reports whether the file changed. When Vault denied the call because
// the agent's token is no longer valid, it logs in again first (and marks
// every lease for re-issue), so the retry runs under the new token.
func (a *agent) fetchWithRelogin(ctx context.Context, s spec.Secret) (bool, error) {
	changed, err := a.fetchAndWrite(ctx, s)
	if err != nil && a.token.reloginIfInvalid(ctx, err) {
		a.expireLeases()
	}
	return changed, err
}

func (a *agent) fetchAndWrite(ctx context.Context, s spec.Secret) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	f, err := a.vault.Get(cctx, s.Method, s.Path, s.Params)
	cancel()
	a.metrics.fetch(s.Name, err)
	if err != nil {
		return false, fmt.Errorf("fetch secret %q from %s: %w", s.Name, s.Path, err)
	}
	content, err := a.renderers[s.Name].Render(render.Input{Data: f.Data, LeaseID: f.LeaseID, LeaseDuration: f.LeaseDuration, Renewable: f.Renewable})
	if err != nil {
		return false, err
	}
	changed, err := a.files.Write(s.Name, content, s.FileMode)
	if err != nil {
		return false, err
	}
	now := a.clock.Now()
	ss := state.Secret{Path: s.Path, LeaseID: f.LeaseID, LeaseDuration: f.LeaseDuration, Renewable: f.Renewable, Issued: now, Version: f.Version}
	switch {
	case f.LeaseID != "" && f.LeaseDuration > 0:
		ss.Expires = now.Add(f.LeaseDuration)
	case !f.NotAfter.IsZero():
		ss.Expires = f.NotAfter
		ss.LeaseDuration = f.NotAfter.Sub(now)
	}
	ss, err = a.store.UpdateSecret(s.Name, func(old state.Secret, ok bool) state.Secret {
		if ok && !changed {
			ss.Written = old.Written
		} else {
			ss.Written = now
		}
		return ss
	})
	a.saved(err)
	a.metrics.setExpiry(s.Name, ss.Expires)
	if changed {
		a.metrics.write(s.Name)
		a.log.Info("secret file written", "secret", s.Name, "version", f.Version, "lease_seconds", int(f.LeaseDuration.Seconds()))
		a.writeStatus()
	}
	return changed, nil
}

// expireLeases marks every leased secret for re-issue, and wakes their
// loops to do it now: a new login replaced the (invalid) token their leases
// were made with, so those leases are gone too.
func (a *agent) expireLeases() {
	now := a.clock.Now()
	a.saved(a.store.UpdateSecrets(func(_ string, ss state.Secret) state.Secret {
		if ss.LeaseID != "" {
			ss.Expires, ss.Renewable = now, false
		}
		return ss
	}))
	a.relogged.signal()
}

// saved logs a failure to save the agent's state (the agent goes on: the
// state only spares a restarted sidecar a new login).
func (a *agent) saved(err error) {
	if err != nil {
		a.log.Error("saving agent state failed", "err", err)
	}
}

// secretLoop keeps one secret fresh: renew its lease at about 2/3 of its
// TTL, fetch anew before it ends or when renewal is refused, or re-read it
// at its refresh interval when it has no lease.
func (a *agent) secretLoop(ctx context.Context, s spec.Secret) {
	for {
		relogged := a.relogged.wait()
		ss, _ := a.store.Secret(s.Name)
		renew, at := a.plan(s, ss)
		t := a.clock.NewTimer(at.Sub(a.clock.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-relogged:
			t.Stop()
			continue // plan again: a leased secret is due now
		case <-t.C:
		}
		if cur, _ := a.store.Secret(s.Name); cur.LeaseID != ss.LeaseID || !cur.Issued.Equal(ss.Issued) {
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
		err := a.retry.do(ctx, "refresh "+s.Name, retryOpts{}, func(ctx context.Context) error {
			var err error
			changed, err = a.fetchWithRelogin(ctx, s)
			return err
		})
		if err != nil {
			return // ctx ended
		}
		if changed {
			a.reloader.Reload(ctx, []spec.Reload{a.cfg.Spec.ReloadFor(s)})
		}
	}
}

// plan decides the next action for a secret and when.
func (a *agent) plan(s spec.Secret, ss state.Secret) (renew bool, at time.Time) {
	now := a.clock.Now()
	if ss.Expires.IsZero() || ss.LeaseDuration <= 0 {
		return false, maxTime(ss.Issued, now.Add(-s.Refresh)).Add(s.Refresh)
	}
	// Renew (or re-issue) at about 2/3 of the remaining lifetime, minus
	// up to 10% jitter so Pods started together spread out.
	remaining := ss.Expires.Sub(ss.Issued)
	due := ss.Issued.Add(jitter(remaining*2/3, renewJitter))
	renewable := ss.Renewable && ss.LeaseID != ""
	// A renewal that was granted less than asked means the max TTL is near:
	// fetch anew instead.
	if renewable && ss.Expires.Sub(ss.Issued) < ss.LeaseDuration*9/10 {
		renewable = false
	}
	return renewable, due
}

// renew extends a secret's lease, retrying until the lease would end. A
// refusal (lease not found or revoked, permission denied) is not retried:
// the caller fetches a new secret at once, after a new login when the
// agent's token was the cause.
func (a *agent) renew(ctx context.Context, s spec.Secret, ss state.Secret) error {
	var ttl time.Duration
	err := a.retry.do(ctx, "renew "+s.Name, retryOpts{deadline: ss.Expires, giveUp: vault.Permanent}, func(ctx context.Context) error {
		var err error
		ttl, err = a.vault.RenewLease(ctx, ss.LeaseID, ss.LeaseDuration)
		a.metrics.renewal(s.Name, err)
		if err != nil && a.token.reloginIfInvalid(ctx, err) {
			a.expireLeases()
		}
		return err
	})
	if err != nil {
		return err
	}
	now := a.clock.Now()
	cur, err := a.store.UpdateSecret(s.Name, func(cur state.Secret, _ bool) state.Secret {
		cur.Issued, cur.Expires = now, now.Add(ttl)
		return cur
	})
	a.saved(err)
	a.metrics.setExpiry(s.Name, cur.Expires)
	a.writeStatus()
	a.log.Info("lease renewed", "secret", s.Name, "ttl_seconds", int(ttl.Seconds()))
	return nil
}

// reissueLeased fetches every leased secret under the current token, writes
// all files, then reloads once.
func (a *agent) reissueLeased(ctx context.Context) {
	var reloads []spec.Reload
	for _, s := range a.cfg.Spec.Secrets {
		if ss, _ := a.store.Secret(s.Name); ss.LeaseID == "" {
			continue
		}
		var changed bool
		if err := a.retry.do(ctx, "re-issue "+s.Name, retryOpts{}, func(ctx context.Context) error {
			var err error
			changed, err = a.fetchWithRelogin(ctx, s)
			return err
		}); err != nil {
			return
		}
		if changed {
			reloads = append(reloads, a.cfg.Spec.ReloadFor(s))
		}
	}
	a.reloader.Reload(ctx, reloads)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

var _ vaultClient = (*vault.Client)(nil)
