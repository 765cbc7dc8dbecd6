package leaderelection

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/injector/kube/kubetest"
)

var leasePath = kubetest.Item("coordination.k8s.io/v1", "ramvault-system", "leases", "ramvault-injector")

// leaseTimes are LeaseDuration, RenewDeadline and RetryPeriod.
type leaseTimes struct{ duration, deadline, retry time.Duration }

// candidate is one replica campaigning in a test: its elector runs until
// stop, calling lead, which records when this replica leads.
type candidate struct {
	id      string
	down    *atomic.Bool // its connection to the apiserver fails
	logs    *syncBuffer
	leading atomic.Bool
	started chan struct{} // a receive per start of lead
	ended   chan struct{} // a receive per return of lead
	stop    func()        // cancels the campaign and waits for run to return
}

// campaigns tracks the candidates of one Lease: how many lead at once.
type campaigns struct {
	mu         sync.Mutex
	leaders    int
	maxLeaders int
}

func (cs *campaigns) start(t *testing.T, api *kubetest.APIServer, id string, lt leaseTimes) *candidate {
	t.Helper()
	client, down := api.Client(t)
	c := &candidate{id: id, down: down, logs: &syncBuffer{}, started: make(chan struct{}, 10), ended: make(chan struct{}, 10)}
	e := New(client, Config{Namespace: "ramvault-system", Name: "ramvault-injector", Identity: id,
		LeaseDuration: lt.duration, RenewDeadline: lt.deadline, RetryPeriod: lt.retry}, slog.New(slog.NewJSONHandler(c.logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx, func(lctx context.Context) {
			cs.mu.Lock()
			cs.leaders++
			cs.maxLeaders = max(cs.maxLeaders, cs.leaders)
			cs.mu.Unlock()
			c.leading.Store(true)
			c.started <- struct{}{}
			<-lctx.Done()
			c.leading.Store(false)
			cs.mu.Lock()
			cs.leaders--
			cs.mu.Unlock()
			c.ended <- struct{}{}
		})
		if c.leading.Load() {
			t.Errorf("%s: run returned before lead", id)
		}
	}()
	var once sync.Once
	c.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", id, c.logs)
		}
	})
	return c
}

func (cs *campaigns) max() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.maxLeaders
}

// first waits for one of cands to start leading, and returns it.
func first(t *testing.T, timeout time.Duration, cands ...*candidate) *candidate {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, c := range cands {
			select {
			case <-c.started:
				return c
			default:
			}
		}
		select {
		case <-deadline:
			t.Fatalf("nobody leads after %v", timeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func waitSignal(t *testing.T, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("%s: not within %v", what, timeout)
	}
}

func holder(t *testing.T, api *kubetest.APIServer) coordinationv1.Lease {
	t.Helper()
	var l coordinationv1.Lease
	if !api.Get(leasePath, &l) {
		t.Fatal("no Lease")
	}
	return l
}

// TestLeaseElectorOneLeaderWhoStepsDownWhenItCannotRenew: of two replicas
// exactly one leads; when its renewals fail it stops leading within
// RenewDeadline, and only then does the other take over (when the Lease
// expires); back, it follows.
func TestLeaseElectorOneLeaderWhoStepsDownWhenItCannotRenew(t *testing.T) {
	api := kubetest.NewAPIServer(t)
	lt := leaseTimes{duration: 2 * time.Second, deadline: 600 * time.Millisecond, retry: 100 * time.Millisecond}
	var cs campaigns
	a, b := cs.start(t, api, "a", lt), cs.start(t, api, "b", lt)
	leader := first(t, 10*time.Second, a, b)
	other := map[*candidate]*candidate{a: b, b: a}[leader]
	if l := holder(t, api); ptr.Deref(l.Spec.HolderIdentity, "") != leader.id || ptr.Deref(l.Spec.LeaseDurationSeconds, 0) != 2 ||
		ptr.Deref(l.Spec.LeaseTransitions, -1) != 0 || l.Spec.RenewTime == nil || l.Spec.AcquireTime == nil {
		t.Errorf("Lease spec %+v, want %s holding it, for 2s", l.Spec, leader.id)
	}
	// Longer than a LeaseDuration: the leader keeps renewing, the other
	// keeps following.
	renewed := holder(t, api).Spec.RenewTime.Time
	time.Sleep(lt.duration + 500*time.Millisecond)
	if l := holder(t, api); ptr.Deref(l.Spec.HolderIdentity, "") != leader.id || !l.Spec.RenewTime.After(renewed) {
		t.Errorf("Lease spec %+v: want %s renewing it", l.Spec, leader.id)
	}
	if other.leading.Load() || cs.max() != 1 {
		t.Fatalf("%s leads beside %s", other.id, leader.id)
	}

	// The leader's apiserver connection fails: it steps down, then the
	// other takes the Lease.
	leader.down.Store(true)
	waitSignal(t, leader.ended, 10*time.Second, "the leader steps down")
	waitSignal(t, other.started, 10*time.Second, "the other takes over")
	if cs.max() != 1 {
		t.Error("the other took over before the leader had stepped down")
	}
	if !strings.Contains(leader.logs.String(), "no longer leading") {
		t.Errorf("the step-down is not logged:\n%s", leader.logs)
	}
	if l := holder(t, api); ptr.Deref(l.Spec.HolderIdentity, "") != other.id || ptr.Deref(l.Spec.LeaseTransitions, -1) != 1 {
		t.Errorf("Lease spec %+v, want %s holding it after one transition", l.Spec, other.id)
	}

	// Back, the old leader follows.
	leader.down.Store(false)
	time.Sleep(lt.duration + 500*time.Millisecond)
	if leader.leading.Load() || !other.leading.Load() || cs.max() != 1 {
		t.Errorf("after the old leader came back: it leads %v, the new one %v", leader.leading.Load(), other.leading.Load())
	}
	if !strings.Contains(leader.logs.String(), `"identity":"`+other.id+`"`) {
		t.Errorf("the old leader did not log the new one:\n%s", leader.logs)
	}
}

// TestLeaseElectorReleasesOnCancel: a leader that stops clears the holder,
// after lead returned, so that the other takes over at once instead of after
// the LeaseDuration. A Conflict (its last renewal, cancelled in flight, was
// written after all) does not stop the release.
func TestLeaseElectorReleasesOnCancel(t *testing.T) {
	api := kubetest.NewAPIServer(t)
	var cs campaigns
	// a renews every 10s: the Conflict is for its release.
	a := cs.start(t, api, "a", leaseTimes{duration: time.Minute, deadline: 30 * time.Second, retry: 10 * time.Second})
	waitSignal(t, a.started, 10*time.Second, "a leads")
	b := cs.start(t, api, "b", leaseTimes{duration: time.Minute, deadline: 30 * time.Second, retry: 100 * time.Millisecond})
	api.ConflictNext(leasePath, 1)
	a.stop()
	select {
	case <-a.ended:
	default:
		t.Fatal("run returned before lead")
	}
	if logs := a.logs.String(); !strings.Contains(logs, "lease released") || api.ConflictsLeft(leasePath) != 0 {
		t.Errorf("the release after a Conflict is not logged:\n%s", logs)
	}
	waitSignal(t, b.started, 10*time.Second, "b takes the released Lease (well before it expires)")
	if l := holder(t, api); ptr.Deref(l.Spec.HolderIdentity, "") != "b" || ptr.Deref(l.Spec.LeaseTransitions, -1) != 1 {
		t.Errorf("Lease spec %+v, want b holding it after one transition", l.Spec)
	}
	b.stop()
	if l := holder(t, api); l.Spec.HolderIdentity != nil {
		t.Errorf("the stopped leader left the holder %q", *l.Spec.HolderIdentity)
	}
}

// TestLeaseElectorRetriesConflicts: a Conflict (someone else wrote the Lease
// between the read and the write) is retried, when taking the Lease and when
// renewing it, and the leader keeps leading.
func TestLeaseElectorRetriesConflicts(t *testing.T) {
	api := kubetest.NewAPIServer(t)
	api.Set(leasePath, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "ramvault-injector", Namespace: "ramvault-system"}})
	api.ConflictNext(leasePath, 2)
	lt := leaseTimes{duration: 10 * time.Second, deadline: 5 * time.Second, retry: 100 * time.Millisecond}
	var cs campaigns
	a := cs.start(t, api, "a", lt)
	waitSignal(t, a.started, 10*time.Second, "a takes the Lease despite two Conflicts")
	api.ConflictNext(leasePath, 3)
	renewed := holder(t, api).Spec.RenewTime.Time
	deadline := time.Now().Add(10 * time.Second)
	for l := holder(t, api); !l.Spec.RenewTime.After(renewed) || api.ConflictsLeft(leasePath) > 0; l = holder(t, api) {
		if time.Now().After(deadline) {
			t.Fatal("the Lease was not renewed after three Conflicts")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !a.leading.Load() || len(a.ended) > 0 {
		t.Error("a Conflict on renewal made the leader step down")
	}
	if n := strings.Count(a.logs.String(), "Conflict") + strings.Count(a.logs.String(), "modified"); n == 0 {
		t.Errorf("the Conflicts are not logged:\n%s", a.logs)
	}
}

// TestLeaseElectorWaitsForAnExpiredHolder: a Lease its holder stopped
// renewing (a crashed replica) is taken once it has not changed for its
// leaseDurationSeconds, by this replica's clock.
func TestLeaseElectorWaitsForAnExpiredHolder(t *testing.T) {
	api := kubetest.NewAPIServer(t)
	long := metav1.NewMicroTime(time.Now().Add(-time.Hour)) // by another clock: not trusted
	api.Set(leasePath, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "ramvault-injector", Namespace: "ramvault-system"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("crashed"), LeaseDurationSeconds: ptr.To[int32](2), RenewTime: &long, AcquireTime: &long, LeaseTransitions: ptr.To[int32](4)}})
	var cs campaigns
	start := time.Now()
	a := cs.start(t, api, "a", leaseTimes{duration: 15 * time.Second, deadline: 10 * time.Second, retry: 100 * time.Millisecond})
	waitSignal(t, a.started, 10*time.Second, "a takes the expired Lease")
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("took the Lease after %v, before its holder's 2s ran out", d)
	}
	if l := holder(t, api); ptr.Deref(l.Spec.HolderIdentity, "") != "a" || ptr.Deref(l.Spec.LeaseTransitions, -1) != 5 || ptr.Deref(l.Spec.LeaseDurationSeconds, 0) != 15 {
		t.Errorf("Lease spec %+v, want a holding it for 15s, transition 5", l.Spec)
	}
	if !strings.Contains(a.logs.String(), `"identity":"crashed"`) {
		t.Errorf("the holder seen first is not logged:\n%s", a.logs)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger in another goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestElectorBoundsEachAttempt: each call to the apiserver gets half the
// renew deadline, at least a second, so that one slow call cannot use up
// the deadline of a renewal.
func TestElectorBoundsEachAttempt(t *testing.T) {
	for deadline, want := range map[time.Duration]time.Duration{
		10 * time.Second: 5 * time.Second, 3 * time.Second: 1500 * time.Millisecond, 1500 * time.Millisecond: time.Second, 600 * time.Millisecond: time.Second,
	} {
		e := New(nil, Config{RenewDeadline: deadline}, slog.New(slog.DiscardHandler))
		if got := e.attemptTimeout(); got != want {
			t.Errorf("renew deadline %v: attempts bounded by %v, want %v", deadline, got, want)
		}
	}
}
