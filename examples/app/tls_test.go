package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// issue is a CA-signed leaf (or a self-signed one with ca nil) and its key.
func issue(t *testing.T, serial int64, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "web.test"}, DNSNames: []string{"web.test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	parent, signer := tpl, key
	if ca == nil {
		tpl.IsCA, tpl.BasicConstraintsValid, tpl.KeyUsage = true, true, x509.KeyUsageCertSign
	} else {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	return c, key, pemOf("CERTIFICATE", der), pemOf("EC PRIVATE KEY", kder)
}

// The TLS files are loaded at each reload: a matching pair chained to the
// CA file is served; a key of another certificate is reported and the
// certificate served stays the previous one.
func TestTLSFilesAreCheckedAndServedAtEachReload(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPEM, _ := issue(t, 1, nil, nil)
	_, _, crt, key := issue(t, 0x1a2b, ca, caKey)
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("tls.crt", crt)
	write("tls.key", key)
	write("ca.crt", caPEM)
	a := New(Config{SecretsDir: dir, TLS: TLSFiles{Cert: "tls.crt", Key: "tls.key", CA: "ca.crt"}}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	st := a.loadTLS()
	if !st.KeyMatches || !st.ChainOK || st.Serial != "1a:2b" || st.Error != "" {
		t.Fatalf("status %+v", st)
	}
	served := a.cert.Load()

	_, _, _, otherKey := issue(t, 3, ca, caKey)
	write("tls.key", otherKey)
	st = a.loadTLS()
	if st.KeyMatches || !strings.Contains(st.Error, "private key does not match") || strings.Contains(st.Error, "PRIVATE KEY") {
		t.Errorf("a key of another certificate: %+v", st)
	}
	if a.cert.Load() != served {
		t.Error("a pair that does not load replaced the certificate served")
	}
}
