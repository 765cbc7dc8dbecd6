package admission

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReasonDenied is the reason of the Event that tells of a denied Pod.
const ReasonDenied = "RamvaultInjectionDenied"

const (
	eventComponent  = "ramvault-injector"
	eventController = "ramvault.io/injector"
	eventQueue      = 256
	eventTimeout    = 5 * time.Second
	// eventRepeat is how long the same message about the same object is
	// not repeated: a ReplicaSet retries a denied Pod again and again.
	eventRepeat = time.Minute
	// maxEventMessage keeps an Event small however many problems there are.
	maxEventMessage = 4096
)

// EventSink creates Events (a kube.Client is one).
type EventSink interface {
	CreateEvent(ctx context.Context, ev *corev1.Event) error
}

// EventRecorder tells of denials where users look: a Warning Event on the
// Pod's controller (the ReplicaSet, Job… in its controller ownerReference),
// which `kubectl describe` shows, or, for a Pod without one, on its
// namespace (`kubectl events -n NAMESPACE`). A denied Pod does not exist, so
// it cannot carry the Event itself. Events are created in the background so
// that admission never waits on them; the same message about the same
// object is sent once a minute at most, and events are dropped (and logged)
// when the queue is full. It needs RBAC to create events, nothing else.
type EventRecorder struct {
	sink     EventSink
	log      *slog.Logger
	instance string
	queue    chan *corev1.Event
	now      func() time.Time
}

// NewEventRecorder returns a recorder that creates Events in sink once Run
// runs; instance names this replica in them.
func NewEventRecorder(sink EventSink, log *slog.Logger, instance string) *EventRecorder {
	return &EventRecorder{sink: sink, log: log, instance: instance, queue: make(chan *corev1.Event, eventQueue), now: time.Now}
}

// record queues the Event about pod, denied with message.
func (r *EventRecorder) record(pod *corev1.Pod, message string) {
	if r == nil {
		return
	}
	ev := r.event(pod, message)
	select {
	case r.queue <- ev:
	default:
		r.log.Warn("event queue full, event dropped", "namespace", ev.Namespace, "kind", ev.InvolvedObject.Kind, "name", ev.InvolvedObject.Name)
	}
}

func (r *EventRecorder) event(pod *corev1.Pod, message string) *corev1.Event {
	ns := pod.Namespace
	obj := corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: ns, Namespace: ns}
	if owner := metav1.GetControllerOfNoCopy(pod); owner != nil {
		obj = corev1.ObjectReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name, UID: owner.UID, Namespace: ns}
	}
	if len(message) > maxEventMessage {
		message = message[:maxEventMessage-len("…")] + "…"
	}
	t := r.now()
	now := metav1.NewTime(t)
	// Named like client-go's recorder names events: object.timestamp.
	suffix := fmt.Sprintf(".%x", t.UnixNano())
	name := obj.Name
	if len(name) > 253-len(suffix) {
		name = name[:253-len(suffix)]
	}
	return &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: name + suffix, Namespace: ns},
		InvolvedObject:      obj,
		Reason:              ReasonDenied,
		Message:             message,
		Type:                corev1.EventTypeWarning,
		Source:              corev1.EventSource{Component: eventComponent},
		ReportingController: eventController,
		ReportingInstance:   r.instance,
		Action:              "Inject",
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
	}
}

// Run creates the queued Events until ctx ends.
func (r *EventRecorder) Run(ctx context.Context) {
	sent := map[string]time.Time{} // involved object + message → when
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.queue:
			now := r.now()
			for k, at := range sent {
				if now.Sub(at) >= eventRepeat {
					delete(sent, k)
				}
			}
			key := fmt.Sprintf("%s/%s/%s/%s\x00%s", ev.Namespace, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.InvolvedObject.UID, ev.Message)
			if _, dup := sent[key]; dup {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, eventTimeout)
			err := r.sink.CreateEvent(cctx, ev)
			cancel()
			if err != nil {
				r.log.Warn("create event", "namespace", ev.Namespace, "kind", ev.InvolvedObject.Kind, "name", ev.InvolvedObject.Name, "err", err)
				continue
			}
			sent[key] = now
		}
	}
}
