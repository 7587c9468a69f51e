package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrConflict is returned by an edit when the key file changed on disk since
// this store last read it. Call Reload, then retry the edit on what is there now.
var ErrConflict = errors.New("the key file changed on disk since it was last read; reload and retry")

// Defaults of Options.
const (
	DefaultDebounce = 150 * time.Millisecond
	DefaultHold     = 500 * time.Millisecond
	DefaultRecheck  = 10 * time.Second
)

// Options tune a Store. The zero value gives the defaults.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// Debounce is how long the folder must be quiet after an event before
	// the watch reads the file (default DefaultDebounce).
	Debounce time.Duration
	// Hold is how long a change that looks half-written (see Reload) waits
	// before the file is read again (default DefaultHold).
	Hold time.Duration
	// Recheck is how often the watch reads the file even without an event:
	// changes that make none (a network file system, a write through a
	// hard link elsewhere) still arrive. A reread of the same content costs
	// a read and a hash, nothing more.
	Recheck time.Duration
	Now     func() time.Time

	// onEvent, when set, sees every file system event of the folder before
	// the name filter (tests use it to know the watcher saw something).
	onEvent func(name string)
	// onRead, when set, sees every read of the file by a reload.
	onRead func(data []byte, missing bool)
}

// Update is what a reload brings.
type Update struct {
	Snapshot *Snapshot // the snapshot now in force (the old one if Err != nil)
	Err      error     // a parse/read error: "FILE:LINE: message"; the last good snapshot stays
	Notice   string    // operator-facing notice (file missing, mass revocation after the hold)
}

// Store is the key file and the snapshot of it in force. Lookups go to the
// snapshot (Snapshot) and never wait; reloads and edits are serialised.
type Store struct {
	path string
	opt  Options
	log  *slog.Logger
	snap atomic.Pointer[Snapshot]

	mu   sync.Mutex // serialises reads of the file, edits and saves
	seen fileState  // the file content the store's state reflects
	// applied is the content the snapshot in force was read from.
	applied []byte
	// readErr is the last read error reported, so a lasting one is told once.
	readErr string
	// seenErr is the parse error of the content seen (nil when that content
	// is the one in force): a Reload of a file still broken reports it again.
	seenErr error

	watching atomic.Bool
}

// fileState identifies one content of the file (or its absence). The hash
// only tells contents apart within this process (its seed is random): a
// cheap hash, because a 100k-key file is hashed on every reload.
type fileState struct {
	missing bool
	size    int
	sum     uint64
}

var stateSeed = maphash.MakeSeed()

func stateOf(data []byte, missing bool) fileState {
	return fileState{missing: missing, size: len(data), sum: maphash.Bytes(stateSeed, data)}
}

// Open reads the key file, creating it empty (mode 0600) if it is missing.
// A file that fails to parse gives a *ParseError ("FILE:LINE: message").
func Open(path string) (*Store, error) { return OpenWith(path, Options{}) }

// OpenWith is Open with options.
func OpenWith(path string, opt Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("no key file given (use --keys FILE or KEYFOCUS_KEYS)")
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Debounce <= 0 {
		opt.Debounce = DefaultDebounce
	}
	if opt.Hold <= 0 {
		opt.Hold = DefaultHold
	}
	if opt.Recheck <= 0 {
		opt.Recheck = DefaultRecheck
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Store{path: filepath.Clean(path), opt: opt, log: opt.Logger.With("keys", filepath.Clean(path))}
	data, missing, err := s.read()
	if err != nil {
		return nil, err
	}
	if missing {
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("the key file %s is missing and cannot be created: %w (create its folder, or pass --keys FILE)", s.path, err)
		}
		if err == nil {
			if err := f.Close(); err != nil {
				return nil, fmt.Errorf("create key file %s: %w", s.path, err)
			}
			s.log.Warn("the key file " + s.path + " was missing: created it empty (mode 0600); no key is valid until you add one")
		}
		if data, missing, err = s.read(); err != nil {
			return nil, err
		}
	}
	d := parse(s.path, data)
	if err := d.err(); err != nil {
		return nil, err
	}
	s.logWarnings(d)
	s.warnReadable(d)
	s.seen, s.applied = stateOf(data, missing), data
	s.snap.Store(d.snapshot(opt.Now()))
	return s, nil
}

// Path is the key file.
func (s *Store) Path() string { return s.path }

// Snapshot is the snapshot in force: the last good read of the file.
func (s *Store) Snapshot() *Snapshot { return s.snap.Load() }

// read reads the file; a missing file is not an error.
func (s *Store) read() (data []byte, missing bool, err error) {
	data, missing, _, err = s.readStamped()
	return data, missing, err
}

// stamp is what the file system says of a file's last change.
type stamp struct {
	mod  time.Time
	size int64
}

// readStamped is read, with the stamp of the file read.
func (s *Store) readStamped() (data []byte, missing bool, st stamp, err error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, stamp{}, nil
	}
	if err != nil {
		return nil, false, stamp{}, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, stamp{}, fmt.Errorf("read key file: %w", err)
	}
	if fi.IsDir() {
		return nil, false, stamp{}, fmt.Errorf("read key file: %s is a folder; --keys names the file itself", s.path)
	}
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+512))
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, false, stamp{}, fmt.Errorf("read key file: %w", err)
	}
	return buf.Bytes(), false, stamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// warnReadable warns when plaintext keys sit in a file others may read.
func (s *Store) warnReadable(d *document) {
	fi, err := os.Stat(s.path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return
	}
	plain := 0
	for _, e := range d.entries {
		if !e.Hashed {
			plain++
		}
	}
	if plain > 0 {
		s.log.Warn(fmt.Sprintf("%s holds %d plaintext key(s) and is readable by others (mode %v): run chmod 600 %s, or keyfocus keys hash to store them hashed", s.path, plain, fi.Mode().Perm(), s.path))
	}
}

func (s *Store) logWarnings(d *document) {
	for _, w := range d.warnings {
		s.log.Warn(w)
	}
}

// Reload re-reads the file now (e.g. on SIGHUP), with the same rules as the
// watch. A change that looks half-written — the file empty or gone, most
// keys removed, or the old file cut short — is read again after a hold and
// applied only once it stays the same through one (the Notice says so); a
// file still changing after 10 holds is not applied (an error). Reload can
// therefore take up to 10 holds. A file still broken or unreadable gives
// its error on every Reload (the log tells it once).
func (s *Store) Reload() Update {
	u, _ := s.reload(context.Background())
	return u
}

// maxHolds bounds the holds of one reload: a file that still changes after
// that many is not applied when it would remove most keys.
const maxHolds = 10

// Why a change is held (see holdNeeded).
const (
	holdEmptied = "emptied"
	holdMost    = "most"
	holdCut     = "cut"
)

// holdNeeded says whether going from the snapshot old (read from oldData)
// to entries (read from newData) looks like a file caught half-written, to
// be read again after a hold before it revokes anyone: it empties the file
// (holdEmptied); it removes most keys, more than half and more than three
// (holdMost); or it is the old file cut short, a prefix of it, and loses
// more than three keys or ends in the middle of a line (holdCut). Removing
// a few keys is applied at once.
func holdNeeded(old *Snapshot, oldData []byte, entries []*Entry, newData []byte) (removed int, why string) {
	if old.Len() == 0 {
		return 0, ""
	}
	ids := make(map[string]struct{}, len(entries))
	for _, e := range entries {
		ids[e.ID] = struct{}{}
	}
	for _, e := range old.Entries() {
		if _, ok := ids[e.ID]; !ok {
			removed++
		}
	}
	switch {
	case len(entries) == 0:
		return removed, holdEmptied
	case removed > 3 && removed*2 > old.Len():
		return removed, holdMost
	case removed > 0 && len(newData) < len(oldData) && bytes.HasPrefix(oldData, newData):
		if last := newData[len(newData)-1]; removed > 3 || last != '\n' && last != '\r' {
			return removed, holdCut
		}
	}
	return removed, ""
}

// reload reads the file and applies it. changed is false when there is
// nothing to tell (the content is what the store already reflects).
func (s *Store) reload(ctx context.Context) (u Update, changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	u.Snapshot = old
	held := time.Duration(0)
	var heldState fileState
	var heldStamp stamp
	for holds := 0; ; {
		data, missing, stm, err := s.readStamped()
		if err != nil {
			if err.Error() == s.readErr {
				u.Err = err // told once in the log and the watch, but every Reload says it
				return u, false
			}
			s.readErr = err.Error()
			s.log.Error("key file reload failed; the last good keys stay in force", "err", err)
			u.Err = err
			return u, true
		}
		s.readErr = ""
		if s.opt.onRead != nil {
			s.opt.onRead(data, missing)
		}
		st := stateOf(data, missing)
		if st == s.seen {
			if held > 0 {
				s.log.Info("key file changed back during the hold; nothing revoked", "hold", held)
			}
			u.Err = s.seenErr
			return u, false
		}
		d := parse(s.path, data)
		if err := d.err(); err != nil {
			s.seen, s.seenErr = st, err
			s.log.Error("key file has errors; the last good keys stay in force", "err", err)
			u.Err = err
			return u, true
		}
		removed, why := holdNeeded(old, s.applied, d.entries, data)
		hold := why != ""
		// Half-written, or truncated on the way to a rewrite? Only a content
		// that stays through a whole hold, unchanged and untouched, revokes
		// most keys at once.
		if hold && (holds == 0 || heldState != st || heldStamp != stm) {
			if holds == maxHolds {
				u.Err = fmt.Errorf("%s keeps changing, and its current content would remove %d of %d keys: not applied, the last good keys stay in force (save it once more when it is complete)", s.path, removed, old.Len())
				s.log.Error("key file not applied", "err", u.Err)
				return u, true
			}
			s.log.Warn("key file lost many keys at once; reading it again after a hold", "why", why, "removed", removed, "of", old.Len(), "hold", s.opt.Hold)
			t := time.NewTimer(s.opt.Hold)
			select {
			case <-ctx.Done():
				t.Stop()
				return u, false
			case <-t.C:
			}
			holds++
			held += s.opt.Hold
			heldState, heldStamp = st, stm
			continue
		}
		s.logWarnings(d)
		snap := d.snapshot(s.opt.Now())
		s.seen, s.seenErr, s.applied = st, nil, data
		s.snap.Store(snap)
		u.Snapshot = snap
		switch {
		case why == holdCut:
			u.Notice = fmt.Sprintf("%d of %d keys removed by a change that cut the file short, applied after a %v hold", removed, old.Len(), held)
			s.log.Warn(u.Notice)
		case hold:
			u.Notice = fmt.Sprintf("mass revocation: %d of %d keys removed, applied after a %v hold", removed, old.Len(), held)
			if missing {
				u.Notice = "key file missing, treated as empty; " + u.Notice
			}
			s.log.Warn(u.Notice)
		case missing:
			u.Notice = "key file missing, treated as empty"
			s.log.Warn(u.Notice)
		}
		s.log.Info("key file reloaded", "keys", snap.Len(), "removed", removed)
		return u, true
	}
}

// Generate returns a new key: "kf_" and 20 random bytes in lowercase
// base32 without padding.
func Generate() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return "kf_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])), nil
}
