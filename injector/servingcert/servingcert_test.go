package servingcert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramvault/ramvault/injector/kube/kubetest"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testIssuer() issuer {
	return issuer{hosts: []string{"ramvault-injector.ramvault-system.svc", "10.88.77.1"}, certValidity: 30 * time.Hour, caValidity: 300 * time.Hour}
}

func servingSerial(p *pki) string { return p.serving.Leaf.SerialNumber.String() }

func TestIssuerNext(t *testing.T) {
	is := testIssuer()
	first, newCA, err := is.next(&pki{}, t0)
	if err != nil || !newCA {
		t.Fatalf("first issue: newCA %v, err %v", newCA, err)
	}
	leaf := first.serving.Leaf
	if leaf.CheckSignatureFrom(first.cas[0]) != nil || !slices.Equal(leaf.DNSNames, []string{"ramvault-injector.ramvault-system.svc"}) ||
		len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "10.88.77.1" || !leaf.NotAfter.Equal(t0.Add(30*time.Hour)) {
		t.Fatalf("serving certificate: names %v %v, not after %v", leaf.DNSNames, leaf.IPAddresses, leaf.NotAfter)
	}
	// What a client of the bundle sees: the serving certificate verifies.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(first.bundlePEM) {
		t.Fatal("no CA in the bundle")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "ramvault-injector.ramvault-system.svc", CurrentTime: t0}); err != nil {
		t.Fatalf("the serving certificate does not verify with the bundle: %v", err)
	}
	parsed := parsePKI(first.data())
	if parsed.caKey == nil || parsed.serving == nil || len(parsed.cas) != 1 {
		t.Fatal("the Secret's data does not parse back")
	}

	cases := []struct {
		name       string
		cur        *pki
		at         time.Time
		is         issuer
		same       bool // cur returned as it is
		newCA      bool
		newServing bool
		bundleSize int
	}{
		{name: "nothing is due before two thirds of the lifetime", cur: parsed, at: t0.Add(19 * time.Hour), is: is, same: true, bundleSize: 1},
		{name: "the serving certificate is renewed at two thirds, by the same CA", cur: parsed, at: t0.Add(20 * time.Hour), is: is, newServing: true, bundleSize: 1},
		{name: "a change of host names renews it", cur: parsed, at: t0, is: issuer{hosts: []string{"other.svc"}, certValidity: is.certValidity, caValidity: is.caValidity}, newServing: true, bundleSize: 1},
		{name: "the CA is renewed at two thirds, and the old one stays in the bundle", cur: parsed, at: t0.Add(200 * time.Hour), is: is, newCA: true, newServing: true, bundleSize: 2},
		{name: "a Secret without the CA key gets a new CA", cur: parsePKI(map[string][]byte{secretCAKey: first.bundlePEM, secretTLSCert: first.certPEM, secretTLSKey: first.keyPEM}),
			at: t0, is: is, newCA: true, newServing: true, bundleSize: 2},
		{name: "a serving key that does not match is replaced", cur: parsePKI(map[string][]byte{secretCAKey: first.bundlePEM, secretCAPriv: first.caKeyPEM, secretTLSCert: first.certPEM, secretTLSKey: first.caKeyPEM}),
			at: t0, is: is, newServing: true, bundleSize: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, newCA, err := tc.is.next(tc.cur, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if (got == tc.cur) != tc.same || newCA != tc.newCA || len(got.cas) != tc.bundleSize {
				t.Fatalf("same %v newCA %v bundle of %d; want %v %v %d", got == tc.cur, newCA, len(got.cas), tc.same, tc.newCA, tc.bundleSize)
			}
			if renewed := tc.cur.serving == nil || servingSerial(got) != servingSerial(tc.cur); renewed != tc.newServing {
				t.Errorf("serving certificate renewed: %v, want %v", renewed, tc.newServing)
			}
			if got.serving.Leaf.CheckSignatureFrom(got.cas[0]) != nil {
				t.Error("the serving certificate is not signed by the bundle's first CA")
			}
			if !got.nextCheck().After(tc.at) {
				t.Errorf("next check %v is not after now %v", got.nextCheck(), tc.at)
			}
		})
	}

	// An old CA leaves the bundle when it expires.
	rotated, _, _ := is.next(parsed, t0.Add(200*time.Hour))
	if got, _, _ := is.next(parsePKI(rotated.data()), t0.Add(300*time.Hour)); len(got.cas) != 1 || !got.cas[0].Equal(rotated.cas[0]) {
		t.Errorf("after the old CA expired the bundle holds %d CAs", len(got.cas))
	}
}

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

// writeKeyPair writes a fresh serving certificate for host into dir.
func writeKeyPair(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	p, _, err := testIssuer().next(&pki{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), p.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), p.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p.serving.Leaf
}

// TestCertFilesFollowAKubeletSecretVolume updates the files the way the
// kubelet updates a mounted Secret: a new timestamped directory, and the
// ..data symlink swapped to it by a rename.
func TestCertFilesFollowAKubeletSecretVolume(t *testing.T) {
	dir := t.TempDir()
	first := writeKeyPair(t, filepath.Join(dir, "..2030_01_01_00_00_00.1"))
	if err := os.Symlink("..2030_01_01_00_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	var logs syncBuffer
	f, err := NewFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	servedSerial := func() string {
		c, err := f.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.String()
	}
	if servedSerial() != first.SerialNumber.String() {
		t.Fatal("not serving the first certificate")
	}
	waitServing := func(want *x509.Certificate) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for servedSerial() != want.SerialNumber.String() {
			if time.Now().After(deadline) {
				t.Fatalf("still serving %s after 10s, want %s", servedSerial(), want.SerialNumber)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	second := writeKeyPair(t, filepath.Join(dir, "..2030_01_02_00_00_00.2"))
	if err := os.Symlink("..2030_01_02_00_00_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2030_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitServing(second)

	// A key that does not match leaves the old pair in use.
	if err := os.WriteFile(filepath.Join(dir, "..2030_01_02_00_00_00.2", "tls.key"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	third := writeKeyPair(t, filepath.Join(dir, "..2030_01_03_00_00_00.3"))
	if err := os.Symlink("..2030_01_03_00_00_00.3", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "previous one stays in use"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the broken pair was not tried:\n%s", logs.String())
		}
	}
	if servedSerial() != second.SerialNumber.String() {
		t.Error("a broken key pair replaced the one in use")
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitServing(third)
}

func TestCertFilesReloadOnlyForTheirOwnFiles(t *testing.T) {
	f := &Files{certFile: "/tls/tls.crt", keyFile: "./key/tls.key"}
	for name, want := range map[string]bool{
		"/tls/tls.crt":                 true,
		"key/tls.key":                  true,
		"/tls/..data":                  true,
		"/tls/..data_tmp":              true,
		"/tls/..2030_01_01_00_00_00.1": true,
		"/tls/webhook.log":             false,
		"/tls/tls.crt.swp":             false,
		"key/tls.crt":                  false,
		"/elsewhere/tls.crt":           false,
	} {
		if got := f.concerns(name); got != want {
			t.Errorf("a change to %s concerns the pair: %v, want %v", name, got, want)
		}
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
