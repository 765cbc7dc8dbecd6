package injector

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
)

// leaseElector elects one replica with a coordination.k8s.io/v1 Lease, the
// way client-go's leader election does and compatible with it (same fields,
// same rules), in the little this webhook needs of it.
//
// A candidate takes the Lease when it has no holder, or when its holder has
// not renewed it for LeaseDuration, measured on this replica's clock from
// when it last saw the Lease change (so clocks need not agree). The leader
// renews it every RetryPeriod and stops leading when it has not renewed it
// for RenewDeadline, which is shorter than LeaseDuration: it stops before
// anyone else may start. Every write carries the resourceVersion read, so
// of two candidates writing at once one gets a Conflict, and loses.
type leaseElector struct {
	client        *kubeClient
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

func newLeaseElector(client *kubeClient, o selfSignedOptions, log *slog.Logger) *leaseElector {
	return &leaseElector{client: client, namespace: o.Namespace, name: o.LeaseName, identity: o.Identity,
		leaseDuration: o.LeaseDuration, renewDeadline: o.RenewDeadline, retryPeriod: o.RetryPeriod,
		log: log.With("lease", o.Namespace+"/"+o.LeaseName)}
}

// errLeaseHeld: another replica holds the Lease, and has renewed it lately.
var errLeaseHeld = errors.New("held by another replica")

// run campaigns until ctx ends. Each time this replica takes the Lease, lead
// runs with a context that ends when the Lease is lost or ctx ends, and run
// waits for lead to return before it campaigns again. When ctx ends while
// leading, lead returns first, then the Lease is released (its holder
// cleared) so that another replica takes over without waiting for it to
// expire.
func (e *leaseElector) run(ctx context.Context, lead func(context.Context)) {
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
func (e *leaseElector) acquire(ctx context.Context) (time.Time, bool) {
	for {
		at := time.Now()
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
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
func (e *leaseElector) renew(ctx context.Context, renewed time.Time) {
	for {
		if sleep(ctx, e.retryPeriod) != nil {
			return
		}
		deadline := renewed.Add(e.renewDeadline)
		at := time.Now()
		actx, cancel := context.WithDeadline(ctx, deadline)
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
func (e *leaseElector) tryAcquireOrRenew(ctx context.Context, now time.Time) error {
	leases := e.client.leases(e.namespace)
	cur := &coordinationv1.Lease{}
	err := leases.get(ctx, e.name, cur)
	if apierrors.IsNotFound(err) {
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: e.name, Namespace: e.namespace},
			Spec:       coordinationv1.LeaseSpec{LeaseTransitions: ptr.To[int32](0), AcquireTime: ptr.To(metav1.NewMicroTime(now))},
		}
		e.hold(l, now)
		created := &coordinationv1.Lease{}
		// AlreadyExists: another candidate created it first; the next try reads it.
		if err := leases.create(ctx, l, created); err != nil {
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
	if err := leases.update(ctx, e.name, l, updated); err != nil {
		return fmt.Errorf("update Lease %s/%s: %w", e.namespace, e.name, err)
	}
	e.observe(updated)
	return nil
}

// hold writes this replica into l as its holder, renewed at now.
func (e *leaseElector) hold(l *coordinationv1.Lease, now time.Time) {
	l.Spec.HolderIdentity = ptr.To(e.identity)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(math.Ceil(e.leaseDuration.Seconds())))
	l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(now))
}

// durationOf is the validity the holder of l asks for: its
// leaseDurationSeconds, or this replica's LeaseDuration without one.
func (e *leaseElector) durationOf(l *coordinationv1.Lease) time.Duration {
	if s := ptr.Deref(l.Spec.LeaseDurationSeconds, 0); s > 0 {
		return time.Duration(s) * time.Second
	}
	return e.leaseDuration
}

// observe records l as read or written now, and logs a new holder.
func (e *leaseElector) observe(l *coordinationv1.Lease) {
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

// release clears the holder of the Lease this replica holds, under a fresh
// timeout (ctx has ended). A Conflict (a renewal cancelled in flight may
// have been written after all) reads the Lease again. If release fails, the
// others take the Lease when it expires.
func (e *leaseElector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	leases := e.client.leases(e.namespace)
	l := e.lease
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			l = &coordinationv1.Lease{}
			if err = leases.get(ctx, e.name, l); err != nil {
				break
			}
		}
		if l == nil || ptr.Deref(l.Spec.HolderIdentity, "") != e.identity {
			return
		}
		l = l.DeepCopy()
		l.Spec.HolderIdentity = nil
		released := &coordinationv1.Lease{}
		if err = leases.update(ctx, e.name, l, released); err == nil {
			e.observe(released)
			e.log.Info("lease released")
			return
		}
		if !apierrors.IsConflict(err) {
			break
		}
	}
	e.log.Warn("release the lease: the others take it when it expires", "err", err)
}
