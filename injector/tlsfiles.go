package injector

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// certHolder is the serving certificate in use; the TLS server asks it on
// every handshake, so that a new certificate applies to new connections at
// once.
type certHolder struct {
	cert    atomic.Pointer[tls.Certificate]
	metrics *Metrics
}

// errNoCertificate fails handshakes until a certificate is loaded.
var errNoCertificate = errors.New("no serving certificate loaded yet")

func (h *certHolder) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := h.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errNoCertificate
}

func (h *certHolder) loaded() bool { return h.cert.Load() != nil }

// set puts c in use and says whether it differs from the one before.
func (h *certHolder) set(c *tls.Certificate) bool {
	old := h.cert.Swap(c)
	h.metrics.certificate(c.Leaf.NotAfter)
	return old == nil || !slices.EqualFunc(old.Certificate, c.Certificate, bytes.Equal)
}

// keyPair parses a PEM certificate chain and key, with the leaf parsed.
func keyPair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// certFiles serves the key pair of --tls-cert-file and --tls-key-file and
// reloads it when either changes. The directories are watched rather than
// the files: the kubelet updates a mounted Secret by swapping a symlink
// (..data), which replaces the files without writing them. A pair that does
// not load (a key written before its certificate, say) leaves the old one in
// use until the next change; a re-read every minute catches a missed event.
type certFiles struct {
	certFile, keyFile string
	holder            *certHolder
	log               *slog.Logger
}

const certFilesRecheck = time.Minute

// load reads the pair into the holder.
func (f *certFiles) load() error {
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("load --tls-cert-file %s and --tls-key-file %s: %w", f.certFile, f.keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("parse --tls-cert-file %s: %w", f.certFile, err)
		}
	}
	if f.holder.set(&c) {
		f.log.Info("serving certificate loaded", "file", f.certFile, "notAfter", c.Leaf.NotAfter, "serial", c.Leaf.SerialNumber.String())
	}
	return nil
}

// watch starts watching the files' directories and returns the loop that
// reloads the pair on every change in them that concerns it, until ctx ends.
// Call load first.
func (f *certFiles) watch() (func(context.Context) error, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch the TLS files: %w", err)
	}
	dirs := []string{filepath.Dir(f.certFile)}
	if d := filepath.Dir(f.keyFile); d != dirs[0] {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
	}
	return func(ctx context.Context) error {
		defer w.Close()
		return f.follow(ctx, w)
	}, nil
}

// concerns says whether a change to the file name, in a watched directory,
// may change the pair: one of the two files, or a kubelet's ..data symlink
// and the timestamped directories it points to. The other files there (a
// log written beside the certificate, say) would otherwise reload and parse
// the pair on every write of theirs.
func (f *certFiles) concerns(name string) bool {
	name = filepath.Clean(name)
	return name == filepath.Clean(f.certFile) || name == filepath.Clean(f.keyFile) || strings.HasPrefix(filepath.Base(name), "..")
}

func (f *certFiles) follow(ctx context.Context, w *fsnotify.Watcher) error {
	recheck := time.NewTicker(certFilesRecheck)
	defer recheck.Stop()
	reload := func(why string) {
		if err := f.load(); err != nil {
			f.log.Warn("serving certificate not reloaded; the previous one stays in use", "trigger", why, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("TLS file watcher closed")
			}
			if f.concerns(ev.Name) {
				reload(ev.Op.String() + " " + filepath.Base(ev.Name))
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("TLS file watcher closed")
			}
			f.log.Warn("watch the TLS files", "err", err)
		case <-recheck.C:
			reload("periodic check")
		}
	}
}
