package admission

import "context"

// Admission reviews go through one of two lanes, by the size the request
// announces. A Pod the apiserver sends is a few KiB; one near the 1 MiB
// body limit is rare in real clusters and costs a decode of megabytes, and
// anyone who reaches the webhook's port can send such reviews in a burst.
// The large lane admits few at once, so a burst of them can neither take
// the replica's memory (128 MiB limit) nor delay the small reviews of real
// Pods, which never wait on it.
const (
	largeReview   = 64 << 10 // bytes: a request over this (or of unknown length) is large
	largeInFlight = 2
	smallInFlight = 64
)

type lanes struct{ small, large chan struct{} }

func newLanes() lanes {
	return lanes{small: make(chan struct{}, smallInFlight), large: make(chan struct{}, largeInFlight)}
}

// enter waits for a place in the lane of a request of length n (-1:
// unknown) until ctx ends; ok is false then. release gives the place back.
func (l lanes) enter(ctx context.Context, n int64) (release func(), ok bool) {
	lane := l.small
	if n < 0 || n > largeReview {
		lane = l.large
	}
	select {
	case lane <- struct{}{}:
		return func() { <-lane }, true
	case <-ctx.Done():
		return nil, false
	}
}
