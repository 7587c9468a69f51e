package keys

import (
	"errors"
	"slices"
	"strings"
)

// ErrNothingToHash is returned by HashPlaintext when the file has no
// plaintext key it may rewrite.
var ErrNothingToHash = errors.New("no plaintext key to hash")

// HashResult is what HashPlaintext did.
type HashResult struct {
	// Hashed are the lines now stored in their sha256: form, in file order
	// (as they are after the save: same ID, fingerprint, name and
	// attributes; a key on several lines counts once per line).
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
	var (
		d0       *document
		hashed   map[int]bool
		mixedIdx []int
		res      *HashResult
	)
	_, err := s.modify(func(d *document) ([]byte, error) {
		var out []byte
		d0 = d
		out, hashed, mixedIdx = hashDoc(d, mixedCase)
		if len(hashed) == 0 {
			return nil, ErrNothingToHash
		}
		return out, nil
	}, func(nd *document) bool {
		if !hashedAsIntended(d0, nd, hashed) {
			return false
		}
		res = &HashResult{}
		for i := range nd.recs {
			if hashed[i] {
				res.Hashed = append(res.Hashed, nd.recs[i].entry)
			}
		}
		for _, i := range mixedIdx {
			res.MixedCase = append(res.MixedCase, nd.recs[i].entry)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if res == nil { // the file did not change: cannot happen, see hashDoc
		return nil, ErrNothingToHash
	}
	for _, e := range res.Hashed {
		s.log.Info("key hashed in place", "fingerprint", e.Fingerprint, "client", e.Name, "line", e.Line)
	}
	return res, nil
}

// hashDoc returns d's content with the key of every plaintext entry written
// as "sha256:<hex>" (those with upper-case letters only if mixedCase), the
// indexes of the records it rewrote, and those of the mixed-case ones it
// left (in file order). A rewritten record stays one record: a key written
// over continuation lines becomes one line, so record i of the result is
// record i of d.
func hashDoc(d *document, mixedCase bool) (out []byte, hashed map[int]bool, mixed []int) {
	hashed = map[int]bool{}
	out = d.data
	// From the end, so earlier offsets stay valid.
	for i := len(d.recs) - 1; i >= 0; i-- {
		rec := &d.recs[i]
		e := rec.entry
		if e == nil || e.Hashed {
			continue
		}
		if !mixedCase && rec.key != strings.ToLower(rec.key) {
			mixed = append(mixed, i)
			continue
		}
		out = splice(out, rec.keyRaw, rec.valueRaw, hashedPrefix+e.ID+"=")
		hashed[i] = true
	}
	slices.Reverse(mixed)
	return out, hashed, mixed
}

// hashedAsIntended reports whether nd, the result of hashDoc on d, holds
// the same records with the same keys, names and attributes, and only the
// records in hashed changed form.
func hashedAsIntended(d, nd *document, hashed map[int]bool) bool {
	if len(nd.errs) > 0 || len(nd.recs) != len(d.recs) {
		return false
	}
	for i := range d.recs {
		old, e := d.recs[i].entry, nd.recs[i].entry
		if old == nil || e == nil {
			if old != e || d.recs[i].kind != nd.recs[i].kind {
				return false
			}
			continue
		}
		if e.ID != old.ID || e.Name != old.Name || !SpecOf(e).equal(SpecOf(old)) ||
			!slices.Equal(e.Unknown, old.Unknown) || e.Hashed != (old.Hashed || hashed[i]) {
			return false
		}
	}
	return true
}
