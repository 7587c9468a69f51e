package keys

import "time"

// Verdict is the answer of Authorize.
type Verdict int

const (
	Valid          Verdict = iota // the key may open or enter the room now
	Unknown                       // no such key (never was, or revoked)
	Expired                       // the key's expiry has passed
	RoomNotAllowed                // the key's rooms do not include this room
)

func (v Verdict) String() string {
	switch v {
	case Valid:
		return "valid"
	case Unknown:
		return "unknown key"
	case Expired:
		return "expired"
	case RoomNotAllowed:
		return "room not allowed"
	}
	return "invalid verdict"
}

// Authorize answers, for one conference request, which entry the key is and
// whether it is valid for room (the room's local part) at now. fold selects
// the case-insensitive match of the room-name form (see LookupFold). The cost
// does not depend on the number of keys: one SHA-256, one map lookup, and the
// entry's own room patterns. The entry is returned whenever the key is known,
// so a refusal can name the client and the rooms it may use.
func (s *Snapshot) Authorize(key, room string, now time.Time, fold bool) (*Entry, Verdict) {
	var e *Entry
	if fold {
		e = s.LookupFold(key)
	} else {
		e = s.Lookup(key)
	}
	switch {
	case e == nil:
		return nil, Unknown
	case e.Expired(now):
		return e, Expired
	case !e.AllowsRoom(room):
		return e, RoomNotAllowed
	}
	return e, Valid
}
