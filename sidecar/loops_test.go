package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ramvault/ramvault/sidecar/clock"
	"github.com/ramvault/ramvault/sidecar/vault"
)

// The tests of the agent's loops run a whole agent in sidecar mode on a fake
// clock, a fake Vault and files in memory: no real sleep, no network. Each
// step moves the clock to the next wait of a loop and then waits until every
// loop waits again.

const dbSecret = "ramvault.io/secret-db"

// start runs the agent until the test ends; it returns once the first
// write is done and every loop (the token's and one per secret) waits.
func (ta *testAgent) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ta.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("the agent did not stop")
		}
	})
	// The first write may merge dependencies (KV v2 reads with and without
	// data/): count the loops only once it is done.
	for deadline := time.Now().Add(5 * time.Second); !ta.ready.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not ready after the first write")
		}
	}
	ta.settle(t)
}

// loops is how many waits the agent has when idle.
func (ta *testAgent) loops() int { return 1 + len(ta.graph.deps) }

// settle waits until every loop of the agent waits on the clock, and the
// waits stay as they are for a moment: a loop that was woken (by a new
// login, say) may still be about to stop its wait and plan again.
func (ta *testAgent) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if !ta.clock.BlockUntil(ctx, ta.loops()) {
			t.Fatalf("the agent's loops did not come to wait (pending waits %v; Vault calls %v)", ta.clock.Pending(), ta.vault.calls)
		}
		v := ta.clock.Version()
		time.Sleep(5 * time.Millisecond)
		if ta.clock.Version() == v {
			return
		}
	}
}

// step moves the clock to the next wait and lets the agent act on it; it
// returns how far the clock moved.
func (ta *testAgent) step(t *testing.T) time.Duration {
	t.Helper()
	d := ta.clock.AdvanceToNext()
	ta.settle(t)
	return d
}

func TestALeaseIsRenewedAtAboutTwoThirdsOfItsTTL(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app"})
	ta.vault.leaseTTL = time.Minute
	ta.start(t)
	first := ta.files.content("db")
	start := ta.clock.Now()

	for i := range 3 {
		d := ta.step(t)
		if d < 36*time.Second || d > 40*time.Second {
			t.Errorf("renewal %d after %s; want 2/3 of the 60s TTL minus up to 10%% (36–40s)", i+1, d)
		}
		if n := ta.vault.count("renew-lease "); n != i+1 {
			t.Fatalf("%d renewals after %s, want %d", n, ta.clock.Now().Sub(start), i+1)
		}
	}
	if n := ta.vault.count("get "); n != 1 {
		t.Errorf("%d fetches; a renewable lease must be renewed, not fetched anew", n)
	}
	if ta.files.content("db") != first || ta.files.writesOf("db") != 1 {
		t.Error("the file was rewritten although the lease was only renewed")
	}
	if n := ta.vault.count("login"); n != 1 {
		t.Errorf("%d logins, want 1", n)
	}
}

func TestALeaseIsReissuedBeforeItsMaxTTL(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app"})
	ta.vault.leaseTTL, ta.vault.leaseMax = time.Minute, 100*time.Second
	ta.start(t)
	issued := ta.clock.Now()
	first := ta.files.content("db")

	// ~40s: renewed to 60s more (the max is 100s away from the issue);
	// ~80s: renewed, but only to the max (20s, less than asked); then a
	// new secret must be fetched before the max TTL ends the old one.
	for ta.vault.count("get ") < 2 {
		ta.step(t)
		if ta.clock.Now().Sub(issued) > 10*time.Minute {
			t.Fatal("never fetched a new secret")
		}
	}
	at := ta.clock.Now().Sub(issued)
	if at >= 100*time.Second {
		t.Errorf("new secret fetched %s after the first, at or past its 100s max TTL", at)
	}
	if at < 80*time.Second {
		t.Errorf("new secret fetched after %s; want the lease renewed while it could be (to ~80s)", at)
	}
	if n := ta.vault.count("renew-lease "); n != 2 {
		t.Errorf("%d renewals before the re-issue, want 2", n)
	}
	if got := ta.files.content("db"); got == first || !strings.Contains(got, "u2") {
		t.Errorf("the file holds %q after the re-issue; want the new credentials", got)
	}
	// The new lease is renewed in turn, at about 2/3 of its TTL.
	before := ta.vault.count("renew-lease ")
	if d := ta.step(t); d < 36*time.Second || d > 40*time.Second || ta.vault.count("renew-lease ") != before+1 {
		t.Errorf("the new lease: next renewal after %s (renewals %d→%d)", d, before, ta.vault.count("renew-lease "))
	}
}

// Vault does not tell a lease's max TTL; the capped renewal of the first
// lease tells it, and the next lease of the same request does not spend a
// request on a renewal that cannot extend it.
func TestARenewalThatCouldNotExtendTheLeaseIsNotSent(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app"})
	ta.vault.leaseTTL, ta.vault.leaseMax = time.Minute, 3*time.Minute
	ta.start(t)
	// First lease: ~40s, ~80s, ~120s renewed in full (to the max at
	// 180s), ~160s granted 20s (short: the max is learned), then fetched
	// anew. Second lease: renewed while a renewal gains at least 20s,
	// then fetched when the next renewal would gain nothing.
	for ta.vault.count("get ") < 3 {
		ta.step(t)
		if ta.vault.count("renew-lease ") > 20 {
			t.Fatal("never fetched a third secret")
		}
	}
	renewals := ta.vault.count("renew-lease ")
	// 4 renewals of the first lease (the last one capped), 3 of the second.
	if renewals != 7 {
		t.Errorf("%d renewals over two leases of a 1m TTL / 3m max, want 4 + 3 (the second lease's max is known)", renewals)
	}
}

func TestATokenThatCanNoLongerBeRenewedLeadsToANewLoginAndReissue(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*fakeVault)
	}{
		{"renewal granted less than asked (max TTL near)", func(f *fakeVault) { f.renewTTL = 10 * time.Minute }},
		{"renewal refused", func(f *fakeVault) {
			f.fail = func(call string) error {
				if call == "renew-self" {
					return denial()
				}
				return nil
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app"})
			ta.vault.tokenTTL = time.Hour
			ta.vault.leaseTTL, ta.vault.leaseMax = 24*time.Hour, 48*time.Hour // the lease's loop stays asleep
			tc.setup(ta.vault)
			ta.start(t)
			first := ta.files.content("db")

			d := ta.step(t)
			if d < 36*time.Minute || d > 40*time.Minute {
				t.Errorf("token renewal after %s; want 2/3 of its 1h TTL minus up to 10%%", d)
			}
			if n := ta.vault.count("renew-self"); n != 1 {
				t.Fatalf("%d token renewals, want 1", n)
			}
			if n := ta.vault.count("login"); n != 2 {
				t.Fatalf("%d logins, want a second one", n)
			}
			if n := ta.vault.count("get "); n != 2 {
				t.Errorf("%d fetches; the leased secret must be re-issued under the new token", n)
			}
			if ta.files.content("db") == first {
				t.Error("the file still holds the credentials of the old token")
			}
			if got := ta.token.current(); got != "s.token-2" || ta.store.Token().Token != "s.token-2" {
				t.Errorf("token in use %q, saved %q; want the new one", got, ta.store.Token().Token)
			}
			// The old token stays valid for the app to move, then is revoked.
			if ta.vault.count("revoke-token ") != 0 {
				t.Fatal("the old token was revoked right after the new login")
			}
			if d := ta.step(t); d != 2*time.Minute {
				t.Errorf("next wait %s, want the old token's 2m grace", d)
			}
			if ta.vault.count("revoke-token s.token-1") != 1 {
				t.Error("the old token was not revoked after its grace")
			}
		})
	}
}

// A call denied because the agent's token was revoked from outside logs in
// again at once (not at the token's schedule); a call denied by the policy,
// with a valid token, does not.
func TestACallDeniedForAnInvalidTokenLogsInAgain(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{"ramvault.io/secret-cfg": "secret/data/cfg", "ramvault.io/refresh-cfg": "1m"})
	ta.vault.kv["secret/data/cfg"] = map[string]any{"k": "v1"}
	ta.start(t)

	// The token is revoked from outside; the next re-read is denied.
	ta.vault.mu.Lock()
	ta.vault.revoke(ta.vault.token)
	ta.vault.kv["secret/data/cfg"] = map[string]any{"k": "v2"}
	ta.vault.mu.Unlock()
	if d := ta.clock.AdvanceToNext(); d != time.Minute {
		t.Fatalf("re-read after %s, want its 1m refresh", d)
	}
	// Denied, new login, then the retry waits out its first backoff.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !ta.clock.BlockUntil(ctx, 2) {
		t.Fatal("no retry")
	}
	if n := ta.vault.count("login"); n != 2 {
		t.Fatalf("%d logins after the denial, want 2", n)
	}
	if d := ta.step(t); d > time.Second {
		t.Errorf("retried after %s; want the first backoff of a denial (1s)", d)
	}
	if got := ta.files.content("cfg"); !strings.Contains(got, "v2") {
		t.Errorf("file %q: want the value re-read under the new token", got)
	}

	// Now the policy denies the path while the token is fine: no login.
	ta.vault.mu.Lock()
	ta.vault.fail = func(call string) error {
		if strings.HasPrefix(call, "get ") {
			return denial()
		}
		return nil
	}
	ta.vault.mu.Unlock()
	ta.clock.AdvanceToNext()
	if !ta.clock.BlockUntil(ctx, 2) {
		t.Fatal("no retry")
	}
	if n := ta.vault.count("login"); n != 2 {
		t.Errorf("%d logins after a policy denial, want still 2", n)
	}
}

// The retry policy is a value: each class of error has its own backoff,
// growing by its factor up to its cap.
func TestBackoffGrowsByClassAndIsCapped(t *testing.T) {
	transient := errBoom
	permanent := denial() // a 403: retrying cannot fix it soon
	cases := []struct {
		name string
		errs []error // the error of each attempt
		want []time.Duration
	}{
		{"transient errors double from 250ms to the 30s cap", repeat(transient, 10),
			ms(250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000)},
		{"permanent errors reach the cap fast", repeat(permanent, 4), ms(1000, 8000, 30000, 30000)},
		{"a mix continues from the last wait", []error{transient, transient, permanent, transient}, ms(250, 500, 4000, 8000)},
	}
	// The first write, which the app waits for, backs off to 5s only.
	firstWrite := []struct {
		name string
		errs []error
		want []time.Duration
	}{
		{"the first write's transient errors stop at 5s", repeat(transient, 8), ms(250, 500, 1000, 2000, 4000, 5000, 5000, 5000)},
		{"the first write's permanent errors too", repeat(permanent, 3), ms(1000, 5000, 5000)},
	}
	for _, tc := range firstWrite {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1_000_000, 0))
			p := defaultRetry()
			p.Transient.Jitter, p.Permanent.Jitter = 0, 0
			r := &retrier{policy: p, clock: clk, log: quietLog(), rotated: newRotation(), degraded: func(bool) {}}
			if got := retryWaits(t, r, clk, retryOpts{maxWait: firstWriteMaxWait}, tc.errs); !equalDurations(got, tc.want) {
				t.Errorf("waits %v, want %v", got, tc.want)
			}
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1_000_000, 0))
			p := defaultRetry()
			p.Transient.Jitter, p.Permanent.Jitter = 0, 0
			r := &retrier{policy: p, clock: clk, log: quietLog(), rotated: newRotation(), degraded: func(bool) {}}
			got := retryWaits(t, r, clk, retryOpts{}, tc.errs)
			if !equalDurations(got, tc.want) {
				t.Errorf("waits %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("full jitter: each wait anywhere from 0 to the backoff", func(t *testing.T) {
		clk := clock.NewFake(time.Unix(1_000_000, 0))
		r := &retrier{policy: defaultRetry(), clock: clk, log: quietLog(), rotated: newRotation(), degraded: func(bool) {}}
		got := retryWaits(t, r, clk, retryOpts{}, repeat(transient, 12))
		want := ms(250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000)
		spread := 0
		for i := range want {
			if got[i] > want[i] || got[i] < 0 {
				t.Errorf("wait %d: %s, want within [0, %s]", i+1, got[i], want[i])
			}
			if got[i] < want[i]*9/10 {
				spread++
			}
		}
		if spread == 0 {
			t.Errorf("waits %v: none more than 10%% below its backoff; want full jitter", got)
		}
	})
	t.Run("a Retry-After of a 429 or 503 is waited out, up to 2m", func(t *testing.T) {
		clk := clock.NewFake(time.Unix(1_000_000, 0))
		r := &retrier{policy: defaultRetry(), clock: clk, log: quietLog(), rotated: newRotation(), degraded: func(bool) {}}
		busy := func(after string) error {
			return &vault.ResponseError{Method: "GET", Path: "/v1/x", StatusCode: http.StatusTooManyRequests, RetryAfter: after}
		}
		got := retryWaits(t, r, clk, retryOpts{}, []error{busy("7"), busy("3600"), busy(clk.Now().Add(20 * time.Second).UTC().Format(http.TimeFormat))})
		if got[0] < 7*time.Second || got[0] > 7*time.Second+500*time.Millisecond {
			t.Errorf("Retry-After 7: waited %s", got[0])
		}
		if got[1] != 2*time.Minute {
			t.Errorf("Retry-After 3600: waited %s, want the 2m bound", got[1])
		}
		// The date was 20s after the start; 7s+2m have passed since: no wait it asks for.
		if got[2] > time.Second {
			t.Errorf("Retry-After a past date: waited %s, want only the backoff", got[2])
		}
	})
	t.Run("a deadline ends the retries with one last attempt at it", func(t *testing.T) {
		clk := clock.NewFake(time.Unix(1_000_000, 0))
		p := defaultRetry()
		p.Transient.Jitter = 0
		r := &retrier{policy: p, clock: clk, log: quietLog(), rotated: newRotation(), degraded: func(bool) {}}
		attempts := 0
		done := make(chan error, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := clk.Now()
		go func() {
			defer cancel() // ends the clock's driving below
			done <- r.do(context.Background(), "renew", retryOpts{deadline: start.Add(3 * time.Second)}, func(context.Context) error {
				attempts++
				return transient
			})
		}()
		for clk.BlockUntil(ctx, 1) {
			clk.AdvanceToNext()
		}
		select {
		case err := <-done:
			// Waits 250ms, 500ms, 1s (1.75s in all); the next, 2s, would
			// pass the deadline: cut to 1.25s, the fifth attempt at it.
			if !errors.Is(err, transient) || attempts != 5 {
				t.Errorf("err %v after %d attempts; want the last error after 5", err, attempts)
			}
			if got := clk.Now().Sub(start); got != 3*time.Second {
				t.Errorf("last attempt %s after the first; want at the 3s deadline", got)
			}
		default:
			t.Fatal("the retries did not end at the deadline")
		}
	})
}

// retryWaits runs r.do with an attempt failing with errs in turn (then
// succeeding) and returns the waits between the attempts.
func retryWaits(t *testing.T, r *retrier, clk *clock.Fake, o retryOpts, errs []error) []time.Duration {
	t.Helper()
	var degraded []bool
	r.degraded = func(d bool) { degraded = append(degraded, d) }
	attempt := 0
	done := make(chan error, 1)
	go func() {
		done <- r.do(context.Background(), "test", o, func(context.Context) error {
			attempt++
			if attempt <= len(errs) {
				return errs[attempt-1]
			}
			return nil
		})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var waits []time.Duration
	for range errs {
		if !clk.BlockUntil(ctx, 1) {
			t.Fatalf("no wait after attempt %d", attempt)
		}
		waits = append(waits, clk.Pending()[0])
		clk.AdvanceToNext()
	}
	if err := <-done; err != nil {
		t.Fatalf("retry: %v", err)
	}
	if len(degraded) != len(errs)+1 || !degraded[0] || degraded[len(degraded)-1] {
		t.Errorf("degraded reported %v; want true after each failure, false at the end", degraded)
	}
	return waits
}

func TestShutdownRevokesTheLeasesThenTheToken(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app", "ramvault.io/secret-db2": "database/creds/other"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ta.Run(ctx) }()
	ta.settle(t)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := ta.vault.count("revoke-lease "); n != 2 {
		t.Errorf("%d leases revoked, want 2", n)
	}
	calls := ta.vault.calls
	if len(calls) == 0 || calls[len(calls)-1] != "revoke-self" {
		t.Errorf("last call %v; want the token revoked last", calls)
	}
	if ta.state.Exists("agent-state.json") {
		t.Error("the state (with the token) is still there")
	}
}

func repeat(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, n := range v {
		out[i] = time.Duration(n) * time.Millisecond
	}
	return out
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A renewal refused because the lease is gone (revoked from outside) is not
// retried as if Vault were down: a new secret is fetched at once.
func TestALeaseNotFoundOnRenewalIsReissuedAtOnce(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app"})
	ta.vault.leaseTTL = time.Minute
	ta.start(t)
	first := ta.files.content("db")
	ta.vault.mu.Lock()
	clear(ta.vault.leases) // revoked from outside
	ta.vault.mu.Unlock()

	d := ta.step(t) // the renewal is due; refused; the new secret follows without a backoff
	if d > 40*time.Second {
		t.Fatalf("renewal after %s", d)
	}
	if n := ta.vault.count("renew-lease "); n != 1 {
		t.Errorf("%d renewals; a lease not found must not be renewed again", n)
	}
	if n := ta.vault.count("get "); n != 2 {
		t.Fatalf("%d fetches; want the secret re-issued at once", n)
	}
	if ta.files.content("db") == first {
		t.Error("the file still holds the revoked credentials")
	}
	if n := ta.vault.count("login"); n != 1 {
		t.Errorf("%d logins; the token was fine", n)
	}
}

// The agent's token revoked from outside (with every lease made with it):
// the first call that notices logs in again, and every leased secret is
// re-issued at once, not at its old schedule.
func TestARevokedTokenLeadsToEveryLeaseReissuedAtOnce(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app", "ramvault.io/secret-long": "database/creds/long"})
	ta.vault.leaseTTL = time.Minute
	ta.start(t)
	// The second secret's lease is long: its own schedule is hours away.
	ta.vault.mu.Lock()
	for id, l := range ta.vault.leases {
		if strings.HasPrefix(id, "database/creds/long/") {
			l.expires, l.max = l.issued.Add(6*time.Hour), l.issued.Add(6*time.Hour)
			ta.vault.leases[id] = l
		}
	}
	ta.vault.revoke(ta.vault.token)
	ta.vault.mu.Unlock()
	long := ta.files.content("long")
	start := ta.clock.Now()

	// db's renewal is denied: new login, db re-issued; long re-issued too.
	ta.step(t)
	if n := ta.vault.count("login"); n != 2 {
		t.Fatalf("%d logins, want a new one after the denial", n)
	}
	if n := ta.vault.count("get database/creds/long"); n != 2 {
		t.Errorf("the long lease fetched %d times; want it re-issued with the new login", n)
	}
	if n := ta.vault.count("get database/creds/app"); n != 2 {
		t.Errorf("db fetched %d times; want it re-issued", n)
	}
	if ta.files.content("long") == long {
		t.Error("the long secret's file still holds credentials that ended with the old token")
	}
	if took := ta.clock.Now().Sub(start); took > 41*time.Second {
		t.Errorf("took %s of the clock; want the re-issue right after the first denial", took)
	}
}

// The status file says degraded while Vault fails the agent, and not once
// it answers again.
func TestTheStatusFileSaysDegradedWhileVaultFails(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{"ramvault.io/secret-cfg": "secret/data/cfg", "ramvault.io/refresh-cfg": "1m"})
	ta.vault.kv["secret/data/cfg"] = map[string]any{"k": "v1"}
	ta.start(t)
	degraded := func() bool {
		t.Helper()
		var st status
		if err := json.Unmarshal([]byte(ta.files.content(".ramvault-status.json")), &st); err != nil {
			t.Fatalf("status file: %v", err)
		}
		if !st.Ready {
			t.Error("status: not ready")
		}
		return st.Degraded
	}
	if degraded() {
		t.Fatal("degraded after a first write without a failure")
	}
	ta.vault.mu.Lock()
	ta.vault.fail = func(string) error { return errBoom }
	ta.vault.mu.Unlock()
	ta.clock.AdvanceToNext() // the re-read fails; the retry waits
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !ta.clock.BlockUntil(ctx, 2) {
		t.Fatal("no retry")
	}
	if !degraded() {
		t.Error("not degraded while Vault fails")
	}
	ta.vault.mu.Lock()
	ta.vault.fail = nil
	ta.vault.kv["secret/data/cfg"] = map[string]any{"k": "v2"}
	ta.vault.mu.Unlock()
	ta.step(t)
	if degraded() {
		t.Error("still degraded after Vault answered")
	}
	if !strings.Contains(ta.files.content("cfg"), "v2") {
		t.Error("the re-read did not succeed")
	}
}

// A sidecar restarted with a saved token Vault no longer honours logs in,
// re-issues the secrets and rewrites their files: the running app must be
// told (it was not, when the token could not be reused).
func TestARestartWithAnInvalidSavedTokenReloadsTheApp(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tokenValid bool
	}{{"saved token invalid", false}, {"saved token still valid", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app", "ramvault.io/reload": "restart"})
			// What the earlier run left: the file, and the state with a lease
			// too close to its end to keep.
			earlier := ta.clock.Now().Add(-50 * time.Second)
			ta.vault.tokens["s.saved"] = fakeToken{expires: ta.clock.Now().Add(time.Hour)}
			if !tc.tokenValid {
				delete(ta.vault.tokens, "s.saved")
			}
			if _, err := ta.files.Write("db", []byte(`{"password":"old"}`), 0o400); err != nil {
				t.Fatal(err)
			}
			saved := `{"token":"s.saved","token_expires":"2026-01-01T01:00:00Z","token_renewable":true,"secrets":{"db":{"path":"database/creds/app","lease_id":"database/creds/app/old","lease_duration":60000000000,"renewable":true,"issued":"` +
				earlier.Format(time.RFC3339) + `","expires":"` + earlier.Add(time.Minute).Format(time.RFC3339) + `","written":"` + earlier.Format(time.RFC3339) + `"}}}`
			if _, err := ta.state.Write("agent-state.json", []byte(saved), 0o600); err != nil {
				t.Fatal(err)
			}
			// The app container's probe has been seen before the restart.
			if ta.reloader.ShouldRestart() {
				t.Fatal("restart before any rotation")
			}
			ta.start(t)
			if strings.Contains(ta.files.content("db"), "old") {
				t.Fatal("the file was not rewritten")
			}
			wantLogins := 1
			if tc.tokenValid {
				wantLogins = 0
			}
			if n := ta.vault.count("login"); n != wantLogins {
				t.Errorf("%d logins, want %d", n, wantLogins)
			}
			if !ta.reloader.ShouldRestart() {
				t.Error("the app was not reloaded after its file was rewritten")
			}
		})
	}
}

// One slow lease revocation does not use the grace the token's needs, and
// the log says exactly what was and was not revoked.
func TestShutdownRevokesTheTokenWithinTheGraceWhenALeaseHangs(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app", "ramvault.io/secret-slow": "database/creds/slow"})
	ta.cfg.ShutdownGrace = 400 * time.Millisecond
	ta.vault.hang = func(call string) bool { return strings.HasPrefix(call, "revoke-lease database/creds/slow/") }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ta.Run(ctx) }()
	ta.settle(t)
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > ta.cfg.ShutdownGrace+200*time.Millisecond {
		t.Errorf("shutdown took %s; the grace is %s", took, ta.cfg.ShutdownGrace)
	}
	if ta.vault.count("revoke-self") != 1 {
		t.Fatal("the token was not revoked")
	}
	var summary map[string]any
	for _, line := range strings.Split(ta.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"shut down`) {
			if err := json.Unmarshal([]byte(line), &summary); err != nil {
				t.Fatal(err)
			}
		}
	}
	if summary["msg"] != "shut down: token revoked" || summary["token_revoked"] != true ||
		fmt.Sprint(summary["leases_revoked"]) != "[db]" || fmt.Sprint(summary["leases_not_revoked"]) != "[slow]" {
		t.Errorf("shutdown log %v; want the token revoked, db revoked, slow not", summary)
	}
}

// A token that cannot be revoked is not said to be.
func TestShutdownSaysWhenTheTokenWasNotRevoked(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app"})
	ta.cfg.ShutdownGrace = 200 * time.Millisecond
	ta.vault.hang = func(call string) bool { return call == "revoke-self" }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ta.Run(ctx) }()
	ta.settle(t)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	logs := ta.logs.String()
	if strings.Contains(logs, "shut down: token revoked") || !strings.Contains(logs, "shut down: token NOT revoked") || !strings.Contains(logs, `"token_revoked":false`) {
		t.Errorf("log:\n%s", logs)
	}
}

// A shutdown during the old token's grace revokes it too.
func TestShutdownRevokesATokenStillInItsGrace(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app"})
	ta.vault.renewTTL = 10 * time.Minute // the token cannot be extended: a new login at ~40m
	ta.vault.leaseTTL, ta.vault.leaseMax = 24*time.Hour, 48*time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ta.Run(ctx) }()
	ta.settle(t)
	ta.step(t)
	if ta.vault.count("login") != 2 || ta.vault.count("revoke-token ") != 0 {
		t.Fatalf("calls %v", ta.vault.calls)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ta.vault.count("revoke-token s.token-1") != 1 || ta.vault.count("revoke-self") != 1 {
		t.Errorf("calls %v; want the old token and the current one revoked", ta.vault.calls)
	}
	if !strings.Contains(ta.logs.String(), `"previous_tokens_revoked":1`) {
		t.Error("the shutdown log does not count the previous token")
	}
}

// A template that fails on the value it is given: the value is in neither
// the error the init container exits with (its termination message) nor
// the log (the log scan of newTestAgent).
func TestATemplateErrorKeepsTheValueOutOfErrorsAndLogs(t *testing.T) {
	ta := newTestAgent(t, modeInit, map[string]string{dbSecret: "database/creds/app",
		"ramvault.io/template-db": `{{ range .Data.password }}{{ . }}{{ end }}`})
	ta.cfg.InitDeadline = 100 * time.Millisecond
	err := ta.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "secrets not written within") {
		t.Fatalf("err %v", err)
	}
	if strings.Contains(err.Error(), "planted-") {
		t.Errorf("the value is in the error: %v", err)
	}
	if !strings.Contains(err.Error(), `template of secret "db"`) || !strings.Contains(err.Error(), "<.Data.password>") {
		t.Errorf("the error does not say where: %v", err)
	}
	if !strings.Contains(ta.logs.String(), "range can't iterate over this value") {
		t.Error("the retries did not log the error")
	}
}
