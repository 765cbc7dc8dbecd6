// Package leaderelection elects one replica with a coordination.k8s.io/v1
// Lease, compatible with client-go's leader election on the same Lease. It
// knows nothing of what the leader does.
package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/injector/kube"
)

// Config is what an Elector campaigns for, and its timing: the rules of
// client-go's leader election, LeaseDuration > RenewDeadline > 1.2 ×
// RetryPeriod > 0 (the webhook's flags check them).
type Config struct {
	Namespace     string // of the Lease
	Name          string // of the Lease
	Identity      string // this replica, in the Lease
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// Elector elects one replica with a coordination.k8s.io/v1 Lease, the
// way client-go's leader election does and compatible with it (same fields,
// same rules), in the little this webhook needs of it.
//
// A candidate takes the Lease when it has no holder, or when its holder has
// not renewed it for LeaseDuration, measured on this replica's clock from
// when it last saw the Lease change (so clocks need not agree). The leader
// renews it every RetryPeriod and stops leading when it has not renewed it
// for RenewDeadline, which is shorter than LeaseDuration: it stops before
// anyone else may start. Every write carries the resourceVersion read, so
// of two candidates writing at once one gets a Conflict, and loses. Each
// attempt, to take, renew or release the Lease, has max(RenewDeadline/2,
// 1s) (controller-runtime's bound), so that one slow call cannot use up
// the renew deadline.
type Elector struct {
	client        *kube.Client
	namespace     string
	name          string
	identity      string
	leaseDuration time.Duration
	renewDeadline time.Duration
	retryPeriod   time.Duration
	log           *slog.Logger

	lease      *coordinationv1.Lease // as last read or written
	observedAt time.Time             // when its spec was last seen to change
	leader     string                // the holder last logged
}

// New returns the elector of c, campaigning through client.
func New(client *kube.Client, c Config, log *slog.Logger) *Elector {
	return &Elector{client: client, namespace: c.Namespace, name: c.Name, identity: c.Identity,
		leaseDuration: c.LeaseDuration, renewDeadline: c.RenewDeadline, retryPeriod: c.RetryPeriod,
		log: log.With("lease", c.Namespace+"/"+c.Name)}
}

// attemptTimeout bounds each call to the apiserver.
func (e *Elector) attemptTimeout() time.Duration {
	return max(e.renewDeadline/2, time.Second)
}

// errLeaseHeld: another replica holds the Lease, and has renewed it lately.
var errLeaseHeld = errors.New("held by another replica")

// Run campaigns until ctx ends. Each time this replica takes the Lease, lead
// runs with a context that ends when the Lease is lost or ctx ends, and run
// waits for lead to return before it campaigns again. When ctx ends while
// leading, lead returns first, then the Lease is released (its holder
// cleared) so that another replica takes over without waiting for it to
// expire.
func (e *Elector) Run(ctx context.Context, lead func(context.Context)) {
	for {
		renewed, ok := e.acquire(ctx)
		if !ok {
			return
		}
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			lead(lctx)
		}()
		e.renew(lctx, renewed)
		cancel()
		<-done
		if ctx.Err() != nil {
			e.release()
			return
		}
	}
}

// acquire tries to take the Lease now and every RetryPeriod (with jitter)
// until it holds it, and returns when it renewed it; false: ctx ended.
func (e *Elector) acquire(ctx context.Context) (time.Time, bool) {
	for {
		at := time.Now()
		actx, cancel := context.WithTimeout(ctx, e.attemptTimeout())
		err := e.tryAcquireOrRenew(actx, at)
		cancel()
		switch {
		case err == nil:
			return at, true
		case ctx.Err() != nil:
			return time.Time{}, false
		case !errors.Is(err, errLeaseHeld):
			e.log.Warn("take the lease", "err", err)
		}
		// client-go's jitter: a wait of RetryPeriod to 2.2 × RetryPeriod.
		if sleep(ctx, e.retryPeriod+time.Duration(rand.Float64()*1.2*float64(e.retryPeriod))) != nil {
			return time.Time{}, false
		}
	}
}

// renew renews the Lease every RetryPeriod, retrying failures, until ctx
// ends or it was not renewed for RenewDeadline since renewed, or another
// replica holds it.
func (e *Elector) renew(ctx context.Context, renewed time.Time) {
	for {
		if sleep(ctx, e.retryPeriod) != nil {
			return
		}
		deadline := renewed.Add(e.renewDeadline)
		at := time.Now()
		bound := at.Add(e.attemptTimeout())
		if deadline.Before(bound) {
			bound = deadline
		}
		actx, cancel := context.WithDeadline(ctx, bound)
		err := e.tryAcquireOrRenew(actx, at)
		cancel()
		switch {
		case err == nil:
			renewed = at
		case ctx.Err() != nil:
			return
		case errors.Is(err, errLeaseHeld):
			e.log.Error("lease taken by another replica: no longer leading", "holder", e.leader)
			return
		case !time.Now().Before(deadline):
			e.log.Error("lease not renewed within the renew deadline: no longer leading", "renewDeadline", e.renewDeadline.String(), "err", err)
			return
		default:
			e.log.Warn("renew the lease (retried)", "err", err)
		}
	}
}

// tryAcquireOrRenew reads the Lease and, unless another replica holds it
// validly (errLeaseHeld), writes this replica as its holder, renewed at now.
func (e *Elector) tryAcquireOrRenew(ctx context.Context, now time.Time) error {
	leases := e.client.Leases(e.namespace)
	cur := &coordinationv1.Lease{}
	err := leases.Get(ctx, e.name, cur)
	if apierrors.IsNotFound(err) {
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: e.name, Namespace: e.namespace},
			Spec:       coordinationv1.LeaseSpec{LeaseTransitions: ptr.To[int32](0), AcquireTime: ptr.To(metav1.NewMicroTime(now))},
		}
		e.hold(l, now)
		created := &coordinationv1.Lease{}
		// AlreadyExists: another candidate created it first; the next try reads it.
		if err := leases.Create(ctx, l, created); err != nil {
			return fmt.Errorf("create Lease %s/%s: %w", e.namespace, e.name, err)
		}
		e.observe(created)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read Lease %s/%s: %w", e.namespace, e.name, err)
	}
	e.observe(cur)
	holder := ptr.Deref(cur.Spec.HolderIdentity, "")
	if holder != "" && holder != e.identity && now.Before(e.observedAt.Add(e.durationOf(cur))) {
		return errLeaseHeld
	}
	l := cur.DeepCopy()
	if holder != e.identity {
		l.Spec.LeaseTransitions = ptr.To(ptr.Deref(cur.Spec.LeaseTransitions, 0) + 1)
		l.Spec.AcquireTime = ptr.To(metav1.NewMicroTime(now))
	}
	e.hold(l, now)
	updated := &coordinationv1.Lease{}
	// Conflict: the Lease changed since it was read; the next try reads it.
	if err := leases.Update(ctx, e.name, l, updated); err != nil {
		return fmt.Errorf("update Lease %s/%s: %w", e.namespace, e.name, err)
	}
	e.observe(updated)
	return nil
}

// hold writes this replica into l as its holder, renewed at now.
func (e *Elector) hold(l *coordinationv1.Lease, now time.Time) {
	l.Spec.HolderIdentity = ptr.To(e.identity)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(math.Ceil(e.leaseDuration.Seconds())))
	l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(now))
}

// durationOf is the validity the holder of l asks for: its
// leaseDurationSeconds, or this replica's LeaseDuration without one.
func (e *Elector) durationOf(l *coordinationv1.Lease) time.Duration {
	if s := ptr.Deref(l.Spec.LeaseDurationSeconds, 0); s > 0 {
		return time.Duration(s) * time.Second
	}
	return e.leaseDuration
}

// observe records l as read or written now, and logs a new holder.
func (e *Elector) observe(l *coordinationv1.Lease) {
	if e.lease == nil || !apiequality.Semantic.DeepEqual(e.lease.Spec, l.Spec) {
		e.observedAt = time.Now()
	}
	e.lease = l
	if h := ptr.Deref(l.Spec.HolderIdentity, ""); h != e.leader {
		e.leader = h
		if h != "" {
			e.log.Info("leader", "identity", h, "self", h == e.identity)
		}
	}
}

// release clears the holder of the Lease this replica holds, each attempt
// under a fresh timeout (ctx has ended). A Conflict (a renewal cancelled in
// flight may have been written after all) reads the Lease again. If release
// fails, the others take the Lease when it expires.
func (e *Elector) release() {
	leases := e.client.Leases(e.namespace)
	l := e.lease
	var err error
	for attempt := range 3 {
		var done bool
		if done, l, err = e.tryRelease(leases, l, attempt > 0); done {
			return
		}
		if !apierrors.IsConflict(err) {
			break
		}
	}
	e.log.Warn("release the lease: the others take it when it expires", "err", err)
}

// tryRelease is one attempt of release on l, the Lease as last seen, read
// again first if reread; done: the Lease is released, or not this
// replica's.
func (e *Elector) tryRelease(leases kube.Resource, l *coordinationv1.Lease, reread bool) (done bool, _ *coordinationv1.Lease, _ error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.attemptTimeout())
	defer cancel()
	if reread {
		l = &coordinationv1.Lease{}
		if err := leases.Get(ctx, e.name, l); err != nil {
			return false, l, err
		}
	}
	if l == nil || ptr.Deref(l.Spec.HolderIdentity, "") != e.identity {
		return true, l, nil
	}
	l = l.DeepCopy()
	l.Spec.HolderIdentity = nil
	released := &coordinationv1.Lease{}
	if err := leases.Update(ctx, e.name, l, released); err != nil {
		return false, l, err
	}
	e.observe(released)
	e.log.Info("lease released")
	return true, l, nil
}

// sleep waits d, or less if ctx ends first (then returns its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
