package admission

import "context"

// Admission reviews go through one of two lanes, by the size the request
// announces. A Pod the apiserver sends is a few KiB; one near the 1 MiB
// body limit is rare in real clusters and costs a decode of megabytes, and
// anyone who reaches the webhook's port can send such reviews in a burst.
// The large lane admits few at once, so a burst of them can neither take
// the replica's memory (128 MiB limit) nor delay the small reviews of real
// Pods, which never wait on it. A request that announces more than the body
// limit takes neither: it is answered 413 unread.
const (
	largeReview   = 64 << 10 // bytes: a request over this (or of unknown length) is large
	largeInFlight = 2
	smallInFlight = 64
)

// Names of the lanes, the values of the label "lane" of
// ramvault_injector_admission_lane_wait_seconds.
const (
	laneSmall = "small"
	laneLarge = "large"
)

type lane struct {
	name  string
	slots chan struct{}
}

type lanes struct{ small, large lane }

func newLanes() lanes {
	return lanes{small: lane{laneSmall, make(chan struct{}, smallInFlight)}, large: lane{laneLarge, make(chan struct{}, largeInFlight)}}
}

// of is the lane of a request of length n (-1: unknown).
func (l lanes) of(n int64) lane {
	if n < 0 || n > largeReview {
		return l.large
	}
	return l.small
}

// enter waits for a place in the lane until ctx ends; ok is false then.
// release gives the place back.
func (l lane) enter(ctx context.Context) (release func(), ok bool) {
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, true
	case <-ctx.Done():
		return nil, false
	}
}
