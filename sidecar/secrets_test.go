package sidecar

import (
	"testing"
	"time"

	"github.com/ramvault/ramvault/sidecar/clock"
	"github.com/ramvault/ramvault/sidecar/state"
)

func TestPlanRenewsAtTwoThirdsAndReissuesNearTheMaxTTL(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a := &agent{clock: clock.NewFake(now)}
	s := &dep{name: "db", refresh: 5 * time.Minute}

	renew, at := a.plan(s, state.Secret{LeaseID: "l", LeaseDuration: 30 * time.Second, Renewable: true, Issued: now, Expires: now.Add(30 * time.Second)})
	if !renew || at.Before(now.Add(18*time.Second)) || at.After(now.Add(20*time.Second)) {
		t.Errorf("fresh renewable lease: renew=%v at +%s; want renew at about 2/3 (18–20s)", renew, at.Sub(now))
	}
	renew, _ = a.plan(s, state.Secret{LeaseID: "l", LeaseDuration: 30 * time.Second, Renewable: true, Issued: now, Expires: now.Add(10 * time.Second)})
	if renew {
		t.Error("a renewal granted less than the lease asked (max TTL near) must lead to a re-issue")
	}
	renew, at = a.plan(s, state.Secret{Issued: now.Add(-time.Minute)})
	if renew || !at.Equal(now.Add(4*time.Minute)) {
		t.Errorf("KV secret: renew=%v at +%s; want a re-read at its refresh interval", renew, at.Sub(now))
	}
}
