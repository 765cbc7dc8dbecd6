package clock

import (
	"context"
	"testing"
	"time"
)

func TestFakeReleasesWaitsInOrderAndForgetsStoppedOnes(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	late, early := f.After(2*time.Second), f.After(time.Second)
	stopped := f.NewTimer(1500 * time.Millisecond)
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop: want true once, then false")
	}
	if got := f.Pending(); len(got) != 2 || got[0] != time.Second || got[1] != 2*time.Second {
		t.Fatalf("pending %v", got)
	}
	if d := f.AdvanceToNext(); d != time.Second {
		t.Fatalf("moved %s", d)
	}
	select {
	case <-early:
	default:
		t.Fatal("the 1s wait was not released")
	}
	select {
	case <-late:
		t.Fatal("the 2s wait was released at 1s")
	case <-stopped.C:
		t.Fatal("a stopped timer fired")
	default:
	}
	if f.After(0) == nil || len(f.Pending()) != 1 {
		t.Fatal("a wait of 0 must not be pending")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if !f.BlockUntil(ctx, 1) {
		t.Fatal("BlockUntil with one wait pending")
	}
	f.Advance(time.Hour)
	<-late
	if !f.Now().Equal(time.Unix(0, 0).Add(time.Hour + time.Second)) {
		t.Errorf("now %v", f.Now())
	}
}
