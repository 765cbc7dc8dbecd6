package servingcert

import (
	"context"
	"encoding/pem"
	"log/slog"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramvault/ramvault/injector/kube/kubetest"
)

// mwcPath is where the fake apiserver keeps the webhook configuration.
var mwcPath = kubetest.Item("admissionregistration.k8s.io/v1", "", "mutatingwebhookconfigurations", "ramvault-injector")

// fakeCluster is a fake apiserver holding a MutatingWebhookConfiguration.
func fakeCluster(t *testing.T) *kubetest.APIServer {
	t.Helper()
	api := kubetest.NewAPIServer(t)
	api.Set(mwcPath, &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: "ramvault-injector"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "inject.ramvault.io"}, {Name: "other.ramvault.io"}},
	})
	return api
}

func testSelfSigned(t *testing.T, api *kubetest.APIServer, now *time.Time) *SelfSigned {
	t.Helper()
	client, _ := api.Client(t)
	is := testIssuer()
	s := NewSelfSigned(client, SelfSignedOptions{Namespace: "ramvault-system", SecretName: "ramvault-injector-tls", WebhookConfig: "ramvault-injector",
		Hosts: is.hosts, CertValidity: is.certValidity, CAValidity: is.caValidity, Resync: time.Minute}, nil, slog.New(slog.DiscardHandler), nil)
	s.now = func() time.Time { return *now }
	return s
}

func caBundles(t *testing.T, api *kubetest.APIServer) [][]byte {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if !api.Get(mwcPath, &mwc) {
		t.Fatal("no MutatingWebhookConfiguration")
	}
	var out [][]byte
	for _, w := range mwc.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	return out
}

func TestSelfSignedReconcile(t *testing.T) {
	ctx := context.Background()
	api := fakeCluster(t)
	now := t0
	s := testSelfSigned(t, api, &now)

	next, err := s.reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sec corev1.Secret
	if !api.Get(kubetest.Item("v1", "ramvault-system", "secrets", "ramvault-injector-tls"), &sec) {
		t.Fatal("no Secret written")
	}
	if sec.Type != corev1.SecretTypeTLS || sec.Labels["app.kubernetes.io/managed-by"] != "ramvault-injector" {
		t.Errorf("Secret type %q, labels %v", sec.Type, sec.Labels)
	}
	for i, b := range caBundles(t, api) {
		if string(b) != string(sec.Data[secretCAKey]) {
			t.Errorf("webhook %d: caBundle is not the Secret's ca.crt", i)
		}
	}
	if w := api.TakeWrites(); !slices.Equal(w, []string{"patch mutatingwebhookconfigurations", "create secrets"}) {
		t.Errorf("writes %v: want the caBundle patched before the Secret is written", w)
	}
	served, err := s.GetCertificate(nil)
	if err != nil || string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: served.Certificate[0]})) != string(sec.Data[secretTLSCert]) {
		t.Fatalf("the leader does not serve the Secret's certificate (%v)", err)
	}
	if want := renewAt(served.Leaf); !next.Equal(want) {
		t.Errorf("next check %v, want the renewal at %v", next, want)
	}

	// Nothing due: nothing written.
	if _, err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if w := api.TakeWrites(); len(w) != 0 {
		t.Fatalf("writes %v when nothing is due", w)
	}

	// Someone empties the caBundle (re-applied manifests): it is patched back.
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	api.Get(mwcPath, &mwc)
	mwc.Webhooks[1].ClientConfig.CABundle = nil
	api.Set(mwcPath, &mwc)
	if _, err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if w := api.TakeWrites(); !slices.Equal(w, []string{"patch mutatingwebhookconfigurations"}) {
		t.Fatalf("writes %v: want the caBundle patched back, the Secret left alone", w)
	}
	if b := caBundles(t, api); len(b) != 2 || string(b[1]) != string(sec.Data[secretCAKey]) {
		t.Error("the emptied caBundle was not set back")
	}

	// The serving certificate is due: only the Secret changes.
	now = t0.Add(20 * time.Hour)
	if _, err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if w := api.TakeWrites(); !slices.Equal(w, []string{"update secrets"}) {
		t.Fatalf("writes %v: want the Secret updated, the caBundle unchanged", w)
	}

	// The CA is due: the new CA is trusted first, then served.
	now = t0.Add(200 * time.Hour)
	if _, err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if w := api.TakeWrites(); !slices.Equal(w, []string{"patch mutatingwebhookconfigurations", "update secrets"}) {
		t.Fatalf("writes %v: want the caBundle patched, then the Secret updated", w)
	}
	bundle := caBundles(t, api)[0]
	if n := len(parsePKI(map[string][]byte{secretCAKey: bundle}).cas); n != 2 {
		t.Errorf("%d CAs in the caBundle during a CA rotation, want the new and the old", n)
	}
}

// TestSelfSignedStaleWritesFail: the Secret and the caBundle are written
// with the resourceVersion read, so that a leader that lost the Lease
// without knowing cannot overwrite the new leader's writes.
func TestSelfSignedStaleWritesFail(t *testing.T) {
	ctx := context.Background()
	api := fakeCluster(t)
	now := t0
	s := testSelfSigned(t, api, &now)
	if _, err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	secretPath := kubetest.Item("v1", "ramvault-system", "secrets", "ramvault-injector-tls")
	var sec corev1.Secret
	api.Get(secretPath, &sec)
	now = t0.Add(20 * time.Hour)
	api.ConflictNext(secretPath, 1)
	if _, err := s.reconcile(ctx); !apierrors.IsConflict(err) {
		t.Errorf("a write over a newer Secret: %v, want a Conflict", err)
	}
	// The next reconcile reads the Secret again, and succeeds.
	if _, err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	var after corev1.Secret
	api.Get(secretPath, &after)
	if string(after.Data[secretTLSCert]) == string(sec.Data[secretTLSCert]) {
		t.Error("the serving certificate was not renewed after the Conflict")
	}
}

func TestSelfSignedWithoutWebhookConfigurationStillServes(t *testing.T) {
	now := t0
	s := testSelfSigned(t, kubetest.NewAPIServer(t), &now)
	if _, err := s.reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !s.Ready() {
		t.Error("no certificate served while the MutatingWebhookConfiguration is missing")
	}
}

// TestSelfSignedFollowerServesTheSecret: a replica that does not lead
// serves what the leader wrote.
func TestSelfSignedFollowerServesTheSecret(t *testing.T) {
	ctx := context.Background()
	api := fakeCluster(t)
	now := t0
	leader, follower := testSelfSigned(t, api, &now), testSelfSigned(t, api, &now)
	if err := follower.loadSecret(ctx); err != nil || follower.Ready() {
		t.Fatalf("before the leader wrote: loaded %v (%v)", follower.Ready(), err)
	}
	if _, err := leader.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := follower.loadSecret(ctx); err != nil {
		t.Fatal(err)
	}
	a, _ := leader.GetCertificate(nil)
	b, _ := follower.GetCertificate(nil)
	if b == nil || !a.Leaf.Equal(b.Leaf) {
		t.Error("the follower does not serve the leader's certificate")
	}
}
