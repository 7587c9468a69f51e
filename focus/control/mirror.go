package control

import (
	"sort"

	"github.com/keyfocus/keyfocus/focus"
)

// maxRejected bounds the rejected attempts a mirror keeps (newest first).
const maxRejected = 1000

// mirror is the client's copy of the focus state: the last State the server
// sent, with every event since applied to it.
type mirror struct {
	component string
	conn      focus.ConnState
	store     focus.StoreState
	rooms     map[string]*focus.Room
	rejected  []focus.Rejection // newest first
}

func newMirror(st focus.State) *mirror {
	m := &mirror{
		component: st.Component,
		conn:      st.Conn,
		store:     st.Store,
		rooms:     make(map[string]*focus.Room, len(st.Rooms)),
		rejected:  append([]focus.Rejection(nil), st.Rejected...),
	}
	for _, r := range st.Rooms {
		r := r
		r.Members = append([]focus.Member(nil), r.Members...)
		m.rooms[r.Name] = &r
	}
	if len(m.rejected) > maxRejected {
		m.rejected = m.rejected[:maxRejected]
	}
	return m
}

// state returns a deep copy, rooms sorted by name.
func (m *mirror) state() focus.State {
	st := focus.State{
		Component: m.component,
		Conn:      m.conn,
		Store:     m.store,
		Rooms:     make([]focus.Room, 0, len(m.rooms)),
		Rejected:  append([]focus.Rejection(nil), m.rejected...),
	}
	for _, r := range m.rooms {
		c := *r
		c.Members = append([]focus.Member(nil), r.Members...)
		st.Rooms = append(st.Rooms, c)
	}
	sort.Slice(st.Rooms, func(i, j int) bool { return st.Rooms[i].Name < st.Rooms[j].Name })
	return st
}

// apply folds one event into the mirror.
func (m *mirror) apply(ev focus.Event) {
	switch ev.Kind {
	case focus.EvConnection:
		if ev.Conn != nil {
			m.conn = *ev.Conn
		}
	case focus.EvRoomOpened:
		if _, ok := m.rooms[ev.Room]; !ok {
			m.rooms[ev.Room] = &focus.Room{Name: ev.Room, Created: ev.Time}
		}
	case focus.EvRoomEnded:
		delete(m.rooms, ev.Room)
	case focus.EvMemberJoined:
		if ev.Member == nil {
			return
		}
		r, ok := m.rooms[ev.Room]
		if !ok {
			r = &focus.Room{Name: ev.Room, Created: ev.Time}
			m.rooms[ev.Room] = r
		}
		for i := range r.Members {
			if r.Members[i].Nick == ev.Member.Nick {
				r.Members[i] = *ev.Member
				return
			}
		}
		r.Members = append(r.Members, *ev.Member)
	case focus.EvMemberLeft, focus.EvMemberRemoved:
		if ev.Member == nil {
			return
		}
		if r, ok := m.rooms[ev.Room]; ok {
			for i := range r.Members {
				if r.Members[i].Nick == ev.Member.Nick {
					r.Members = append(r.Members[:i], r.Members[i+1:]...)
					break
				}
			}
		}
	case focus.EvRefused:
		if ev.Rejection == nil {
			return
		}
		if len(m.rejected) < maxRejected {
			m.rejected = append(m.rejected, focus.Rejection{})
		}
		copy(m.rejected[1:], m.rejected)
		m.rejected[0] = *ev.Rejection
	case focus.EvStoreReloaded, focus.EvStoreFailed:
		if ev.Store != nil {
			m.store = *ev.Store
		}
	}
}
