package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// TLSFiles are the files of the TLS server, in the secrets directory: the
// agent writes them from one issuance (three templates over one pki/issue
// request), and the app loads them again at each reload.
type TLSFiles struct {
	Cert, Key, CA string // "" Cert: no TLS server
	Listen        string
}

// TLSStatus is what GET /status says of the certificate loaded: public
// facts only.
type TLSStatus struct {
	Serial   string    `json:"serial,omitempty"` // hex, as Vault writes it (aa:bb:…)
	NotAfter time.Time `json:"not_after,omitzero"`
	// KeyMatches: the key file holds the certificate's private key.
	KeyMatches bool `json:"key_matches"`
	// ChainOK: the certificate chains to the CA file.
	ChainOK bool   `json:"chain_ok"`
	Error   string `json:"error,omitempty"` // why it could not be loaded; never file content
}

// loadTLS loads the certificate and key, checks it against the CA file and
// serves it from now on. A pair that cannot be loaded leaves the
// certificate served as it was.
func (a *App) loadTLS() TLSStatus {
	var st TLSStatus
	path := func(n string) string { return filepath.Join(a.cfg.SecretsDir, n) }
	pair, err := tls.LoadX509KeyPair(path(a.cfg.TLS.Cert), path(a.cfg.TLS.Key))
	if err != nil {
		// tls says "private key does not match public key" or names the
		// file; neither quotes the content.
		st.Error = fmt.Sprintf("load %s and %s: %v", a.cfg.TLS.Cert, a.cfg.TLS.Key, err)
		return st
	}
	st.KeyMatches = true
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		st.Error = "parse the certificate: " + err.Error()
		return st
	}
	st.Serial, st.NotAfter = serialHex(leaf), leaf.NotAfter
	ca, err := os.ReadFile(path(a.cfg.TLS.CA))
	roots := x509.NewCertPool()
	if err != nil || !roots.AppendCertsFromPEM(ca) {
		st.Error = fmt.Sprintf("%s holds no CA certificate", a.cfg.TLS.CA)
	} else if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		st.Error = "the certificate does not chain to " + a.cfg.TLS.CA + ": " + err.Error()
	} else {
		st.ChainOK = true
	}
	a.cert.Store(&pair)
	a.log.Info("TLS certificate loaded", "serial", st.Serial, "not_after", st.NotAfter, "chain_ok", st.ChainOK)
	return st
}

// serialHex is a certificate's serial as Vault writes it: colon-separated
// hex bytes.
func serialHex(c *x509.Certificate) string {
	b := c.SerialNumber.Bytes()
	out := make([]byte, 0, len(b)*3)
	for i, x := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, fmt.Sprintf("%02x", x)...)
	}
	return string(out)
}
