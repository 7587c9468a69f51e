package audit

import (
	"path/filepath"
	"slices"

	"github.com/keyfocus/keyfocus/keys"
)

// Change is one key that differs between two snapshots of the key file.
type Change struct {
	Kind        string   // KeyAdded, KeyEdited or KeyRevoked
	Fingerprint string   // of the key
	Client      string   // client name (the new one for an edit)
	Changed     []string // for KeyEdited: the attributes that differ
}

// Diff lists the keys added, edited and revoked between old and new, in the
// file order of new (additions, edits) then old (revocations). Either may be
// nil (an empty store).
func Diff(old, new *keys.Snapshot) []Change {
	if old == new {
		return nil
	}
	var out []Change
	for _, e := range new.Entries() {
		if new.ByID(e.ID) != e { // a later duplicate: the first one counts
			continue
		}
		o := old.ByID(e.ID)
		if o == nil {
			out = append(out, Change{Kind: KeyAdded, Fingerprint: e.Fingerprint, Client: e.Name})
			continue
		}
		if ch := EntryChanges(o, e); len(ch) > 0 {
			out = append(out, Change{Kind: KeyEdited, Fingerprint: e.Fingerprint, Client: e.Name, Changed: ch})
		}
	}
	for _, e := range old.Entries() {
		if old.ByID(e.ID) != e {
			continue
		}
		if new.ByID(e.ID) == nil {
			out = append(out, Change{Kind: KeyRevoked, Fingerprint: e.Fingerprint, Client: e.Name})
		}
	}
	return out
}

// EntryChanges names the attributes that differ between two versions of the
// same key: "name", "rooms", "expires", "max-participants", "hashed" (the
// key was rewritten in its sha256: form), or an unknown attribute's name.
func EntryChanges(old, new *keys.Entry) []string {
	var ch []string
	if old.Name != new.Name {
		ch = append(ch, "name")
	}
	if !slices.Equal(old.Rooms, new.Rooms) {
		ch = append(ch, "rooms")
	}
	if !old.Expires.Equal(new.Expires) {
		ch = append(ch, "expires")
	}
	if old.MaxParticipants != new.MaxParticipants {
		ch = append(ch, "max-participants")
	}
	if old.Hashed != new.Hashed {
		ch = append(ch, "hashed")
	}
	seen := map[string]bool{}
	for _, a := range old.Unknown {
		seen[a.Name] = true
		if v, ok := unknownValue(new.Unknown, a.Name); !ok || v != a.Value {
			ch = append(ch, a.Name)
		}
	}
	for _, a := range new.Unknown {
		if !seen[a.Name] {
			ch = append(ch, a.Name)
		}
	}
	return ch
}

func unknownValue(attrs []keys.Attr, name string) (string, bool) {
	for _, a := range attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}

// KeyRecord is the record a tool appends after it changed a key: kind is
// KeyAdded, KeyEdited or KeyRevoked, actor who did it (LocalActor(), or the
// ssh console's key), via where (ViaCLI, ViaConsole, ViaSSH), keysPath the key
// file it saved. The focus matches this record to the change it sees through
// its watch and does not record that change a second time.
func KeyRecord(kind, actor, via, keysPath string, e *keys.Entry, changed ...string) Record {
	return Record{
		Event:       kind,
		Actor:       actor,
		Via:         via,
		Keys:        CanonicalPath(keysPath),
		Fingerprint: e.Fingerprint,
		Client:      e.Name,
		Changed:     changed,
	}
}

// CanonicalPath is the absolute, symlink-resolved form of a key file's path,
// so that a tool and the focus that name the same file differently still
// agree. The file itself need not exist.
func CanonicalPath(p string) string {
	if p == "" {
		return ""
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	dir, base := filepath.Split(abs)
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		return filepath.Join(d, base)
	}
	return abs
}
