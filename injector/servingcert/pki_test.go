package servingcert

import (
	"crypto/x509"
	"slices"
	"testing"
	"time"
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
