package servingcert

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Files serves the key pair of --tls-cert-file and --tls-key-file and
// reloads it when either changes. The directories are watched rather than
// the files: the kubelet updates a mounted Secret by swapping a symlink
// (..data), which replaces the files without writing them. A pair that does
// not load (a key written before its certificate, say) leaves the old one in
// use until the next change; a re-read every minute catches a missed event.
type Files struct {
	holder
	certFile, keyFile string
	log               *slog.Logger
	watcher           *fsnotify.Watcher
}

const certFilesRecheck = time.Minute

// NewFiles loads the pair of certFile and keyFile, and starts watching
// their directories; Start follows them. loaded, if not nil, is told the
// expiry of each certificate put in use.
func NewFiles(certFile, keyFile string, log *slog.Logger, loaded func(notAfter time.Time)) (*Files, error) {
	f := &Files{holder: holder{loaded: loaded}, certFile: certFile, keyFile: keyFile, log: log}
	if err := f.load(); err != nil {
		return nil, err
	}
	if err := f.watch(); err != nil {
		return nil, err
	}
	return f, nil
}

// load reads the pair into the holder. The leaf comes parsed (Go ≥ 1.23).
func (f *Files) load() error {
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("load --tls-cert-file %s and --tls-key-file %s: %w", f.certFile, f.keyFile, err)
	}
	if f.set(&c) {
		f.log.Info("serving certificate loaded", "file", f.certFile, "notAfter", c.Leaf.NotAfter, "serial", c.Leaf.SerialNumber.String())
	}
	return nil
}

// watch starts watching the files' directories.
func (f *Files) watch() error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch the TLS files: %w", err)
	}
	dirs := []string{filepath.Dir(f.certFile)}
	if d := filepath.Dir(f.keyFile); d != dirs[0] {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return fmt.Errorf("watch %s: %w", d, err)
		}
	}
	f.watcher = w
	return nil
}

// Start reloads the pair on every change in the watched directories that
// concerns it, and every minute, until ctx ends.
func (f *Files) Start(ctx context.Context) error {
	defer f.watcher.Close()
	return f.follow(ctx, f.watcher)
}

// concerns says whether a change to the file name, in a watched directory,
// may change the pair: one of the two files, or a kubelet's ..data symlink
// and the timestamped directories it points to. The other files there (a
// log written beside the certificate, say) would otherwise reload and parse
// the pair on every write of theirs.
func (f *Files) concerns(name string) bool {
	name = filepath.Clean(name)
	return name == filepath.Clean(f.certFile) || name == filepath.Clean(f.keyFile) || strings.HasPrefix(filepath.Base(name), "..")
}

func (f *Files) follow(ctx context.Context, w *fsnotify.Watcher) error {
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
