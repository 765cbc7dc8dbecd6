package admission

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/injector/internal/injecttest"
	"github.com/ramvault/ramvault/injector/kube/kubetest"
)

func TestEventRecorder(t *testing.T) {
	owned := injecttest.Pod()
	owned.Name, owned.GenerateName = "", "web-7d9f-"
	owned.OwnerReferences = []metav1.OwnerReference{
		{APIVersion: "v1", Kind: "ConfigMap", Name: "not-the-controller", UID: "u0"},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f", UID: "u1", Controller: ptr.To(true)},
	}
	bare := injecttest.Pod()
	api := kubetest.NewAPIServer(t)
	client, _ := api.Client(t)
	r := NewEventRecorder(client, slog.New(slog.DiscardHandler), "replica-0")
	var now atomic.Int64 // the recorder's clock, read by Run
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	r.now = func() time.Time { return time.Unix(0, now.Load()) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	r.record(owned, "first")
	r.record(owned, "first") // within the minute: not again
	r.record(bare, strings.Repeat("x", 2*maxEventMessage))
	list := waitEvents(t, api, 2)
	byKind := map[string]corev1.Event{}
	for _, e := range list {
		byKind[e.InvolvedObject.Kind] = e
	}
	rs, ns := byKind["ReplicaSet"], byKind["Namespace"]
	if rs.InvolvedObject.Name != "web-7d9f" || rs.InvolvedObject.UID != "u1" || rs.Namespace != "shop" || rs.Message != "first" ||
		rs.Reason != ReasonDenied || rs.Type != corev1.EventTypeWarning || rs.ReportingInstance != "replica-0" || rs.Count != 1 {
		t.Errorf("event on the controller: %+v", rs)
	}
	if ns.InvolvedObject.Name != "shop" || ns.Namespace != "shop" || len(ns.Message) != maxEventMessage || !strings.HasSuffix(ns.Message, "…") {
		t.Errorf("event on the namespace: %+v (message of %d bytes)", ns.InvolvedObject, len(ns.Message))
	}
	now.Add(int64(eventRepeat))
	r.record(owned, "first")
	waitEvents(t, api, 3)
}

func waitEvents(t *testing.T, api *kubetest.APIServer, n int) []corev1.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list := api.List("/api/v1/namespaces/shop/events")
		if len(list) > n {
			t.Fatalf("%d events, want %d", len(list), n)
		}
		if len(list) == n {
			events := make([]corev1.Event, n)
			for i, b := range list {
				if err := json.Unmarshal(b, &events[i]); err != nil {
					t.Fatal(err)
				}
			}
			return events
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events after 5s, want %d", len(list), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
