// Package servingcert is the webhook's serving certificate: one Source,
// read on every TLS handshake, with two implementations: Files, a key pair
// on disk reloaded when it changes (a mounted Secret, cert-manager's say),
// and SelfSigned, a CA and certificate the injector keeps itself in a
// Secret, with the caBundle of its webhook configuration.
package servingcert

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"sync/atomic"
	"time"
)

// Source is a serving certificate kept current.
type Source interface {
	// GetCertificate answers a TLS handshake (tls.Config.GetCertificate)
	// with the certificate in use, so that a new one applies to new
	// connections at once; ErrNoCertificate before one is loaded.
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Start keeps the certificate current until ctx ends, and returns
	// then.
	Start(ctx context.Context) error
	// Ready says whether a certificate is loaded.
	Ready() bool
}

var (
	_ Source = (*Files)(nil)
	_ Source = (*SelfSigned)(nil)
)

// ErrNoCertificate fails handshakes until a certificate is loaded.
var ErrNoCertificate = errors.New("no serving certificate loaded yet")

// holder is the serving certificate in use, shared by the Sources.
type holder struct {
	cert atomic.Pointer[tls.Certificate]
	// loaded, if set, is told the expiry of each certificate put in use
	// (the webhook's metric).
	loaded func(notAfter time.Time)
}

// GetCertificate returns the certificate in use.
func (h *holder) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := h.cert.Load(); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

// Ready says whether a certificate is in use.
func (h *holder) Ready() bool { return h.cert.Load() != nil }

// set puts c in use and says whether it differs from the one before.
func (h *holder) set(c *tls.Certificate) bool {
	old := h.cert.Swap(c)
	if h.loaded != nil {
		h.loaded(c.Leaf.NotAfter)
	}
	return old == nil || !slices.EqualFunc(old.Certificate, c.Certificate, bytes.Equal)
}

// keyPair parses a PEM certificate chain and key. The leaf comes parsed
// (crypto/tls does so since Go 1.23, and this module is newer).
func keyPair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &c, nil
}
