package keys

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
	"time"
)

// Snapshot is an immutable view of the key file at one moment. Lookups on a
// snapshot never wait for a reload: the Store swaps whole snapshots atomically.
type Snapshot struct {
	Path     string    // the key file
	LoadedAt time.Time // when this snapshot was read
	// Warnings are non-fatal findings (unknown attributes, duplicate keys),
	// each "FILE:LINE: message".
	Warnings []string

	entries []*Entry          // file order
	byID    map[string]*Entry // exact key hash -> entry
	byFold  map[string]*Entry // lowercased key hash -> entry (room-prefix form)
}

// NewSnapshot builds a snapshot from entries (file order). Later duplicates of
// the same key lose to the first, as in a properties file read top-down.
func NewSnapshot(path string, entries []*Entry, loadedAt time.Time) *Snapshot {
	s := &Snapshot{
		Path:     path,
		LoadedAt: loadedAt,
		entries:  entries,
		byID:     make(map[string]*Entry, len(entries)),
		byFold:   make(map[string]*Entry, len(entries)),
	}
	for _, e := range entries {
		if _, dup := s.byID[e.ID]; !dup {
			s.byID[e.ID] = e
		}
		fold := e.foldID
		if fold == "" {
			fold = e.ID // hashed entries: keyfocus keys are lowercase already
		}
		if _, dup := s.byFold[fold]; !dup {
			s.byFold[fold] = e
		}
	}
	return s
}

// Len is the number of entries.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.entries)
}

// Entries returns the entries in file order. The slice is shared: do not modify.
func (s *Snapshot) Entries() []*Entry {
	if s == nil {
		return nil
	}
	return s.entries
}

// ByID returns the entry with the given ID (see Entry.ID), or nil.
func (s *Snapshot) ByID(id string) *Entry {
	if s == nil {
		return nil
	}
	return s.byID[id]
}

// Lookup finds the entry for a key presented exactly (property and token
// forms). It costs one SHA-256 and one map lookup whatever the number of keys;
// the final comparison is constant-time.
func (s *Snapshot) Lookup(key string) *Entry {
	if s == nil || key == "" {
		return nil
	}
	var id [64]byte
	hashInto(&id, key)
	e := s.byID[string(id[:])] // no allocation: the compiler looks up in place
	if e == nil || !constantTimeEqual(e.ID, id[:]) {
		return nil
	}
	return e
}

// hashInto writes HashKey(key) into id without allocating: lookups are the
// focus's hot path.
func hashInto(id *[64]byte, key string) {
	sum := sha256.Sum256([]byte(key))
	hex.Encode(id[:], sum[:])
}

// constantTimeEqual is subtle.ConstantTimeCompare for a string and a byte
// slice, without converting (and allocating) either.
func constantTimeEqual(a string, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := 0; i < len(b); i++ {
		v |= a[i] ^ b[i]
	}
	return subtle.ConstantTimeByteEq(v, 0) == 1
}

// LookupFold finds the entry for a key presented in the room-prefix form,
// where Jitsi clients cannot send upper case: the match is case-insensitive.
func (s *Snapshot) LookupFold(key string) *Entry {
	if s == nil || key == "" {
		return nil
	}
	var id [64]byte
	hashInto(&id, strings.ToLower(key))
	e := s.byFold[string(id[:])]
	if e == nil {
		return nil
	}
	want := e.foldID
	if want == "" {
		want = e.ID
	}
	if !constantTimeEqual(want, id[:]) {
		return nil
	}
	return e
}
