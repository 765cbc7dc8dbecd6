// Package clock is the agent's one seam for time: every wait and every
// timestamp of the agent's loops goes through a Clock, so tests drive them
// with a Fake instead of sleeping.
package clock

import "time"

// Clock tells the time and waits.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	After(d time.Duration) <-chan time.Time
	// NewTimer is After that can be stopped (for a wait that may end
	// otherwise: a fake clock then no longer counts it).
	NewTimer(d time.Duration) *Timer
}

// Timer is a wait that can be stopped.
type Timer struct {
	C    <-chan time.Time
	stop func() bool
}

// Stop ends the wait; it reports whether it was still pending.
func (t *Timer) Stop() bool { return t.stop() }

// Real is the wall clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (realClock) NewTimer(d time.Duration) *Timer {
	t := time.NewTimer(d)
	return &Timer{C: t.C, stop: t.Stop}
}
