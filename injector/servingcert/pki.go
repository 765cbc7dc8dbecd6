package servingcert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Keys of the self-managed certificate Secret (type kubernetes.io/tls).
const (
	secretCAKey   = "ca.crt"  // the CA bundle the apiserver trusts: the signing CA first, then older CAs not yet expired
	secretCAPriv  = "ca.key"  // the signing CA's key
	secretTLSCert = "tls.crt" // the serving certificate
	secretTLSKey  = "tls.key"
)

// certBackdate is how far before its issue a certificate becomes valid, for
// clocks a little behind; renewal measures a lifetime without it.
const certBackdate = time.Minute

// pki is the content of the certificate Secret, parsed.
type pki struct {
	bundlePEM []byte
	cas       []*x509.Certificate // the bundle; cas[0] signs
	caKey     crypto.Signer       // of cas[0]; nil if absent or not matching
	caKeyPEM  []byte
	certPEM   []byte
	keyPEM    []byte
	serving   *tls.Certificate // nil if absent or invalid
}

// parsePKI reads a Secret's data; what is missing or invalid stays nil (and
// is then issued anew).
func parsePKI(data map[string][]byte) *pki {
	p := &pki{bundlePEM: data[secretCAKey], caKeyPEM: data[secretCAPriv], certPEM: data[secretTLSCert], keyPEM: data[secretTLSKey]}
	for rest := p.bundlePEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			p.cas = append(p.cas, c)
		}
	}
	if b, _ := pem.Decode(p.caKeyPEM); b != nil && len(p.cas) > 0 {
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok && publicKeysEqual(s.Public(), p.cas[0].PublicKey) {
				p.caKey = s
			}
		}
	}
	if c, err := keyPair(p.certPEM, p.keyPEM); err == nil {
		p.serving = c
	}
	return p
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// data is the Secret's data for p.
func (p *pki) data() map[string][]byte {
	return map[string][]byte{secretCAKey: p.bundlePEM, secretCAPriv: p.caKeyPEM, secretTLSCert: p.certPEM, secretTLSKey: p.keyPEM}
}

// renewAt is when a certificate is renewed: at two thirds of its lifetime.
func renewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore.Add(certBackdate))
	return c.NotAfter.Add(-life / 3)
}

// issuer makes the self-managed certificates.
type issuer struct {
	hosts        []string // DNS names and IP addresses of the serving certificate
	certValidity time.Duration
	caValidity   time.Duration
}

// next returns the PKI the Secret should hold at now, and whether its CA is
// new (the apiserver must trust it before a certificate it signed is
// served). It returns cur itself when nothing is due.
func (is issuer) next(cur *pki, now time.Time) (p *pki, newCA bool, err error) {
	p = &pki{cas: cur.cas, caKey: cur.caKey, caKeyPEM: cur.caKeyPEM, serving: cur.serving, certPEM: cur.certPEM, keyPEM: cur.keyPEM}
	if p.caKey == nil || !now.Before(renewAt(p.cas[0])) {
		ca, key, keyPEM, err := issueCA(now, is.caValidity)
		if err != nil {
			return nil, false, err
		}
		p.cas, p.caKey, p.caKeyPEM, newCA = append([]*x509.Certificate{ca}, cur.cas...), key, keyPEM, true
	}
	// The bundle: the signing CA, then the older ones until they expire.
	var cas []*x509.Certificate
	for i, c := range p.cas {
		if i == 0 || (now.Before(c.NotAfter) && !slices.ContainsFunc(cas, c.Equal)) {
			cas = append(cas, c)
		}
	}
	p.cas = cas
	var bundle bytes.Buffer
	for _, c := range cas {
		_ = pem.Encode(&bundle, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	p.bundlePEM = bundle.Bytes()
	if !is.servingValid(p, now) {
		if p.serving, p.certPEM, p.keyPEM, err = is.newServing(p.cas[0], p.caKey, now); err != nil {
			return nil, false, err
		}
	}
	if bytes.Equal(p.bundlePEM, cur.bundlePEM) && bytes.Equal(p.certPEM, cur.certPEM) && bytes.Equal(p.caKeyPEM, cur.caKeyPEM) && bytes.Equal(p.keyPEM, cur.keyPEM) {
		return cur, false, nil
	}
	return p, newCA, nil
}

// servingValid says whether p's serving certificate can stay: signed by the
// signing CA, for exactly the hosts, and not due for renewal.
func (is issuer) servingValid(p *pki, now time.Time) bool {
	if p.serving == nil {
		return false
	}
	c := p.serving.Leaf
	if c.CheckSignatureFrom(p.cas[0]) != nil || !now.Before(renewAt(c)) {
		return false
	}
	var hosts []string
	hosts = append(hosts, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	want := slices.Clone(is.hosts)
	slices.Sort(hosts)
	slices.Sort(want)
	return slices.Equal(hosts, want)
}

// nextCheck is when p next needs the leader: the earliest renewal, or the
// expiry of an old CA that then leaves the bundle.
func (p *pki) nextCheck() time.Time {
	t := renewAt(p.serving.Leaf)
	if r := renewAt(p.cas[0]); r.Before(t) {
		t = r
	}
	for _, c := range p.cas[1:] {
		if c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func issueCA(now time.Time, validity time.Duration) (*x509.Certificate, crypto.Signer, []byte, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("ramvault-injector-ca@%d", now.Unix())},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, keyPEM, err
}

func (is issuer) newServing(ca *x509.Certificate, caKey crypto.Signer, now time.Time) (*tls.Certificate, []byte, []byte, error) {
	if len(is.hosts) == 0 {
		return nil, nil, nil, errors.New("no host names for the serving certificate")
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, nil, err
	}
	notAfter := now.Add(is.certValidity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: is.hosts[0]},
		NotBefore:    now.Add(-certBackdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range is.hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create serving certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	c, err := keyPair(certPEM, keyPEM)
	return c, certPEM, keyPEM, err
}
