package sidecar

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ramvault/ramvault/sidecar/clock"
	"github.com/ramvault/ramvault/sidecar/vault"
)

// Backoff is how long to wait after a failed attempt: Initial after the
// first failure, then each wait Factor times the one before, never more than
// Max. Up to the fraction Jitter of each wait is taken off at random; 1 is
// full jitter (a wait anywhere from 0 to the backoff), which spreads the
// agents of many Pods best when Vault comes back after an outage.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Factor  float64
	Jitter  float64
}

// next is the wait after prev (0: none yet), before jitter.
func (b Backoff) next(prev time.Duration) time.Duration {
	if prev <= 0 {
		return min(b.Initial, b.Max)
	}
	return min(time.Duration(float64(prev)*b.Factor), b.Max)
}

// retryPolicy is the backoff for each class of error.
type retryPolicy struct {
	// Transient: no answer, a timeout, a 5xx, a 429.
	Transient Backoff
	// Permanent: a 400, 403 or 404, which retrying cannot fix soon (a
	// policy or a path to change): still retried, but to the cap quickly.
	Permanent Backoff
}

// defaultRetry: backoffs of 250ms, 500ms, 1s, … 30s for transient errors;
// 1s, 8s, 30s for permanent ones; a mix continues from the last backoff with
// the factor of the error at hand. Full jitter on both.
func defaultRetry() retryPolicy {
	return retryPolicy{
		Transient: Backoff{Initial: 250 * time.Millisecond, Max: 30 * time.Second, Factor: 2, Jitter: 1},
		Permanent: Backoff{Initial: time.Second, Max: 30 * time.Second, Factor: 8, Jitter: 1},
	}
}

// maxRetryAfter bounds how long a Retry-After can hold the agent back (a
// rate-limit quota's is seconds; a wrong header must not park the agent).
const maxRetryAfter = 2 * time.Minute

func (p retryPolicy) backoff(err error) Backoff {
	if vault.Permanent(err) {
		return p.Permanent
	}
	return p.Transient
}

// retrier runs an attempt until it succeeds or its context ends. It only
// retries: what an error calls for (a new login) the caller's attempt does.
type retrier struct {
	policy   retryPolicy
	clock    clock.Clock
	log      *slog.Logger
	rotated  *rotation  // the service-account token file changed
	degraded func(bool) // told after every attempt whether it failed
}

type retryOpts struct {
	// deadline, when set, is the last moment for an attempt: a wait that
	// would pass it is cut short to make one last attempt at it, and the
	// error after that attempt is returned (zero: no deadline).
	deadline time.Time
	login    bool // the attempt logs in: a new service-account token ends the wait
	// giveUp, when set, names errors not to retry: the caller does
	// something else about them.
	giveUp func(error) bool
	// maxWait, when set, caps the backoff below the policy's Max (not a
	// Retry-After: Vault asked for that wait).
	maxWait time.Duration
}

// firstWriteMaxWait caps the backoff of the first write, which the app's
// start waits for: with the 30s cap a Pod that started during a long outage
// would stay unready for up to 30s after Vault's return; with 5s it is
// ready within about 5s of it (issue 12 asks for 10s). The herd it could
// make is spread by full jitter: 50 Pods waiting give 10 requests a second.
const firstWriteMaxWait = 5 * time.Second

func (r *retrier) do(ctx context.Context, what string, o retryOpts, f func(context.Context) error) error {
	var wait time.Duration
	for attempt := 1; ; attempt++ {
		// Taken before the attempt: a token rotation during it counts.
		rotated := r.rotated.wait()
		err := f(ctx)
		if err == nil {
			if attempt > 1 {
				r.log.Info("recovered", "what", what, "attempts", attempt)
			}
			r.degraded(false)
			return nil
		}
		r.degraded(true)
		if ctx.Err() != nil || o.giveUp != nil && o.giveUp(err) {
			return err
		}
		b := r.policy.backoff(err)
		if o.maxWait > 0 {
			b.Max = min(b.Max, o.maxWait)
		}
		wait = b.next(wait)
		now := r.clock.Now()
		sleep := jitter(wait, b.Jitter)
		// A 429 or 503 may say when to come back: not before then.
		ra := vault.RetryAfter(err, now)
		if ra > 0 {
			ra = min(ra, maxRetryAfter)
			sleep = max(sleep, ra)
		}
		if !o.deadline.IsZero() && now.Add(sleep).After(o.deadline) {
			// One last attempt at the deadline (Vault may be back by then:
			// an outage shorter than what is left ends in a success, not
			// in giving up early), unless Vault asked to wait past it.
			if !now.Before(o.deadline) || now.Add(ra).After(o.deadline) {
				return err
			}
			sleep = o.deadline.Sub(now)
		}
		// A new service-account token can help a login, and a call Vault
		// denied: its attempt logs in again when the agent's token is invalid.
		if !o.login && !vault.Denied(err) {
			rotated = nil
		}
		r.log.Warn("vault call failed; retrying", "what", what, "attempt", attempt, "retry_in", sleep.String(), "err", err)
		t := r.clock.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		case <-rotated:
			t.Stop()
			r.log.Info("service-account token file changed; retrying now", "what", what)
		}
	}
}

// jitter returns d minus up to the fraction frac of it.
func jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - time.Duration(rand.Int64N(int64(float64(d)*frac)+1))
}
