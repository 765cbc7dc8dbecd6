package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Fake is a Clock that moves only when told to (Advance). Waiters are
// released in the order of their deadlines. It is for tests; the agent's
// binary never links it.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	changed chan struct{} // closed and replaced whenever a waiter is added
	version uint64        // counts every change of the waiters
}

type waiter struct {
	at time.Time
	d  time.Duration
	ch chan time.Time
}

// NewFake is a Fake clock reading now.
func NewFake(now time.Time) *Fake { return &Fake{now: now, changed: make(chan struct{})} }

// Now is the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives once the fake time has advanced by
// d; at once for d <= 0.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, waiter{at: f.now.Add(d), d: d, ch: ch})
	f.version++
	close(f.changed)
	f.changed = make(chan struct{})
	return ch
}

// NewTimer is After that can be stopped; a stopped timer is no longer
// pending.
func (f *Fake) NewTimer(d time.Duration) *Timer {
	ch := f.After(d)
	return &Timer{C: ch, stop: func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, w := range f.waiters {
			if w.ch == ch {
				f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
				f.version++
				return true
			}
		}
		return false
	}}
}

// Advance moves the time forward by d, releasing every waiter due by then.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- f.now
		f.version++
	}
	f.waiters = kept
}

// Pending returns the durations asked for by the waiters now pending, earliest
// deadline first.
func (f *Fake) Pending() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := append([]waiter(nil), f.waiters...)
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].at.Before(ws[j].at) })
	out := make([]time.Duration, len(ws))
	for i, w := range ws {
		out[i] = w.d
	}
	return out
}

// NextAt is the earliest pending deadline; false with no waiter pending.
func (f *Fake) NextAt() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.waiters) == 0 {
		return time.Time{}, false
	}
	next := f.waiters[0].at
	for _, w := range f.waiters[1:] {
		if w.at.Before(next) {
			next = w.at
		}
	}
	return next, true
}

// AdvanceToNext moves the time to the earliest pending deadline, releasing
// that waiter (and any due at the same time), and returns how far it moved.
// With no waiter pending it does nothing and returns 0.
func (f *Fake) AdvanceToNext() time.Duration {
	next, ok := f.NextAt()
	if !ok {
		return 0
	}
	d := next.Sub(f.Now())
	f.Advance(d)
	return d
}

// Version counts the changes of the pending waiters (added, stopped,
// released): a test can tell whether the code under test still moves.
func (f *Fake) Version() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version
}

// BlockUntil waits until at least n waiters are pending, or ctx ends (then
// it returns false).
func (f *Fake) BlockUntil(ctx context.Context, n int) bool {
	for {
		f.mu.Lock()
		have, changed := len(f.waiters), f.changed
		f.mu.Unlock()
		if have >= n {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}
