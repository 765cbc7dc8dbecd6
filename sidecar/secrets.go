package sidecar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/pkg/tmpfs"
	"github.com/ramvault/ramvault/sidecar/state"
	"github.com/ramvault/ramvault/sidecar/vault"
)

// renewJitter is the fraction of a renewal's wait taken off at random, so
// Pods started together spread out.
const renewJitter = 0.1

// stillValid reports whether a dependency's lease (from the state the init
// container or an earlier sidecar left) can be kept: the same request, every
// file that uses it on the volume, and not near its end.
func (a *agent) stillValid(d *dep) bool {
	ss, ok := a.store.Secret(d.name)
	if !ok || ss.Path != d.path || ss.Key != d.key {
		return false
	}
	for _, f := range d.files {
		if !a.files.Exists(f.path) {
			return false
		}
	}
	if !ss.Expires.IsZero() && a.clock.Now().After(ss.Expires.Add(-ss.LeaseDuration/3)) {
		return false
	}
	return true
}

// change is one update of the files: the dependencies fetched anew and every
// file that uses them. Its fetches survive a failed attempt (pending), so a
// retry does not issue a second lease for a dependency the first attempt
// already got.
type change struct {
	epoch   int64 // the logins when pending was fetched: a new login voids it
	due     []*dep
	files   []*file // rendered whatever their dependencies did (the first write of a file that has none)
	force   bool    // render every file of due even when a response is unchanged (the first write)
	pending map[*dep]*vault.Secret
}

func newChange(due []*dep, force bool) *change {
	return &change{due: due, force: force, pending: map[*dep]*vault.Secret{}, epoch: -1}
}

// apply is one attempt at a change: fetch the due dependencies (and, for the
// files to render, any dependency whose value this process does not hold:
// the init container fetched it), render every file that uses a changed
// one, write them all as one set, then record the leases. If any fetch or
// render fails, no file is written and no lease recorded: the old set stays.
// It returns the files whose content changed.
func (a *agent) apply(ctx context.Context, c *change) (_ []*file, err error) {
	a.txMu.Lock()
	defer a.txMu.Unlock()
	if e := a.epoch.Load(); e != c.epoch {
		clear(c.pending) // leases of a token that is no longer valid
		c.epoch = e
	}
	defer func() {
		if err != nil {
			// Only what a new request would replace (a lease, an
			// issuance) is kept for the retry; a KV read is read again.
			for d, v := range c.pending {
				if v.LeaseID == "" && v.NotAfter.IsZero() && d.method == "read" {
					delete(c.pending, d)
				}
			}
		}
	}()
	fetched := map[*dep]bool{}
	changed := map[*dep]bool{}
	affected := map[*file]bool{}
	var order []*file
	affect := func(d *dep) {
		for _, f := range d.files {
			if !affected[f] {
				affected[f] = true
				order = append(order, f)
			}
		}
	}
	// fetch gets every dep of ds not fetched yet, at once (the first write
	// is what the app waits for).
	fetch := func(ds []*dep) error {
		var todo []*dep
		for _, d := range ds {
			if !fetched[d] {
				todo = append(todo, d)
			}
		}
		errs := make([]error, len(todo))
		got := make([]*vault.Secret, len(todo))
		var wg sync.WaitGroup
		for i, d := range todo {
			if c.pending[d] != nil {
				continue
			}
			wg.Go(func() { got[i], errs[i] = a.fetch(ctx, d) })
		}
		wg.Wait()
		for i, d := range todo {
			if got[i] != nil {
				c.pending[d] = got[i]
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		for _, d := range todo {
			fetched[d] = true
			ss, _ := a.store.Secret(d.name)
			// The saved digest is of the response the files were last
			// rendered from (here or in the init container): the same
			// response renders the same files.
			if c.force || ss.Key != d.key || ss.Digest != digest(c.pending[d]) {
				changed[d] = true
				affect(d)
			}
		}
		return nil
	}
	for _, f := range c.files {
		if !affected[f] {
			affected[f] = true
			order = append(order, f)
		}
	}
	if err := fetch(c.due); err != nil {
		return nil, err
	}
	// The files to render need every one of their dependencies; those this
	// process holds no value of are fetched too (a lease among them is
	// issued anew, and its files join the change).
	for i := 0; i < len(order); i++ {
		var missing []*dep
		for _, d := range order[i].deps {
			if !fetched[d] && a.values[d] == nil {
				missing = append(missing, d)
			}
		}
		if err := fetch(missing); err != nil {
			return nil, err
		}
	}
	vals := make(map[*dep]*vault.Secret, len(a.values)+len(c.pending))
	for d, v := range a.values {
		vals[d] = v
	}
	for d := range fetched {
		vals[d] = c.pending[d]
	}
	var set []tmpfs.File
	for _, f := range order {
		content, err := renderFile(f, vals)
		if err != nil {
			return nil, err
		}
		set = append(set, tmpfs.File{Name: f.path, Data: content, Mode: f.secret.FileMode})
	}
	written, err := a.files.WriteSet(set)
	if err != nil {
		// No file of the set was written: each one's dependencies carry
		// the error in /status (a full tmpfs is no Vault call).
		for _, f := range order {
			names := make([]string, 0, len(f.deps))
			for _, d := range f.deps {
				names = append(names, d.name)
			}
			a.metrics.writeFailed(f.secret.Name, names, err)
		}
		return nil, err
	}
	now := a.clock.Now()
	var out []*file
	for _, f := range order {
		for _, n := range written {
			if n == f.path {
				out = append(out, f)
				a.setWritten(f.secret.Name, now)
				a.metrics.write(f.secret.Name)
			}
		}
	}
	for d := range fetched {
		v := c.pending[d]
		a.values[d] = v
		a.record(d, v, now)
	}
	clear(c.pending)
	if len(written) > 0 {
		a.log.Info("files written", "files", written, "dependencies", depNames(changed))
	}
	a.writeStatus()
	return out, nil
}

func depNames(m map[*dep]bool) []string {
	out := []string{}
	for d := range m {
		out = append(out, d.name)
	}
	return out
}

// fetch makes one dependency's request under the call timeout. When Vault
// denied it because the agent's token is no longer valid, it logs in again
// first (and marks every lease for re-issue), so the retry runs under the
// new token.
func (a *agent) fetch(ctx context.Context, d *dep) (*vault.Secret, error) {
	cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	v, err := a.vault.Get(cctx, d.method, d.request(), d.params)
	cancel()
	a.metrics.fetch(d.name, err)
	if err != nil {
		if a.token.reloginIfInvalid(ctx, err) {
			a.expireLeases()
		}
		return nil, fmt.Errorf("fetch secret %q from %s: %w", d.name, d.path, err)
	}
	if v.Raw == nil {
		v.Raw = v.Data
	}
	return v, nil
}

// record saves a dependency's new lease and schedule (never its value).
func (a *agent) record(d *dep, v *vault.Secret, now time.Time) {
	ss := state.Secret{Path: d.path, Key: d.key, Digest: digest(v), LeaseID: v.LeaseID, LeaseDuration: v.LeaseDuration, Renewable: v.Renewable, Issued: now, LeaseStart: now, Version: v.Version, Written: now}
	switch {
	case v.LeaseID != "" && v.LeaseDuration > 0:
		ss.Expires = now.Add(v.LeaseDuration)
	case !v.NotAfter.IsZero():
		ss.Expires = v.NotAfter
		ss.LeaseDuration = v.NotAfter.Sub(now)
	}
	ss, err := a.store.UpdateSecret(d.name, func(old state.Secret, ok bool) state.Secret {
		if ok && old.Digest == ss.Digest {
			ss.Written = old.Written
		}
		if ok && old.Key == ss.Key && ss.LeaseID != "" {
			ss.MaxTTL = old.MaxTTL // the same role: the same max TTL
		}
		return ss
	})
	a.saved(err)
	a.metrics.setExpiry(d.name, ss.Expires)
	if v.LeaseID != "" || !v.NotAfter.IsZero() {
		a.log.Info("secret fetched", "dependency", d.name, "path", d.path, "version", v.Version, "lease_seconds", int(v.LeaseDuration.Seconds()))
	}
}

// expireLeases marks every leased secret for re-issue, and wakes their
// loops to do it now: a new login replaced the (invalid) token their leases
// were made with, so those leases are gone too.
func (a *agent) expireLeases() {
	a.epoch.Add(1)
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

// depLoop keeps one dependency fresh: renew its lease at about 2/3 of its
// TTL, fetch anew before it ends or when renewal is refused, or re-read it
// at its refresh interval when it has no lease; a new value re-renders
// every file that uses it, and the app is reloaded once.
func (a *agent) depLoop(ctx context.Context, d *dep) {
	for {
		relogged := a.relogged.wait()
		ss, _ := a.store.Secret(d.name)
		renew, at := a.plan(d, ss)
		a.setNext(d.name, at)
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
		if cur, _ := a.store.Secret(d.name); cur.LeaseID != ss.LeaseID || !cur.Issued.Equal(ss.Issued) {
			continue // re-issued meanwhile (new login, or with another dependency): plan again
		}
		if renew {
			err := a.renew(ctx, d, ss)
			if err == nil {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if vault.Permanent(err) {
				a.log.Warn("lease renewal refused; fetching a new secret", "dependency", d.name, "err", err)
			} else {
				a.log.Warn("lease renewal failed until near the lease's end; fetching a new secret", "dependency", d.name, "err", err)
			}
		}
		if !a.update(ctx, "refresh "+d.name, []*dep{d}) {
			return // ctx ended
		}
	}
}

// update applies a change of due, retrying with backoff until it succeeds
// (or ctx ends, false), then reloads the app once for every file written.
func (a *agent) update(ctx context.Context, what string, due []*dep) bool {
	c := newChange(due, false)
	var written []*file
	err := a.retry.do(ctx, what, retryOpts{}, func(ctx context.Context) error {
		var err error
		written, err = a.apply(ctx, c)
		return err
	})
	if err != nil {
		return false
	}
	a.reloader.Reload(ctx, a.reloadsOf(written))
	releaseMemory()
	return true
}

// reloadsOf is the union of the reloads of files (the reloader does each
// distinct one once).
func (a *agent) reloadsOf(files []*file) []spec.Reload {
	var rs []spec.Reload
	for _, f := range files {
		rs = append(rs, a.cfg.Spec.ReloadFor(f.secret))
	}
	return rs
}

// plan decides the next action for a dependency and when.
func (a *agent) plan(d *dep, ss state.Secret) (renew bool, at time.Time) {
	now := a.clock.Now()
	if ss.Expires.IsZero() || ss.LeaseDuration <= 0 {
		return false, maxTime(ss.Issued, now.Add(-d.refresh)).Add(d.refresh)
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
	// A lease whose max TTL is known: a renewal that could extend it by
	// less than a third of its TTL (the most a renewal at 2/3 gains) is
	// not worth a request; fetch anew instead, when it would have been
	// renewed. (With a 1 min TTL and a 3 min max: 3 renewals and 1 fetch a
	// lifetime instead of 4 and 1.)
	if renewable && ss.MaxTTL > 0 && !ss.LeaseStart.IsZero() &&
		ss.LeaseStart.Add(ss.MaxTTL).Sub(ss.Expires) < ss.LeaseDuration/3 {
		renewable = false
	}
	return renewable, due
}

// renewMargin is how long before the end of a lease (or of the agent's
// token) of the given duration the agent stops retrying its renewal and
// fetches anew (logs in again) instead: a tenth of it, at most 5 s, time
// enough to fetch and write the new secret before the old one ends.
func renewMargin(lease time.Duration) time.Duration { return min(lease/10, 5*time.Second) }

// renew extends a dependency's lease. A failure without an answer (Vault
// down, 5xx, 429) is retried with the transient backoff until the margin
// before the lease's end, the last attempt at it: a Vault back before then
// renews the same lease, so the credentials, the files and the app stay as
// they are. A refusal (lease not found or revoked, permission denied) is
// not retried: the caller fetches a new secret at once, after a new login
// when the agent's token was the cause.
func (a *agent) renew(ctx context.Context, d *dep, ss state.Secret) error {
	var ttl time.Duration
	last := ss.Expires.Add(-renewMargin(ss.Expires.Sub(ss.Issued)))
	err := a.retry.do(ctx, "renew "+d.name, retryOpts{deadline: last, giveUp: vault.Permanent}, func(ctx context.Context) error {
		var err error
		ttl, err = a.vault.RenewLease(ctx, ss.LeaseID, ss.LeaseDuration)
		a.metrics.renewal(d.name, err)
		if err != nil && a.token.reloginIfInvalid(ctx, err) {
			a.expireLeases()
		}
		return err
	})
	if err != nil {
		return err
	}
	now := a.clock.Now()
	cur, err := a.store.UpdateSecret(d.name, func(cur state.Secret, _ bool) state.Secret {
		cur.Issued, cur.Expires = now, now.Add(ttl)
		if ttl < cur.LeaseDuration*9/10 && !cur.LeaseStart.IsZero() {
			// Granted short: the lease ends at its max TTL.
			cur.MaxTTL = cur.Expires.Sub(cur.LeaseStart)
		}
		return cur
	})
	a.saved(err)
	a.metrics.setExpiry(d.name, cur.Expires)
	// No status write here: depLoop plans the next renewal at once, and
	// setNext writes the status file with the new lease end and the new
	// time (it was written twice per renewal).
	a.log.Info("lease renewed", "dependency", d.name, "ttl_seconds", int(ttl.Seconds()))
	return nil
}

// reissueLeased fetches every leased dependency under the current token,
// writes all changed files as one set, then reloads once.
func (a *agent) reissueLeased(ctx context.Context) {
	var due []*dep
	for _, d := range a.graph.deps {
		if ss, _ := a.store.Secret(d.name); ss.LeaseID != "" {
			due = append(due, d)
		}
	}
	if len(due) > 0 {
		a.update(ctx, "re-issue leases", due)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

var _ vaultClient = (*vault.Client)(nil)
