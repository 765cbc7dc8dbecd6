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

// tokenWatch watches the service-account token file.
type tokenWatch struct {
	w    *fsnotify.Watcher
	name string
	log  *slog.Logger
}

// watchTokenFile starts watching the token file at path. It watches the
// directory, not the file: the kubelet rotates a projected token by pointing
// the ..data symlink at a new directory (and tools replace files by rename),
// which a watch on the old file would never see. Without a watch (no
// inotify, no directory) it returns nil: the agent still reads the file
// afresh at every login; it only waits out its backoff first.
func watchTokenFile(path string, log *slog.Logger) *tokenWatch {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Info("not watching the service-account token file; a new token is used at the next login", "err", err)
		return nil
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		w.Close()
		log.Info("not watching the service-account token file; a new token is used at the next login", "dir", dir, "err", err)
		return nil
	}
	return &tokenWatch{w: w, name: filepath.Base(path), log: log}
}

// run signals r whenever the token file is written or replaced, until ctx
// ends; then it stops the watch.
func (tw *tokenWatch) run(ctx context.Context, r *rotation) {
	defer tw.w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-tw.w.Events:
			if !ok {
				return
			}
			if base := filepath.Base(ev.Name); (base == tw.name || base == "..data") && ev.Has(fsnotify.Create|fsnotify.Write) {
				r.signal()
			}
		case err, ok := <-tw.w.Errors:
			if !ok {
				return
			}
			tw.log.Warn("watching the service-account token file", "err", err)
		}
	}
}
