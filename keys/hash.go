package keys

import (
	"errors"
	"strings"
)

// ErrNothingToHash is returned by HashPlaintext when the file has no
// plaintext key it may rewrite.
var ErrNothingToHash = errors.New("no plaintext key to hash")

// HashResult is what HashPlaintext did.
type HashResult struct {
	// Hashed are the entries now stored in their sha256: form (as they are
	// after the save: same ID, fingerprint, name and attributes).
	Hashed []*Entry
	// MixedCase are the plaintext entries left as they were because the key
	// has upper-case letters (see HashPlaintext).
	MixedCase []*Entry
}

// HashPlaintext rewrites every plaintext (seed) key of the file as
// "sha256:<hex>", in place: the client name, the attributes, the line and
// every other line stay as they are. A key's ID and fingerprint are the
// SHA-256 of the key either way, so a running focus sees no change in who may
// enter: admissions stay valid and nobody is removed.
//
// One thing does change for a key with upper-case letters: in plaintext it
// also matches the room-prefix form case-insensitively (Jitsi lowercases room
// names), and a hash cannot. Such keys are left in plaintext and reported in
// MixedCase, unless mixedCase is true (for keys only ever sent as a property).
func (s *Store) HashPlaintext(mixedCase bool) (*HashResult, error) {
	var ids, mixed []string // in file order, from the end
	before := 0
	snap, err := s.modify(func(d *document) ([]byte, error) {
		ids, mixed, before = ids[:0], mixed[:0], len(d.entries)
		out := d.data
		// From the end, so earlier offsets stay valid.
		for i := len(d.recs) - 1; i >= 0; i-- {
			rec := &d.recs[i]
			e := rec.entry
			if e == nil || e.Hashed {
				continue
			}
			if !mixedCase && rec.key != strings.ToLower(rec.key) {
				mixed = append(mixed, e.ID)
				continue
			}
			out = splice(out, rec.keyRaw, rec.valueRaw, hashedPrefix+e.ID+"=")
			ids = append(ids, e.ID)
		}
		if len(ids) == 0 {
			return nil, ErrNothingToHash
		}
		return out, nil
	}, func(nd *document) bool {
		for _, id := range ids {
			if e := nd.snap.byID[id]; e == nil || !e.Hashed {
				return false
			}
		}
		return len(nd.entries) == before
	})
	if err != nil {
		return nil, err
	}
	// Report the entries as saved (lines may have moved when a key had
	// continuation lines), in file order, each key once.
	res := &HashResult{Hashed: entriesOf(snap, ids), MixedCase: entriesOf(snap, mixed)}
	for _, e := range res.Hashed {
		s.log.Info("key hashed in place", "fingerprint", e.Fingerprint, "client", e.Name)
	}
	return res, nil
}

// entriesOf returns the entries of ids (given from the end of the file) in
// file order, each once.
func entriesOf(snap *Snapshot, ids []string) []*Entry {
	var out []*Entry
	seen := map[string]bool{}
	for i := len(ids) - 1; i >= 0; i-- {
		if seen[ids[i]] {
			continue
		}
		seen[ids[i]] = true
		if e := snap.ByID(ids[i]); e != nil {
			out = append(out, e)
		}
	}
	return out
}
