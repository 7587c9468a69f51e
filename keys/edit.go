package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// modify is the read-modify-write of every edit: it reads the file, refuses
// when it is not what the store last read (ErrConflict) or does not parse,
// lets change compute the new content, checks that the new content parses,
// saves it atomically and swaps the snapshot.
func (s *Store) modify(change func(d *document) ([]byte, error), verify func(nd *document) bool) (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.path
	if t, err := filepath.EvalSymlinks(s.path); err == nil {
		target = t
	}
	defer lockDir(filepath.Dir(target))()
	data, missing, err := s.read()
	if err != nil {
		return nil, err
	}
	if stateOf(data, missing) != s.seen {
		return nil, ErrConflict
	}
	d := parse(s.path, data)
	if err := d.err(); err != nil {
		return nil, fmt.Errorf("the key file has errors, fix them first: %w", err)
	}
	out, err := change(d)
	if err != nil {
		return nil, err
	}
	if !missing && bytes.Equal(out, data) {
		return s.snap.Load(), nil // nothing to change
	}
	nd := parse(s.path, out)
	if err := nd.err(); err != nil {
		// A bug in keyfocus, never the operator's: refuse rather than save.
		return nil, fmt.Errorf("internal error: the edited key file would not parse (%w); nothing saved", err)
	}
	if !verify(nd) {
		return nil, errors.New("internal error: the edited key file would not read back as intended; nothing saved")
	}
	if err := writeAtomic(s.path, out); err != nil {
		return nil, err
	}
	snap := nd.snapshot(s.opt.Now())
	s.seen, s.seenErr, s.applied = stateOf(out, false), nil, out
	s.snap.Store(snap)
	return snap, nil
}

// splice replaces data[start:end] with repl.
func splice(data []byte, start, end int, repl string) []byte {
	out := make([]byte, 0, len(data)-(end-start)+len(repl))
	out = append(out, data[:start]...)
	out = append(out, repl...)
	return append(out, data[end:]...)
}

// Add generates a key for spec, stores it hashed ("sha256:<hex>=...") at the
// end of the file and returns the key: the only time it is ever seen.
func (s *Store) Add(spec Spec) (key string, e *Entry, err error) {
	key, err = Generate()
	if err != nil {
		return "", nil, err
	}
	e, err = s.add(key, spec)
	if err != nil {
		return "", nil, err
	}
	return key, e, nil
}

func (s *Store) add(key string, spec Spec) (*Entry, error) {
	spec = spec.normalized()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	id := HashKey(key)
	snap, err := s.modify(func(d *document) ([]byte, error) { return addDoc(d, id, spec), nil },
		func(nd *document) bool {
			e := nd.snap.byID[id]
			return e != nil && e.Name == spec.Name && e.Line == nd.entries[len(nd.entries)-1].Line
		})
	if err != nil {
		return nil, err
	}
	s.log.Info("key added", "fingerprint", id[:8], "client", spec.Name)
	return snap.ByID(id), nil
}

// Edit sets the attributes of the entry with ID id to spec: name, rooms,
// expiry and limit become exactly those of spec (start from SpecOf(entry) to
// change one thing). Unknown attributes, the key and every other line stay.
func (s *Store) Edit(id string, spec Spec) (*Entry, error) {
	spec = spec.normalized()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	snap, err := s.modify(func(d *document) ([]byte, error) {
		out, ok := editDoc(d, id, spec)
		if !ok {
			return nil, s.notFound(id)
		}
		return out, nil
	}, func(nd *document) bool {
		e := nd.snap.byID[id]
		return e != nil && e.Name == spec.Name && e.MaxParticipants == spec.MaxParticipants &&
			e.Expires.Equal(spec.Expires) && slices.Equal(e.Rooms, spec.Rooms)
	})
	if err != nil {
		return nil, err
	}
	e := snap.ByID(id)
	s.log.Info("key edited", "fingerprint", e.Fingerprint, "client", e.Name)
	return e, nil
}

// Revoke removes the entry with ID id: every line of that key (duplicates
// included), so the key stops working. It returns the entry as it was.
func (s *Store) Revoke(id string) (*Entry, error) {
	var gone *Entry
	_, err := s.modify(func(d *document) ([]byte, error) {
		var out []byte
		out, gone = revokeDoc(d, id)
		if gone == nil {
			return nil, s.notFound(id)
		}
		return out, nil
	}, func(nd *document) bool { return nd.snap.byID[id] == nil })
	if err != nil {
		return nil, err
	}
	s.log.Info("key revoked", "fingerprint", gone.Fingerprint, "client", gone.Name)
	return gone, nil
}

// addDoc returns d's content with a hashed entry for id appended.
func addDoc(d *document, id string, spec Spec) []byte {
	out := d.data[:len(d.data):len(d.data)]
	if len(out) > 0 && out[len(out)-1] != '\n' && out[len(out)-1] != '\r' {
		out = append(out, d.newline...)
	}
	if danglingContinuation(d) {
		// The last line ends in a backslash: the new line would continue
		// it. An empty line ends the continuation without changing it.
		empty := d.newline
		if out[len(out)-1] == '\r' && empty[0] == '\n' {
			empty = "\r\n" // a lone "\n" would join the CR before it
		}
		out = append(out, empty...)
	}
	return append(out, hashedPrefix+id+"="+escapeValue(spec.value())+d.newline...)
}

// danglingContinuation reports whether the file's last entry ends with a
// line continuation that has no next line.
func danglingContinuation(d *document) bool {
	if len(d.recs) == 0 {
		return false
	}
	r := d.recs[len(d.recs)-1]
	if r.kind != recEntry || r.end != len(d.data) {
		return false
	}
	bs := 0
	for i := r.contentEnd - 1; i >= r.start && d.data[i] == '\\'; i-- {
		bs++
	}
	return bs%2 == 1
}

// editDoc returns d's content with the first entry of id set to spec; only
// that entry's value text changes.
func editDoc(d *document, id string, spec Spec) ([]byte, bool) {
	for i := range d.recs {
		rec := &d.recs[i]
		if rec.entry == nil || rec.entry.ID != id {
			continue
		}
		if spec.equal(SpecOf(rec.entry)) {
			return d.data, true // nothing changes: not even the spacing
		}
		v := editValue(rec, spec)
		return splice(d.data, rec.valueRaw, rec.contentEnd, escapeValue(v)), true
	}
	return nil, false
}

// revokeDoc returns d's content without the records of id, and the entry
// removed (nil if there was none).
func revokeDoc(d *document, id string) ([]byte, *Entry) {
	out := d.data
	var gone *Entry
	for i := len(d.recs) - 1; i >= 0; i-- {
		rec := &d.recs[i]
		if rec.entry == nil || rec.entry.ID != id {
			continue
		}
		gone = rec.entry
		start, repl := rec.start, ""
		if i == 0 {
			switch bom := []byte("\uFEFF"); {
			case bytes.HasPrefix(d.data, bom):
				start = 3 // keep the byte order mark
			case bytes.HasPrefix(out[rec.end:], bom):
				// The next line starts with U+FEFF: at the start of the file
				// it would read as a byte order mark. Leave an empty line.
				repl = d.newline
			}
		}
		out = splice(out, start, rec.end, repl)
	}
	return out, gone
}

func (s *Store) notFound(id string) error {
	fp := id
	if len(fp) > 8 {
		fp = fp[:8]
	}
	return fmt.Errorf("no key %s in %s (revoked already, or the file changed; reload)", fp, s.path)
}

// Find returns the entries whose client name is name (exactly, else ignoring
// case), or whose fingerprint/ID starts with the given hex (at least 4 digits,
// "sha256:" allowed), from the snapshot in force. No match is an error.
func (s *Store) Find(nameOrFingerprint string) ([]*Entry, error) {
	q := strings.TrimSpace(nameOrFingerprint)
	if q == "" {
		return nil, errors.New("give a client name or a fingerprint")
	}
	snap := s.Snapshot()
	var exact, fold, byFP []*Entry
	hex := strings.ToLower(strings.TrimPrefix(q, hashedPrefix))
	isFP := len(hex) >= 4 && isHex(hex)
	seen := map[string]bool{}
	for _, e := range snap.Entries() {
		if seen[e.ID] {
			continue // a duplicate line of the same key
		}
		switch {
		case e.Name == q:
			exact = append(exact, e)
		case strings.EqualFold(e.Name, q):
			fold = append(fold, e)
		case isFP && strings.HasPrefix(e.ID, hex):
			byFP = append(byFP, e)
		default:
			continue
		}
		seen[e.ID] = true
	}
	found := exact
	if len(found) == 0 {
		found = fold
	}
	found = append(found, byFP...)
	if len(found) == 0 {
		if isFP {
			return nil, fmt.Errorf("no key has the client name or fingerprint %q (see 'keyfocus keys list')", q)
		}
		return nil, fmt.Errorf("no key has the client name %q (see 'keyfocus keys list')", q)
	}
	return found, nil
}

// writeAtomic replaces path with data: a temp file in the same folder,
// fsync, rename over, fsync of the folder. The file's mode is kept (0600 for
// a new file). A symlink is followed, so it keeps pointing at the key file.
func writeAtomic(path string, data []byte) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	mode := fs.FileMode(0o600)
	old, err := os.Stat(path)
	if err == nil {
		mode = old.Mode().Perm()
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("save key file: %w (is the folder writable?)", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("save key file: %w", err)
	}
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("save key file: %w", err)
	}
	if old != nil {
		keepOwner(f, old)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save key file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save key file: %w", err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("save key file: sync folder: %w", err)
		}
	}
	return nil
}
