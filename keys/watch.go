package keys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// pollEvery is how often the watch reads the file when the folder cannot be
// watched (no inotify left, folder removed).
const pollEvery = time.Second

// Watch follows the key file until ctx is done: each change that parses
// replaces the store's snapshot, and every applied change or failure is
// sent as one Update. The channel is closed when ctx ends. Read it promptly:
// the watch waits for the reader. One watcher per store; a second Watch
// gets a closed channel after one Update with an error.
//
// The folder is watched, not the file (editors save by rename), events are
// debounced, and a change that drops most keys at once is re-read after a
// hold before it is applied (see Reload). Edits made through this store are
// not reported again: the watcher sees the content it already has.
func (s *Store) Watch(ctx context.Context) <-chan Update {
	ch := make(chan Update, 16)
	if !s.watching.CompareAndSwap(false, true) {
		ch <- Update{Snapshot: s.Snapshot(), Err: errors.New("the key store is already being watched (one watcher per store)")}
		close(ch)
		return ch
	}
	go func() {
		defer close(ch)
		defer s.watching.Store(false)
		s.watch(ctx, ch)
	}()
	return ch
}

func (s *Store) watch(ctx context.Context, ch chan<- Update) {
	send := func(u Update) bool {
		select {
		case ch <- u:
			return true
		case <-ctx.Done():
			return false
		}
	}
	dir, base := filepath.Split(s.path)
	dir = filepath.Clean(dir)
	// A key file that is a symlink (a config-management or Kubernetes
	// volume: keys.properties -> ..data/keys.properties, ..data swapped
	// atomically) changes without an event for its own name: then every
	// event in its folder and in its target's folder counts. Reads are
	// cheap and a reload with the same content sends nothing.
	dirs := []string{dir}
	linked := false
	if fi, err := os.Lstat(s.path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		linked = true
		if target, err := filepath.EvalSymlinks(s.path); err == nil && filepath.Dir(target) != dir {
			dirs = append(dirs, filepath.Dir(target))
		}
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		for _, d := range dirs {
			if err = w.Add(d); err != nil {
				w.Close()
				break
			}
		}
	}
	if err != nil {
		n := fmt.Sprintf("cannot watch the folder %s (%v): reading the key file every %v instead", dir, err, pollEvery)
		s.log.Warn(n)
		if !send(Update{Snapshot: s.Snapshot(), Notice: n}) {
			return
		}
		s.poll(ctx, send)
		return
	}
	defer w.Close()
	s.log.Debug("watching the key file", "folder", dir)

	// Start with a read: the file may have changed between Open and now.
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if s.opt.onEvent != nil {
				s.opt.onEvent(ev.Name)
			}
			if filepath.Clean(ev.Name) == dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				n := fmt.Sprintf("the folder %s was removed or renamed: reading the key file every %v instead", dir, pollEvery)
				s.log.Warn(n)
				if !send(Update{Snapshot: s.Snapshot(), Notice: n}) {
					return
				}
				s.poll(ctx, send)
				return
			}
			if !linked && filepath.Base(ev.Name) != base {
				continue // another file in the folder
			}
			timer.Reset(s.opt.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflow loses events: read the file to be sure.
			s.log.Warn("key file watch error; reading the file again", "err", err)
			timer.Reset(s.opt.Debounce)
		case <-timer.C:
			if u, changed := s.reload(ctx); changed && !send(u) {
				return
			}
		}
	}
}

// poll reads the file every pollEvery until ctx is done.
func (s *Store) poll(ctx context.Context, send func(Update) bool) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if u, changed := s.reload(ctx); changed && !send(u) {
				return
			}
		}
	}
}
