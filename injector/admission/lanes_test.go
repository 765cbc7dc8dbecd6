package admission

import (
	"context"
	"testing"
	"time"
)

// A burst of large reviews fills only the large lane: a real Pod's small
// review still goes at once, and a large one waits only until its request
// ends.
func TestLargeReviewsCannotHoldUpSmallOnes(t *testing.T) {
	l := newLanes()
	for i := 0; i < largeInFlight; i++ {
		if _, ok := l.of(1 << 20).enter(context.Background()); !ok {
			t.Fatal("the large lane refused below its capacity")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok := l.of(1 << 20).enter(ctx); ok {
		t.Fatal("a third large review got in while two were in flight")
	}
	if _, ok := l.of(-1).enter(ctx); ok {
		t.Fatal("a review of unknown length took the small lane")
	}
	release, ok := l.of(4 << 10).enter(context.Background())
	if !ok {
		t.Fatal("a small review waited on the large ones")
	}
	release()
}
