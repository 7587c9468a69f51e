package keys

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// deadline bounds every wait of these tests; nothing waits for a fixed time.
const deadline = 10 * time.Second

// watched is a store under watch with probes into the watcher.
type watched struct {
	*Store
	ch     <-chan Update
	cancel context.CancelFunc

	mu     sync.Mutex
	events []string // base names of folder events seen
	reads  []int    // key counts of the file reads (-1: missing or unparsable)
	signal chan struct{}
}

func (w *watched) poke() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// keysFile returns a file with n keys named key0..key(n-1).
func keysFile(n int, extra ...string) string {
	var b strings.Builder
	b.WriteString("# test keys\n")
	for i := range n {
		fmt.Fprintf(&b, "key%d=Client %d\n", i, i)
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	return b.String()
}

func startWatch(t *testing.T, content string, write bool) *watched {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.properties")
	if write {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w := &watched{signal: make(chan struct{}, 1)}
	opt := Options{
		Logger:   quietLogger(),
		Debounce: 20 * time.Millisecond,
		Hold:     150 * time.Millisecond,
		onEvent: func(name string) {
			w.mu.Lock()
			w.events = append(w.events, filepath.Base(name))
			w.mu.Unlock()
			w.poke()
		},
		onRead: func(data []byte, missing bool) {
			n := -1
			if d := parse("", data); !missing && len(d.errs) == 0 {
				n = len(d.entries)
			}
			w.mu.Lock()
			w.reads = append(w.reads, n)
			w.mu.Unlock()
			w.poke()
		},
	}
	s, err := OpenWith(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	w.Store = s
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.ch = s.Watch(ctx)
	t.Cleanup(func() {
		cancel()
		for range w.ch {
		}
	})
	// The watch starts with one read; wait for it so the tests start from a
	// watcher that is running.
	w.waitProbe(t, "the first read", func() bool { return len(w.reads) >= 1 })
	return w
}

// waitProbe waits until cond (called with w.mu held) holds.
func (w *watched) waitProbe(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(deadline)
	for {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-w.signal:
		case <-timeout:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("timed out waiting for %s (events %q, reads %v)", what, w.events, w.reads)
		}
	}
}

// next waits for the next update.
func (w *watched) next(t *testing.T) Update {
	t.Helper()
	select {
	case u, ok := <-w.ch:
		if !ok {
			t.Fatal("update channel closed")
		}
		return u
	case <-time.After(deadline):
		t.Fatal("timed out waiting for an update")
	}
	return Update{}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestWatchChange(t *testing.T) {
	w := startWatch(t, keysFile(3), true)
	writeFile(t, w.Path(), keysFile(4))
	u := w.next(t)
	if u.Err != nil || u.Notice != "" || u.Snapshot.Len() != 4 || w.Snapshot() != u.Snapshot {
		t.Fatalf("update %+v, want 4 keys in force", u)
	}
	if w.Snapshot().Lookup("key3") == nil {
		t.Fatal("new key not valid")
	}
}

func TestWatchVimRename(t *testing.T) {
	w := startWatch(t, keysFile(3), true)
	// vim: write a backup, write the new text to a temp file, rename it over.
	tmp := filepath.Join(filepath.Dir(w.Path()), ".keys.properties.swp")
	writeFile(t, tmp, keysFile(3, "new=New"))
	if err := os.Rename(w.Path(), w.Path()+"~"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, w.Path()); err != nil {
		t.Fatal(err)
	}
	u := w.next(t)
	if u.Err != nil || u.Snapshot.Lookup("new") == nil || u.Snapshot.Len() != 4 {
		t.Fatalf("update %+v, want the renamed-in file", u)
	}
	// And the watch goes on after the rename.
	writeFile(t, w.Path(), keysFile(3, "new=New", "newer=Newer"))
	if u := w.next(t); u.Snapshot.Lookup("newer") == nil {
		t.Fatalf("update %+v after the rename, want the next change", u)
	}
}

// The hold: a file that is empty (truncated) or gone when the watcher reads
// it, and full again before the hold ends, never revokes anyone.
func TestWatchTransientLoss(t *testing.T) {
	tests := []struct {
		name string
		lose func(path string) error
		left int // keys the watcher reads in the damaged file (-1: none, missing)
	}{
		{"truncate then write", func(p string) error { return os.Truncate(p, 0) }, 0},
		{"delete then recreate", os.Remove, -1},
		{"half written", func(p string) error { return os.WriteFile(p, []byte(keysFile(1)+"key1=Cli"), 0o600) }, 2},
		{"cut short", func(p string) error { return os.WriteFile(p, []byte(keysFile(6)), 0o600) }, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startWatch(t, keysFile(10), true)
			if err := tt.lose(w.Path()); err != nil {
				t.Fatal(err)
			}
			// The watcher has read the damaged file and is holding.
			w.waitProbe(t, "the read of the damaged file", func() bool { return w.reads[len(w.reads)-1] == tt.left })
			writeFile(t, w.Path(), keysFile(10))
			// A marker change: every update before it must keep all keys.
			w.waitProbe(t, "the read after the hold", func() bool { return w.reads[len(w.reads)-1] == 10 })
			writeFile(t, w.Path(), keysFile(11))
			for {
				u := w.next(t)
				if u.Err != nil || u.Snapshot.Len() < 10 {
					t.Fatalf("update %+v dropped keys of a transiently damaged file", u)
				}
				if u.Snapshot.Len() == 11 {
					break
				}
			}
		})
	}
}

func TestWatchMassRevocationAfterHold(t *testing.T) {
	tests := []struct {
		name    string
		content string // "" with remove: the file is deleted
		remove  bool
		keys    int
		notice  string
	}{
		{name: "most keys removed", content: keysFile(1), keys: 1, notice: "mass revocation: 9 of 10 keys removed, applied after a 150ms hold"},
		{name: "emptied", content: "# nobody\n", keys: 0, notice: "mass revocation: 10 of 10 keys removed"},
		{name: "deleted", remove: true, keys: 0, notice: "key file missing, treated as empty; mass revocation: 10 of 10"},
		{name: "cut short", content: keysFile(6), keys: 6, notice: "4 of 10 keys removed by a change that cut the file short, applied after a 150ms hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startWatch(t, keysFile(10), true)
			if tt.remove {
				if err := os.Remove(w.Path()); err != nil {
					t.Fatal(err)
				}
			} else if err := writeAtomic(w.Path(), []byte(tt.content)); err != nil {
				// By rename: a truncated moment would add a hold to the notice.
				t.Fatal(err)
			}
			u := w.next(t)
			if u.Err != nil || u.Snapshot.Len() != tt.keys || !strings.Contains(u.Notice, tt.notice) {
				t.Fatalf("update %+v (notice %q), want %d keys and notice %q", u, u.Notice, tt.keys, tt.notice)
			}
			if w.Snapshot().Lookup("key9") != nil {
				t.Fatal("revoked key still valid")
			}
		})
	}
}

func TestWatchFewRemovedAtOnce(t *testing.T) {
	w := startWatch(t, keysFile(10), true)
	// Written by rename, so no read can see a truncated file.
	if err := writeAtomic(w.Path(), []byte(strings.Replace(keysFile(10), "key4=Client 4\n", "", 1))); err != nil {
		t.Fatal(err)
	}
	u := w.next(t)
	if u.Err != nil || u.Notice != "" || u.Snapshot.Len() != 9 || u.Snapshot.Lookup("key4") != nil {
		t.Fatalf("update %+v, want key4 revoked without a notice", u)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, n := range w.reads[1:] {
		if n != 9 {
			t.Fatalf("read %d saw %d keys; want no hold, no re-read", i+1, n)
		}
	}
}

func TestHoldNeeded(t *testing.T) {
	// keysWithout is keysFile(n) without its first k keys: not a prefix.
	keysWithout := func(n, k int) string {
		lines := strings.SplitAfter(keysFile(n), "\n")
		return lines[0] + strings.Join(lines[1+k:], "")
	}
	tests := []struct {
		name     string
		old, new string
		removed  int
		why      string
	}{
		{"empty to empty", "", "", 0, ""},
		{"emptied", keysFile(1), "", 1, holdEmptied},
		{"emptied to a comment", keysFile(3), "# none\n", 3, holdEmptied},
		{"one removed", keysFile(10), keysWithout(10, 1), 1, ""},
		{"four of ten", keysFile(10), keysWithout(10, 4), 4, ""},
		{"half", keysFile(10), keysWithout(10, 5), 5, ""},
		{"six of ten", keysFile(10), keysWithout(10, 6), 6, holdMost},
		{"four of six", keysFile(6), keysWithout(6, 4), 4, holdMost},
		{"three of four: a few", keysFile(4), keysWithout(4, 3), 3, ""},
		{"last key deleted", keysFile(10), keysFile(9), 1, ""},
		{"last three deleted", keysFile(10), keysFile(7), 3, ""},
		{"cut short: four lost", keysFile(10), keysFile(6), 4, holdCut},
		{"cut mid-line", keysFile(10), keysFile(8) + "key8=Cli", 1, holdCut},
		{"cut to one of a hundred", keysFile(100), keysFile(1), 99, holdMost},
		{"keys added", keysFile(3), keysFile(5), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := parse("k", []byte(tt.old)).snapshot(time.Time{})
			d := parse("k", []byte(tt.new))
			if len(d.errs) > 0 {
				t.Fatal(d.errs)
			}
			removed, why := holdNeeded(old, []byte(tt.old), d.entries, []byte(tt.new))
			if removed != tt.removed || why != tt.why {
				t.Errorf("removed %d, hold %q; want %d, %q", removed, why, tt.removed, tt.why)
			}
		})
	}
}

func TestWatchBurst(t *testing.T) {
	w := startWatch(t, keysFile(5), true)
	for i := range 100 {
		writeFile(t, w.Path(), keysFile(5, fmt.Sprintf("burst%d=Burst %d", i, i)))
	}
	n := 0
	for {
		u := w.next(t)
		n++
		if u.Err != nil || u.Snapshot.Len() != 6 {
			t.Fatalf("update %+v during the burst", u)
		}
		if u.Snapshot.Lookup("burst99") != nil {
			break
		}
	}
	if n > 100 {
		t.Errorf("%d updates for 100 writes; want them debounced", n)
	}
}

func TestWatchIgnoresOtherFiles(t *testing.T) {
	w := startWatch(t, keysFile(2), true)
	dir := filepath.Dir(w.Path())
	for i := range 20 {
		writeFile(t, filepath.Join(dir, "other.properties"), fmt.Sprint(i))
		writeFile(t, filepath.Join(dir, "keys.properties.bak"), fmt.Sprint(i))
	}
	writeFile(t, filepath.Join(dir, "last"), "x")
	w.waitProbe(t, "the events of the other files", func() bool {
		return len(w.events) > 0 && w.events[len(w.events)-1] == "last"
	})
	w.mu.Lock()
	reads := len(w.reads)
	w.mu.Unlock()
	if reads != 1 {
		t.Fatalf("the watcher read the key file %d times for changes of other files", reads-1)
	}
	writeFile(t, w.Path(), keysFile(3))
	if u := w.next(t); u.Snapshot.Len() != 3 {
		t.Fatalf("update %+v", u)
	}
}

func TestWatchMissingAtStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.properties")
	s, err := OpenWith(path, Options{Logger: quietLogger(), Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil { // gone again before the watch starts
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &watched{Store: s, ch: s.Watch(ctx)}
	u := w.next(t)
	if u.Err != nil || u.Snapshot.Len() != 0 || u.Notice != "key file missing, treated as empty" {
		t.Fatalf("update %+v, want the missing-file notice", u)
	}
	writeFile(t, path, keysFile(2))
	if u := w.next(t); u.Err != nil || u.Snapshot.Len() != 2 || u.Notice != "" {
		t.Fatalf("update %+v, want the created file", u)
	}
}

func TestWatchParseErrorKeepsSnapshot(t *testing.T) {
	w := startWatch(t, keysFile(3), true)
	good := w.Snapshot()
	writeFile(t, w.Path(), keysFile(3, "broken")) // line 5: no client name
	u := w.next(t)
	if u.Err == nil || !strings.HasPrefix(u.Err.Error(), w.Path()+":5: ") || u.Snapshot != good || w.Snapshot() != good {
		t.Fatalf("update %+v, want the error at line 5 and the old snapshot", u)
	}
	writeFile(t, w.Path(), keysFile(3, "fixed=Fixed"))
	if u := w.next(t); u.Err != nil || u.Snapshot.Lookup("fixed") == nil {
		t.Fatalf("update %+v after the fix", u)
	}
}

func TestWatchOwnEditsNotReported(t *testing.T) {
	w := startWatch(t, keysFile(2), true)
	key, _, err := w.Add(Spec{Name: "Own"})
	if err != nil {
		t.Fatal(err)
	}
	// An outside change after the edit: it must be the first update.
	b, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, w.Path(), string(b)+"outside=Outside\n")
	u := w.next(t)
	if u.Snapshot.Lookup("outside") == nil || u.Snapshot.Lookup(key) == nil {
		t.Fatalf("first update %+v, want the outside change (own edits are not reported)", u)
	}
}

func TestWatchEndsWithContext(t *testing.T) {
	w := startWatch(t, keysFile(1), true)
	second := w.Watch(context.Background())
	if u, ok := <-second; !ok || u.Err == nil {
		t.Fatalf("second Watch gave %+v, want an error", u)
	}
	if _, ok := <-second; ok {
		t.Fatal("second Watch channel not closed")
	}
	w.cancel()
	timeout := time.After(deadline)
	for {
		select {
		case _, ok := <-w.ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("channel not closed after cancel")
		}
	}
}

func TestWatchSymlink(t *testing.T) {
	// Kubernetes-style: keys.properties -> ..data/keys.properties, and
	// ..data -> a versioned folder that is swapped by a rename.
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "..v1"), filepath.Join(dir, "..v2")
	for _, v := range []string{v1, v2} {
		if err := os.Mkdir(v, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(v1, "keys.properties"), keysFile(2))
	writeFile(t, filepath.Join(v2, "keys.properties"), keysFile(2, "v2=Version 2"))
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keys.properties")
	if err := os.Symlink(filepath.Join("..data", "keys.properties"), path); err != nil {
		t.Fatal(err)
	}
	s, err := OpenWith(path, Options{Logger: quietLogger(), Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &watched{Store: s, ch: s.Watch(ctx)}

	// An edit of the target file.
	writeFile(t, filepath.Join(v1, "keys.properties"), keysFile(3))
	if u := w.next(t); u.Err != nil || u.Snapshot.Len() != 3 {
		t.Fatalf("update %+v, want the edited target", u)
	}
	// The folder swap.
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("..v2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if u := w.next(t); u.Err != nil || u.Snapshot.Lookup("v2") == nil {
		t.Fatalf("update %+v, want the swapped-in version", u)
	}
	// Edits through the store write the target and keep the link.
	if _, _, err := s.Add(Spec{Name: "Added"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced by the save: %v %v", fi, err)
	}
	if !strings.Contains(readFile(t, filepath.Join(v2, "keys.properties")), "=Added") {
		t.Fatal("the save did not reach the link's target")
	}
}

func TestWatchFolderRemoved(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "conf")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keys.properties")
	writeFile(t, path, keysFile(2))
	w := &watched{signal: make(chan struct{}, 1)}
	s, err := OpenWith(path, Options{Logger: quietLogger(), Debounce: 20 * time.Millisecond, Hold: 50 * time.Millisecond,
		onEvent: func(name string) {
			w.mu.Lock()
			w.events = append(w.events, filepath.Base(name))
			w.mu.Unlock()
			w.poke()
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.Store, w.ch = s, s.Watch(ctx)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// Told that the watch falls back to reading, and the keys go (after the
	// hold), in either order.
	var polling, gone bool
	for !polling || !gone {
		u := w.next(t)
		polling = polling || strings.Contains(u.Notice, "reading the key file every")
		gone = gone || u.Snapshot.Len() == 0 && strings.Contains(u.Notice, "key file missing")
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, keysFile(3))
	for {
		if u := w.next(t); u.Snapshot.Len() == 3 {
			break
		}
	}
	// Back to watching: changes arrive as events again (the watch is set
	// up again at the poll after the folder reappears; changes until then
	// are read by the poll).
	for n := 4; ; n++ {
		w.mu.Lock()
		w.events = nil
		w.mu.Unlock()
		writeFile(t, path, keysFile(n))
		if u := w.next(t); u.Snapshot.Len() != n {
			t.Fatalf("update %+v, want %d keys", u, n)
		}
		w.mu.Lock()
		back := slices.Contains(w.events, "keys.properties")
		w.mu.Unlock()
		if back {
			return
		}
		if n > 10 {
			t.Fatal("the watch did not come back after the folder did")
		}
	}
}

// A file that is still being rewritten when every hold ends never revokes
// most keys: the reload gives up with an error and the old keys stay.
func TestHoldGivesUpOnAFileThatKeepsChanging(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.properties")
	writeFile(t, path, keysFile(10))
	n := 0
	s, err := OpenWith(path, Options{Logger: quietLogger(), Hold: 5 * time.Millisecond,
		onRead: func([]byte, bool) {
			// Someone writes again right after each read.
			n++
			writeFile(t, path, keysFile(1, fmt.Sprintf("v=Version %d", n)))
		}})
	if err != nil {
		t.Fatal(err)
	}
	old := s.Snapshot()
	writeFile(t, path, keysFile(1))
	u := s.Reload()
	if u.Err == nil || !strings.Contains(u.Err.Error(), "keeps changing") || u.Snapshot != old || s.Snapshot() != old {
		t.Fatalf("Reload = %+v, want the keeps-changing error and the old keys", u)
	}
	if n != maxHolds+1 {
		t.Errorf("%d reads, want %d (one per hold and the first)", n, maxHolds+1)
	}
}

// The key file replaced by a symlink to a file elsewhere while watched:
// later edits of the link's target still arrive.
func TestWatchFileBecomesSymlink(t *testing.T) {
	w := startWatch(t, keysFile(2), true)
	elsewhere := filepath.Join(t.TempDir(), "real.properties")
	writeFile(t, elsewhere, keysFile(3))
	tmp := w.Path() + ".link"
	if err := os.Symlink(elsewhere, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, w.Path()); err != nil {
		t.Fatal(err)
	}
	if u := w.next(t); u.Err != nil || u.Snapshot.Len() != 3 {
		t.Fatalf("update %+v, want the link's target", u)
	}
	writeFile(t, elsewhere, keysFile(4))
	if u := w.next(t); u.Err != nil || u.Snapshot.Len() != 4 {
		t.Fatalf("update %+v, want the edit of the target", u)
	}
}

// The key file replaced by a folder: one error (the old keys stay), not one
// per event, and the watch goes on.
func TestWatchReadError(t *testing.T) {
	w := startWatch(t, keysFile(2), true)
	good := w.Snapshot()
	if err := os.Remove(w.Path()); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(w.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	for {
		u := w.next(t)
		if u.Err == nil {
			// Only if this test was held up for a whole hold between the
			// remove and the mkdir: the missing file was applied first.
			good = u.Snapshot
			continue
		}
		if !strings.Contains(u.Err.Error(), "is a folder") || u.Snapshot != good || w.Snapshot() != good {
			t.Fatalf("update %+v, want the folder error and the old keys", u)
		}
		break
	}
	// More events on the folder: no repeated error.
	if err := os.Chmod(w.Path(), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(w.Path()); err != nil {
		t.Fatal(err)
	}
	writeFile(t, w.Path(), keysFile(3))
	for {
		u := w.next(t)
		if u.Err != nil {
			t.Fatalf("repeated error %v", u.Err)
		}
		if u.Snapshot.Len() == 3 {
			return
		}
	}
}

// A change that makes no event in the folder (here: a write through a hard
// link in another folder; in the field: a network file system) still
// arrives, by the watch's periodic reread.
func TestWatchRecheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.properties")
	writeFile(t, path, keysFile(2))
	other := filepath.Join(t.TempDir(), "link.properties")
	if err := os.Link(path, other); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	w := &watched{signal: make(chan struct{}, 1)}
	s, err := OpenWith(path, Options{Logger: quietLogger(), Debounce: 20 * time.Millisecond, Recheck: 50 * time.Millisecond,
		onEvent: func(name string) {
			w.mu.Lock()
			w.events = append(w.events, filepath.Base(name))
			w.mu.Unlock()
		},
		onRead: func([]byte, bool) {
			w.mu.Lock()
			w.reads = append(w.reads, 0)
			w.mu.Unlock()
			w.poke()
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.Store, w.ch = s, s.Watch(ctx)
	w.waitProbe(t, "the first read", func() bool { return len(w.reads) >= 1 })
	// Same inode, other folder: truncated and written in place.
	writeFile(t, other, keysFile(3))
	if u := w.next(t); u.Err != nil || u.Snapshot.Len() != 3 {
		t.Fatalf("update %+v, want the change made through the link", u)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.events) > 0 {
		t.Fatalf("the folder saw events %q: this test no longer tests the reread", w.events)
	}
}
