// Package live is the console's own copy of the focus state: a focus.State
// to start from, with every event applied to it. It is built for a console
// that draws a few rows of tens of thousands of rooms: applying an event is
// O(members of that room), and nothing here sorts or allocates per event
// beyond what the event itself brings.
package live

import (
	"strings"
	"time"

	"github.com/keyfocus/keyfocus/focus"
)

// MaxRejected bounds the rejected attempts kept (newest first).
const MaxRejected = 1000

// Room is one room as the console shows it.
type Room struct {
	Name    string // bare room JID
	Display string // local part, with a key in the room-prefix form masked
	Created time.Time
	Members []focus.Member // in join order
}

// Keys is how many distinct keys admitted the room's members.
func (r *Room) Keys() int {
	switch len(r.Members) {
	case 0:
		return 0
	case 1:
		return 1
	}
	seen := make(map[string]struct{}, 4)
	for i := range r.Members {
		seen[r.Members[i].Fingerprint] = struct{}{}
	}
	return len(seen)
}

// State is the console's picture of the focus.
type State struct {
	Component string
	Conn      focus.ConnState
	Store     focus.StoreState
	Rooms     map[string]*Room
	Members   int // members in all rooms

	// ByKey counts the members admitted now by each key fingerprint.
	ByKey map[string]int
	// ReasonCounts counts refusals per reason: those in the initial state
	// plus every refusal since.
	ReasonCounts map[string]int

	rejected []focus.Rejection // ring buffer
	head     int               // index of the newest
	n        int

	// RoomsVersion changes whenever rooms or members change; RejectedVersion
	// whenever a refusal arrives; StoreVersion whenever the store state does.
	// Views recompute their rows only when the version they use moved.
	RoomsVersion, RejectedVersion, StoreVersion uint64
	// RoomSetVersion changes only when a room appears or goes: an order by
	// name or age stays right through member changes.
	RoomSetVersion uint64

	sep string
}

// New starts a State from st. sep is the focus's room-key separator (see
// DESIGN.md); a room local part "KEY<sep>NAME" is shown as "•••<sep>NAME" so
// the console never shows a key. Empty sep: "=".
func New(st focus.State, sep string) *State {
	if sep == "" {
		sep = "="
	}
	s := &State{
		Component:    st.Component,
		Conn:         st.Conn,
		Store:        st.Store,
		Rooms:        make(map[string]*Room, len(st.Rooms)),
		ByKey:        make(map[string]int),
		ReasonCounts: make(map[string]int),
		rejected:     make([]focus.Rejection, MaxRejected),
		sep:          sep,
	}
	for _, r := range st.Rooms {
		room := &Room{Name: r.Name, Display: s.display(r.Name), Created: r.Created,
			Members: append([]focus.Member(nil), r.Members...)}
		s.Rooms[r.Name] = room
		for i := range room.Members {
			s.countMember(&room.Members[i], 1)
		}
	}
	// st.Rejected is newest first: push oldest first.
	rej := st.Rejected
	if len(rej) > MaxRejected {
		rej = rej[:MaxRejected]
	}
	for i := len(rej) - 1; i >= 0; i-- {
		s.pushRejected(rej[i])
	}
	return s
}

// display masks a key in the room-prefix form and drops the MUC domain.
// Everything up to the last separator is masked: a key that itself holds
// the separator never shows in part (a name holding it is masked a bit more
// than needed).
func (s *State) display(name string) string {
	local := name
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	if i := strings.LastIndex(local, s.sep); i > 0 {
		local = "•••" + local[i:]
	}
	return local
}

// DisplayRoom is how a room name is shown (see New).
func (s *State) DisplayRoom(name string) string { return s.display(name) }

func (s *State) countMember(m *focus.Member, d int) {
	s.Members += d
	if m.Fingerprint == "" {
		return
	}
	n := s.ByKey[m.Fingerprint] + d
	if n <= 0 {
		delete(s.ByKey, m.Fingerprint)
	} else {
		s.ByKey[m.Fingerprint] = n
	}
}

func (s *State) pushRejected(r focus.Rejection) {
	s.head = (s.head + 1) % len(s.rejected)
	s.rejected[s.head] = r
	if s.n < len(s.rejected) {
		s.n++
	}
	s.ReasonCounts[r.Reason]++
}

// RejectedLen is how many rejected attempts are kept.
func (s *State) RejectedLen() int { return s.n }

// Rejected returns the i-th rejected attempt, newest first (i < RejectedLen).
func (s *State) Rejected(i int) *focus.Rejection {
	j := s.head - i
	if j < 0 {
		j += len(s.rejected)
	}
	return &s.rejected[j]
}

// Apply folds one event into the state.
func (s *State) Apply(ev focus.Event) {
	switch ev.Kind {
	case focus.EvConnection:
		if ev.Conn != nil {
			s.Conn = *ev.Conn
			s.StoreVersion++
		}
	case focus.EvRoomOpened:
		if _, ok := s.Rooms[ev.Room]; !ok {
			s.Rooms[ev.Room] = &Room{Name: ev.Room, Display: s.display(ev.Room), Created: ev.Time}
			s.RoomsVersion++
			s.RoomSetVersion++
		}
	case focus.EvRoomEnded:
		if r, ok := s.Rooms[ev.Room]; ok {
			for i := range r.Members {
				s.countMember(&r.Members[i], -1)
			}
			delete(s.Rooms, ev.Room)
			s.RoomsVersion++
			s.RoomSetVersion++
		}
	case focus.EvMemberJoined:
		if ev.Member == nil {
			return
		}
		r, ok := s.Rooms[ev.Room]
		if !ok {
			r = &Room{Name: ev.Room, Display: s.display(ev.Room), Created: ev.Time}
			s.Rooms[ev.Room] = r
			s.RoomSetVersion++
		}
		s.RoomsVersion++
		for i := range r.Members {
			if r.Members[i].Nick == ev.Member.Nick {
				s.countMember(&r.Members[i], -1)
				r.Members[i] = *ev.Member
				s.countMember(&r.Members[i], 1)
				return
			}
		}
		r.Members = append(r.Members, *ev.Member)
		s.countMember(&r.Members[len(r.Members)-1], 1)
	case focus.EvMemberLeft, focus.EvMemberRemoved:
		if ev.Member == nil {
			return
		}
		r, ok := s.Rooms[ev.Room]
		if !ok {
			return
		}
		for i := range r.Members {
			if r.Members[i].Nick == ev.Member.Nick {
				s.countMember(&r.Members[i], -1)
				r.Members = append(r.Members[:i], r.Members[i+1:]...)
				s.RoomsVersion++
				return
			}
		}
	case focus.EvRefused:
		if ev.Rejection != nil {
			s.pushRejected(*ev.Rejection)
			s.RejectedVersion++
		}
	case focus.EvStoreReloaded, focus.EvStoreFailed:
		if ev.Store != nil {
			s.Store = *ev.Store
			s.StoreVersion++
		}
	}
}
