// Package keys is keyfocus's key store: the key file format, lookups,
// hashing, atomic saves and the live watch. It knows nothing of XMPP.
package keys

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"
	"time"
)

// Attr is one "attr=value" pair of an entry's value, in file order.
type Attr struct {
	Name  string
	Value string
}

// Entry is one key of the key file. Entries are immutable once they are part
// of a Snapshot: never modify one you got from a lookup.
type Entry struct {
	// ID is the lowercase hex SHA-256 of the key: the entry's identity, stable
	// across reloads and edits of its attributes. The focus records admissions
	// by ID, so a key revoked or re-hashed is recognised as the same key.
	ID string
	// Fingerprint is the first 8 hex digits of ID: what logs, the console and
	// metrics show. Never show anything longer.
	Fingerprint string
	// Hashed is true for "sha256:<hex>" entries, false for plaintext (seed) ones.
	Hashed bool
	// Line is the 1-based line of the file where the entry starts.
	Line int

	Name            string
	Rooms           []string  // glob patterns (path.Match syntax); empty means every room
	Expires         time.Time // zero means never
	MaxParticipants int       // 0 means no limit
	// Unknown holds attributes keyfocus does not know. They are kept on save
	// and reported as warnings, never dropped.
	Unknown []Attr

	// foldID is the SHA-256 of the lowercased key for plaintext entries (the
	// room-prefix form matches case-insensitively); empty for hashed ones.
	foldID string
}

// HashKey returns the lowercase hex SHA-256 of key: an entry's ID.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Fingerprint returns the display fingerprint of a key: the first 8 hex
// digits of its SHA-256.
func Fingerprint(key string) string { return HashKey(key)[:8] }

// Expired reports whether the entry has expired at now.
func (e *Entry) Expired(now time.Time) bool {
	return !e.Expires.IsZero() && !now.Before(e.Expires)
}

// AllowsRoom reports whether the entry may open or enter room, given as the
// room's local part (no "@conference..."). Matching is case-insensitive,
// because Jitsi lowercases room names.
func (e *Entry) AllowsRoom(room string) bool {
	if len(e.Rooms) == 0 {
		return true
	}
	room = strings.ToLower(room)
	for _, p := range e.Rooms {
		if ok, err := path.Match(strings.ToLower(p), room); err == nil && ok {
			return true
		}
	}
	return false
}
