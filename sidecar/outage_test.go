package sidecar

import (
	"strings"
	"testing"
	"time"
)

// Vault down mid-life (issue 12), on the fake clock: an outage over a
// renewal point but shorter than what is left of the lease (or token) ends
// with the same lease (token) renewed: no new credentials, no rewrite, no
// reload. An outage past the lease's end ends with one re-issue and one
// reload.

// down makes every Vault call fail without an answer (as a refused
// connection does), or answer again.
func (ta *testAgent) down(down bool) {
	ta.vault.mu.Lock()
	defer ta.vault.mu.Unlock()
	ta.vault.fail = nil
	if down {
		ta.vault.fail = func(string) error { return errBoom }
	}
}

// runUntil lets the agent act on every wait due before at, then moves the
// clock to at.
func (ta *testAgent) runUntil(t *testing.T, at time.Time) {
	t.Helper()
	for {
		next, ok := ta.clock.NextAt()
		if !ok || !next.Before(at) {
			break
		}
		ta.step(t)
	}
	ta.clock.Advance(at.Sub(ta.clock.Now()))
	ta.settle(t)
}

func (ta *testAgent) reloads() int { return strings.Count(ta.logs.String(), `"msg":"app reloaded"`) }

func TestAnOutageOverTheRenewalPointRenewsTheSameLeaseOnReturn(t *testing.T) {
	for _, tc := range []struct {
		name string
		back time.Duration // after the lease's issue; its renewal is due at 36–40s, it ends at 60s
	}{
		{"Vault back 10s after the renewal point", 50 * time.Second},
		{"Vault back 1s before the last attempt", 54 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app", "ramvault.io/reload": "restart"})
			ta.vault.leaseTTL, ta.vault.leaseMax = time.Minute, time.Hour
			ta.start(t)
			issued := ta.clock.Now()
			first := ta.files.content("db")

			ta.clock.Advance(30 * time.Second) // before the renewal point
			ta.settle(t)
			ta.down(true)
			ta.runUntil(t, issued.Add(tc.back))
			during := ta.vault.count("renew-lease ")
			if during < 3 {
				t.Errorf("%d renewal attempts during the outage; want it retried with backoff", during)
			}
			if n := ta.vault.count("get "); n != 1 {
				t.Fatalf("%d fetches during the outage; want none past the first", n)
			}
			ta.down(false)
			back := ta.clock.Now()
			for ta.vault.count("renew-lease ") == during {
				ta.step(t)
			}
			took := ta.clock.Now().Sub(back)
			t.Logf("%d renewal attempts during the outage; renewed %s after Vault's return", during, took)
			if end := issued.Add(time.Minute); !ta.clock.Now().Before(end) {
				t.Errorf("renewed at %s, not before the lease's end", ta.clock.Now().Sub(issued))
			}
			if n := ta.vault.count("get "); n != 1 {
				t.Errorf("%d fetches; want the same lease renewed, not re-issued", n)
			}
			if ta.files.content("db") != first || ta.files.writesOf("db") != 1 {
				t.Error("the file was rewritten")
			}
			if n := ta.reloads(); n != 0 {
				t.Errorf("%d reloads, want 0", n)
			}
			if n := ta.vault.count("login"); n != 1 {
				t.Errorf("%d logins, want 1", n)
			}
			if ss, _ := ta.store.Secret("db"); !ss.Expires.After(issued.Add(time.Minute)) {
				t.Errorf("the lease's end after the renewal is %s after its issue; want later than 60s", ss.Expires.Sub(issued))
			}
			// And the next renewal is at its usual schedule.
			if d := ta.step(t); d < 36*time.Second || d > 40*time.Second {
				t.Errorf("next renewal %s after the last; want 36–40s", d)
			}
		})
	}
}

func TestAnOutagePastTheLeasesEndReissuesOnceOnReturn(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app", "ramvault.io/reload": "restart"})
	ta.vault.leaseTTL, ta.vault.leaseMax = time.Minute, time.Hour
	ta.start(t)
	issued := ta.clock.Now()
	first := ta.files.content("db")

	ta.clock.Advance(30 * time.Second)
	ta.settle(t)
	ta.down(true)
	ta.runUntil(t, issued.Add(90*time.Second))
	renewals := ta.vault.count("renew-lease ")
	// The last attempt is at the margin before the lease's end (55s); then
	// the agent fetches anew, retrying until Vault answers.
	if ta.vault.count("get ") < 2 {
		t.Error("no fetch of a new secret after the lease's end")
	}
	ta.down(false)
	for ta.files.writesOf("db") == 1 {
		ta.step(t)
	}
	ta.settle(t)
	if n := ta.vault.count("renew-lease "); n != renewals {
		t.Errorf("%d renewals after Vault's return; the lease had ended, want it re-issued", n-renewals)
	}
	if ta.files.content("db") == first {
		t.Error("the file holds the ended credentials")
	}
	if n := ta.reloads(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
}

func TestAnOutageOverTheTokensRenewalPointKeepsTheToken(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app", "ramvault.io/reload": "restart"})
	ta.vault.tokenTTL = time.Hour
	ta.vault.leaseTTL, ta.vault.leaseMax = 24*time.Hour, 48*time.Hour // the lease's loop stays asleep
	ta.start(t)
	start := ta.clock.Now()
	first := ta.files.content("db")

	ta.clock.Advance(30 * time.Minute) // before the renewal point (36–40m)
	ta.settle(t)
	ta.down(true)
	ta.runUntil(t, start.Add(50*time.Minute))
	during := ta.vault.count("renew-self")
	if during < 3 {
		t.Errorf("%d token renewal attempts during the outage; want it retried with backoff", during)
	}
	ta.down(false)
	for ta.vault.count("renew-self") == during {
		ta.step(t)
	}
	if n := ta.vault.count("login"); n != 1 {
		t.Errorf("%d logins; the token was still valid, want it renewed", n)
	}
	if got := ta.token.current(); got != "s.token-1" {
		t.Errorf("token %q, want the first one still", got)
	}
	if n := ta.vault.count("get "); n != 1 || ta.files.content("db") != first || ta.reloads() != 0 {
		t.Errorf("%d fetches, %d reloads after the outage; want the lease kept and the app left alone", n, ta.reloads())
	}
}

// Renewal failing for good (Vault unreachable past the token's end): the
// agent logs in again, at the margin before that end, not at the first
// failure.
func TestATokenRenewalFailingUntilItsEndLeadsToANewLogin(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app"})
	ta.vault.tokenTTL = time.Hour
	ta.vault.leaseTTL, ta.vault.leaseMax = 24*time.Hour, 48*time.Hour
	ta.vault.fail = func(call string) error {
		if call == "renew-self" {
			return errBoom
		}
		return nil
	}
	ta.start(t)
	start := ta.clock.Now()
	first := ta.files.content("db")
	for ta.vault.count("login") < 2 {
		ta.step(t)
		if ta.clock.Now().Sub(start) > 2*time.Hour {
			t.Fatal("never logged in again")
		}
	}
	if at := ta.clock.Now().Sub(start); at < 59*time.Minute || at >= time.Hour {
		t.Errorf("new login %s after the first; want at the 5s margin before the token's 1h end", at)
	}
	if n := ta.vault.count("renew-self"); n < 5 {
		t.Errorf("%d token renewal attempts; want several before giving up", n)
	}
	if ta.files.content("db") == first {
		t.Error("the leased secret was not re-issued under the new token")
	}
}
