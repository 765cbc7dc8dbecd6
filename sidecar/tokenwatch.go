package sidecar

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// rotation tells waiting retries that the service-account token file
// changed: wait returns a channel that is closed at the next change.
type rotation struct {
	mu sync.Mutex
	ch chan struct{}
}

func newRotation() *rotation { return &rotation{ch: make(chan struct{})} }

func (r *rotation) wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ch
}

func (r *rotation) signal() {
	r.mu.Lock()
	close(r.ch)
	r.ch = make(chan struct{})
	r.mu.Unlock()
}

// watchTokenFile signals r whenever the token file at path is written or
// replaced, until ctx ends. It watches the directory, not the file: the
// kubelet rotates a projected token by pointing the ..data symlink at a new
// directory (and tools replace files by rename), which a watch on the old
// file would never see. Without a watch (no inotify, no directory) the
// agent still reads the file afresh at every login; it only waits out its
// backoff first.
func watchTokenFile(ctx context.Context, path string, r *rotation, log *slog.Logger) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Info("not watching the service-account token file; a new token is used at the next login", "err", err)
		return
	}
	dir, name := filepath.Dir(path), filepath.Base(path)
	if err := w.Add(dir); err != nil {
		w.Close()
		log.Info("not watching the service-account token file; a new token is used at the next login", "dir", dir, "err", err)
		return
	}
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if base := filepath.Base(ev.Name); (base == name || base == "..data") && ev.Has(fsnotify.Create|fsnotify.Write) {
					r.signal()
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("watching the service-account token file", "err", err)
			}
		}
	}()
}
