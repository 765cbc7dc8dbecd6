package tmpl

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"

	"software.sslmate.com/src/go-pkcs12"
)

// PEMEncoded is what pkiCert returns: consul-template's dependency.PemEncoded.
// Each field is a PEM block as encoding/pem writes it (ending in a newline).
type PEMEncoded struct {
	Cert, Key, CA string
	CAChain       []string
}

// Data returns the value itself, so `{{ (pkiCert …).Data.Cert }}` works as in
// consul-template.
func (p PEMEncoded) Data() PEMEncoded { return p }

func (r *run) pkiCert(args ...string) (any, error) {
	d, err := newDependency(KindPKICert, args)
	if err != nil {
		return nil, safef("%s", err)
	}
	s, err := r.in.Lookup.Secret(d)
	if err != nil {
		return nil, &safeError{msg: fmt.Sprintf("pkiCert %q: not available", d.Path), err: err}
	}
	if s == nil {
		return nil, nil
	}
	r.seen = append(r.seen, s)
	return pemsOf(s.Data)
}

// pemsOf sorts the PEM blocks of a PKI response as consul-template does: it
// concatenates every string value and every ca_chain item, then takes each
// block in turn: a "… PRIVATE KEY" is Key, a CA certificate is CA (the first
// one) and joins CAChain (once), another certificate is Cert. consul-template
// walks the response map in Go's random order; this walks its keys sorted
// (ca_chain, certificate, issuing_ca, private_key), which gives the result
// its orders agree on for Vault's responses: CA is the issuing CA (the first
// of ca_chain), CAChain is ca_chain.
func pemsOf(data map[string]any) (PEMEncoded, error) {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var all bytes.Buffer
	for _, k := range keys {
		switch v := data[k].(type) {
		case string:
			all.WriteString(v + "\n")
		case []any:
			if k == "ca_chain" {
				for _, it := range v {
					if s, ok := it.(string); ok {
						all.WriteString(s + "\n")
					}
				}
			}
		}
	}
	var out PEMEncoded
	rest := all.Bytes()
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out, nil
		}
		enc := string(pem.EncodeToMemory(b))
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			out.Key = enc
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return PEMEncoded{}, safef("pkiCert: a PEM block of the response is neither a certificate nor a private key")
		}
		if c.IsCA {
			if out.CA == "" {
				out.CA = enc
			}
			if !containsString(out.CAChain, enc) {
				out.CAChain = append(out.CAChain, enc)
			}
			continue
		}
		out.Cert = enc
	}
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// pkcs12Func builds a PKCS#12 keystore. CERT holds the leaf certificate and
// optionally its chain; every CA argument is a string of PEM certificates or
// a list of them. Salts and IVs come from a keyed hash of the inputs, so the
// same inputs give the same bytes (the agent then skips the unchanged write
// and the reload) while different keys never share them.
func pkcs12Func(certPEM, keyPEM, password string, ca ...any) (string, error) {
	certs, err := pemCerts(certPEM)
	if err != nil {
		return "", safef("pkcs12: CERT %s", err)
	}
	if len(certs) == 0 {
		return "", safef("pkcs12: CERT has no PEM certificate")
	}
	leaf, chain := certs[0], certs[1:]
	for i, a := range ca {
		var pems []string
		switch v := a.(type) {
		case nil:
		case string:
			pems = []string{v}
		case []string:
			pems = v
		case []any:
			for _, x := range v {
				s, ok := x.(string)
				if !ok {
					return "", safef("pkcs12: CA argument %d is a list with a %T; give PEM strings", i+1, x)
				}
				pems = append(pems, s)
			}
		default:
			return "", safef("pkcs12: CA argument %d is a %T; give PEM strings or a list of them", i+1, a)
		}
		for _, p := range pems {
			cs, err := pemCerts(p)
			if err != nil {
				return "", safef("pkcs12: CA argument %d %s", i+1, err)
			}
			chain = append(chain, cs...)
		}
	}
	chain = dedupCerts(leaf, chain)
	key, err := pemKey(keyPEM)
	if err != nil {
		return "", safef("pkcs12: KEY %s", err)
	}
	if !keyMatches(key, leaf) {
		return "", safef("pkcs12: KEY is not the private key of the certificate in CERT (the first one)")
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	seed := hmac.New(sha256.New, der)
	seed.Write(leaf.Raw)
	for _, c := range chain {
		seed.Write(c.Raw)
	}
	seed.Write([]byte(password))
	enc := pkcs12.Modern2023.WithRand(&hashReader{seed: seed.Sum(nil)})
	pfx, err := enc.Encode(key, leaf, chain, password)
	if err != nil {
		return "", safef("pkcs12: the keystore cannot be encoded (is the password valid UTF-8 without NUL?)")
	}
	return string(pfx), nil
}

func pemCerts(s string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out, nil
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("has a PEM block that is not a CERTIFICATE")
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("has a CERTIFICATE block that does not parse")
		}
		out = append(out, c)
	}
}

func dedupCerts(leaf *x509.Certificate, chain []*x509.Certificate) []*x509.Certificate {
	seen := map[string]bool{string(leaf.Raw): true}
	var out []*x509.Certificate
	for _, c := range chain {
		if !seen[string(c.Raw)] {
			seen[string(c.Raw)] = true
			out = append(out, c)
		}
	}
	return out
}

func pemKey(s string) (crypto.PrivateKey, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, fmt.Errorf("has no PEM block")
	}
	switch b.Type {
	case "PRIVATE KEY":
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
	case "RSA PRIVATE KEY":
		if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
	case "EC PRIVATE KEY":
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return k, nil
		}
	default:
		return nil, fmt.Errorf("is not a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY PEM block")
	}
	return nil, fmt.Errorf("is a key block that does not parse")
}

func keyMatches(k crypto.PrivateKey, c *x509.Certificate) bool {
	type pub interface{ Equal(crypto.PublicKey) bool }
	var p crypto.PublicKey
	switch k := k.(type) {
	case *rsa.PrivateKey:
		p = &k.PublicKey
	case *ecdsa.PrivateKey:
		p = &k.PublicKey
	case ed25519.PrivateKey:
		p = k.Public()
	default:
		return false
	}
	e, ok := p.(pub)
	return ok && e.Equal(c.PublicKey)
}

// hashReader is a deterministic byte stream: SHA-256(seed ‖ counter).
type hashReader struct {
	seed []byte
	n    uint64
	buf  []byte
}

func (h *hashReader) Read(p []byte) (int, error) {
	read := 0
	for read < len(p) {
		if len(h.buf) == 0 {
			var ctr [8]byte
			binary.BigEndian.PutUint64(ctr[:], h.n)
			h.n++
			sum := sha256.Sum256(append(append([]byte{}, h.seed...), ctr[:]...))
			h.buf = sum[:]
		}
		c := copy(p[read:], h.buf)
		h.buf = h.buf[c:]
		read += c
	}
	return read, nil
}
