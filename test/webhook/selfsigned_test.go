package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramvault/ramvault/test/stack"
)

// TestSelfSignedRotation runs two replicas with --self-signed and short
// validities, the apiserver calling the one that does not lead. The leader
// writes the Secret and patches the caBundle; the follower serves what the
// Secret holds. While serving certificates and then the CA rotate, and then
// the leader stops and the follower takes over, a loop of Pod creates sees
// every Pod injected and no admission fail.
func TestSelfSignedRotation(t *testing.T) {
	c := newCluster(t)
	id := randHex(4)
	sys := stack.Namespace(t, c.cs, nil) // the injectors' own: Secret and Lease; its Pods are not sent to them
	addrB := freeAddr(t, stack.Gateway)
	mwc := c.register(t, id, "https://"+addrB+"/mutate", nil)
	ns := c.namespace(t, id, nil)
	const certValidity, caValidity = 9 * time.Second, 30 * time.Second
	args := []string{"--self-signed", "--namespace=" + sys, "--secret-name=injector-tls", "--lease-name=injector",
		"--webhook-config-name=" + mwc.Name, "--tls-san=" + stack.Gateway,
		"--cert-validity=" + certValidity.String(), "--ca-validity=" + caValidity.String(), "--ca-propagation-delay=2s",
		"--secret-poll-interval=200ms", "--resync-interval=1s",
		"--leader-election-lease-duration=3s", "--leader-election-renew-deadline=2s", "--leader-election-retry-period=500ms"}
	ctx := context.Background()

	// A first: it leads (the Lease is new).
	a := c.startWebhook(t, "", args...)
	lease := waitFor(t, 30*time.Second, "a Lease holder", func() (string, bool) {
		l, err := c.cs.CoordinationV1().Leases(sys).Get(ctx, "injector", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return "", false
		}
		return *l.Spec.HolderIdentity, true
	})
	a.waitHTTP(t, "/readyz", 200, nil)
	if a.metric(t, "ramvault_injector_leader") != 1 {
		t.Fatal("the first replica does not lead")
	}
	// B, at the address the apiserver calls: it follows.
	b := c.startWebhook(t, addrB, args...)
	b.waitHTTP(t, "/readyz", 200, nil)
	if b.metric(t, "ramvault_injector_leader") != 0 {
		t.Fatal("the second replica leads too")
	}

	// The leader set the caBundle to the Secret's CA bundle.
	secretCA := func() []byte {
		s, err := c.cs.CoreV1().Secrets(sys).Get(ctx, "injector-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Data["ca.crt"]
	}
	waitFor(t, 30*time.Second, "the caBundle patched", func() (struct{}, bool) {
		m, err := c.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwc.Name, metav1.GetOptions{})
		return struct{}{}, err == nil && len(m.Webhooks[0].ClientConfig.CABundle) > 0 && bytes.Equal(m.Webhooks[0].ClientConfig.CABundle, secretCA())
	})
	c.waitActive(t, ns)

	// served is the certificate B serves, checked the way the apiserver
	// checks it on a new connection: against the caBundle it has now.
	served := func() *x509.Certificate {
		m, err := c.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwc.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(m.Webhooks[0].ClientConfig.CABundle)
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addrB, &tls.Config{RootCAs: pool, ServerName: stack.Gateway})
		if err != nil {
			t.Fatalf("a new connection to the follower fails with the caBundle of the moment: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}

	serials, issuers := map[string]bool{}, map[string]bool{}
	creates := 0
	loop := func(until func() bool, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !until() {
			if time.Now().After(deadline) {
				t.Fatalf("after %v: %d serving certificates from %d CAs seen, %d creates", timeout, len(serials), len(issuers), creates)
			}
			out, err := c.cs.CoreV1().Pods(ns).Create(ctx, appPod(fmt.Sprintf("loop-%d", creates), optIn()), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			creates++
			if err != nil {
				t.Fatalf("create %d failed during rotation: %v", creates, err)
			}
			if !injected(out) {
				t.Fatalf("create %d was not injected", creates)
			}
			cert := served()
			serials[cert.SerialNumber.String()] = true
			issuers[string(cert.AuthorityKeyId)] = true
			time.Sleep(50 * time.Millisecond) // pacing of the loop, not an assertion
		}
	}
	// Serving certificates renew every 6s, the CA at 20s.
	loop(func() bool { return len(serials) >= 3 && len(issuers) >= 2 }, 60*time.Second)
	if got := len(parseCerts(t, secretCA())); got != 2 {
		t.Errorf("%d CAs in the Secret's bundle after a CA rotation, want the new and the old", got)
	}

	// The leader stops (releasing the Lease): B takes over and rotates.
	if code := a.stop(); code != 0 {
		t.Fatalf("the leader exited %d", code)
	}
	before := len(serials)
	loop(func() bool { return b.metric(t, "ramvault_injector_leader") == 1 && len(serials) > before }, 30*time.Second)
	l, err := c.cs.CoordinationV1().Leases(sys).Get(ctx, "injector", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == lease {
		t.Errorf("the Lease is still held by the stopped leader (%v)", err)
	}
	t.Logf("%d creates, %d serving certificates, %d CAs, none failed", creates, len(serials), len(issuers))
	if strings.Contains(a.logs.String()+b.logs.String(), "PRIVATE KEY") {
		t.Error("a private key is in the log")
	}
}

func parseCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// waitFor polls f until it says done, failing after timeout.
func waitFor[T any](t *testing.T, timeout time.Duration, what string, f func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if v, ok := f(); ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
