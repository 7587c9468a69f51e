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

// errRewatch ends a watch that must be set up again at once.
var errRewatch = errors.New("the key file became or stopped being a symlink")

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
// debounced, the file is also read every Options.Recheck (changes that make
// no event), and a change that drops most keys at once is re-read after a
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
	for {
		w, linked, err := s.newWatcher()
		if err == nil {
			err = s.follow(ctx, w, linked, send)
			w.Close()
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errRewatch) {
			continue
		}
		// The folder cannot be watched (gone, or no inotify left): read the
		// file every pollEvery until a watch can be set up again.
		n := fmt.Sprintf("cannot watch the key file's folder (%v): reading the key file every %v instead", err, pollEvery)
		s.log.Warn(n)
		if !send(Update{Snapshot: s.Snapshot(), Notice: n}) || !s.poll(ctx, send) {
			return
		}
		s.log.Info("watching the key file's folder again")
	}
}

// newWatcher watches the key file's folder. A key file that is a symlink (a
// config-management or Kubernetes volume: keys.properties ->
// ..data/keys.properties, ..data swapped atomically) changes without an event
// for its own name: then its target's folder is watched too and every event
// counts (linked). Reads are cheap; a reload of the same content sends nothing.
func (s *Store) newWatcher() (w *fsnotify.Watcher, linked bool, err error) {
	dir := filepath.Dir(s.path)
	dirs := []string{dir}
	if fi, err := os.Lstat(s.path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		linked = true
		if target, err := filepath.EvalSymlinks(s.path); err == nil && filepath.Dir(target) != dir {
			dirs = append(dirs, filepath.Dir(target))
		}
	}
	if w, err = fsnotify.NewWatcher(); err != nil {
		return nil, false, err
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, false, err
		}
	}
	return w, linked, nil
}

// follow turns the folder's events into reloads until ctx is done (nil) or
// the folder goes away (an error).
func (s *Store) follow(ctx context.Context, w *fsnotify.Watcher, linked bool, send func(Update) bool) error {
	dir, base := filepath.Split(s.path)
	dir = filepath.Clean(dir)
	// Start with a read: the file may have changed before the watch began.
	timer := time.NewTimer(0)
	defer timer.Stop()
	recheck := time.NewTicker(s.opt.Recheck)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-recheck.C:
			if u, changed := s.reload(ctx); changed && !send(u) {
				return nil
			}
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("the watch ended")
			}
			if s.opt.onEvent != nil {
				s.opt.onEvent(ev.Name)
			}
			if filepath.Clean(ev.Name) == dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				// Read once more (the file is gone with its folder) before
				// falling back to polling.
				if u, changed := s.reload(ctx); changed && !send(u) {
					return nil
				}
				return fmt.Errorf("the folder %s was removed or renamed", dir)
			}
			if !linked && filepath.Base(ev.Name) != base {
				continue // another file in the folder
			}
			if fi, err := os.Lstat(s.path); err == nil && (fi.Mode()&os.ModeSymlink != 0) != linked {
				return errRewatch // the file became a symlink, or stopped being one
			}
			timer.Reset(s.opt.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("the watch ended")
			}
			// An overflow loses events: read the file to be sure.
			s.log.Warn("key file watch error; reading the file again", "err", err)
			timer.Reset(s.opt.Debounce)
		case <-timer.C:
			if u, changed := s.reload(ctx); changed && !send(u) {
				return nil
			}
		}
	}
}

// poll reads the file every pollEvery until a watch of its folder can be set
// up again (true) or ctx is done (false).
func (s *Store) poll(ctx context.Context, send func(Update) bool) bool {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			if u, changed := s.reload(ctx); changed && !send(u) {
				return false
			}
			if fi, err := os.Stat(filepath.Dir(s.path)); err == nil && fi.IsDir() {
				if w, _, err := s.newWatcher(); err == nil {
					w.Close()
					return true
				}
			}
		}
	}
}
