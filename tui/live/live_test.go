package live

import (
	"strconv"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func mem(nick, fp string) *focus.Member {
	return &focus.Member{Nick: nick, Fingerprint: fp, Client: "C", Joined: t0}
}

func TestApply(t *testing.T) {
	const r1, r2 = "r1@conference.x", "key9=r2@conference.x"
	tests := []struct {
		name        string
		events      []focus.Event
		rooms       int
		members     int
		byKey       map[string]int
		rejected    int
		display     string // of r2, when it exists
		roomsMoved  bool
		connectedTo bool
	}{
		{name: "room opened", events: []focus.Event{{Kind: focus.EvRoomOpened, Room: r1}}, rooms: 1, roomsMoved: true, byKey: map[string]int{}},
		{name: "member joins an unknown room", events: []focus.Event{{Kind: focus.EvMemberJoined, Room: r2, Member: mem("a", "k1")}},
			rooms: 1, members: 1, byKey: map[string]int{"k1": 1}, display: "•••=r2", roomsMoved: true},
		{name: "rejoin replaces", events: []focus.Event{
			{Kind: focus.EvMemberJoined, Room: r1, Member: mem("a", "k1")},
			{Kind: focus.EvMemberJoined, Room: r1, Member: mem("a", "k2")},
		}, rooms: 1, members: 1, byKey: map[string]int{"k2": 1}, roomsMoved: true},
		{name: "left and removed", events: []focus.Event{
			{Kind: focus.EvMemberJoined, Room: r1, Member: mem("a", "k1")},
			{Kind: focus.EvMemberJoined, Room: r1, Member: mem("b", "k1")},
			{Kind: focus.EvMemberJoined, Room: r1, Member: mem("c", "k1")},
			{Kind: focus.EvMemberLeft, Room: r1, Member: mem("a", "")},
			{Kind: focus.EvMemberRemoved, Room: r1, Member: mem("b", "")},
		}, rooms: 1, members: 1, byKey: map[string]int{"k1": 1}, roomsMoved: true},
		{name: "leave of someone unknown is ignored", events: []focus.Event{{Kind: focus.EvMemberLeft, Room: r1, Member: mem("z", "")}}, byKey: map[string]int{}},
		{name: "room ended takes its members", events: []focus.Event{
			{Kind: focus.EvMemberJoined, Room: r1, Member: mem("a", "k1")},
			{Kind: focus.EvMemberJoined, Room: r2, Member: mem("b", "k1")},
			{Kind: focus.EvRoomEnded, Room: r1},
		}, rooms: 1, members: 1, byKey: map[string]int{"k1": 1}, display: "•••=r2", roomsMoved: true},
		{name: "refusals", events: []focus.Event{
			{Kind: focus.EvRefused, Rejection: &focus.Rejection{Reason: focus.ReasonNoKey}},
			{Kind: focus.EvRefused, Rejection: &focus.Rejection{Reason: focus.ReasonNoKey}},
		}, rejected: 2, byKey: map[string]int{}},
		{name: "connection", events: []focus.Event{{Kind: focus.EvConnection, Conn: &focus.ConnState{Connected: true}}}, byKey: map[string]int{}, connectedTo: true},
		{name: "events without their fields are ignored", events: []focus.Event{
			{Kind: focus.EvMemberJoined, Room: r1}, {Kind: focus.EvRefused}, {Kind: focus.EvConnection}, {Kind: focus.EvStoreFailed},
		}, byKey: map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(focus.State{}, "")
			for _, ev := range tt.events {
				s.Apply(ev)
			}
			if len(s.Rooms) != tt.rooms || s.Members != tt.members || s.RejectedLen() != tt.rejected {
				t.Errorf("rooms %d members %d rejected %d", len(s.Rooms), s.Members, s.RejectedLen())
			}
			if len(s.ByKey) != len(tt.byKey) {
				t.Errorf("byKey = %v, want %v", s.ByKey, tt.byKey)
			}
			for k, n := range tt.byKey {
				if s.ByKey[k] != n {
					t.Errorf("byKey[%s] = %d, want %d", k, s.ByKey[k], n)
				}
			}
			if r := s.Rooms[r2]; r != nil && r.Display != tt.display {
				t.Errorf("display %q, want %q", r.Display, tt.display)
			}
			if (s.RoomsVersion > 0) != tt.roomsMoved {
				t.Errorf("RoomsVersion %d", s.RoomsVersion)
			}
			if s.Conn.Connected != tt.connectedTo {
				t.Errorf("connected %v", s.Conn.Connected)
			}
		})
	}
}

func TestRejectedRing(t *testing.T) {
	var rej []focus.Rejection
	for i := 0; i < 5; i++ { // newest first
		rej = append(rej, focus.Rejection{Requester: strconv.Itoa(100 - i), Reason: focus.ReasonNoKey})
	}
	s := New(focus.State{Rejected: rej}, "")
	for i := 0; i < MaxRejected+10; i++ {
		s.Apply(focus.Event{Kind: focus.EvRefused, Rejection: &focus.Rejection{Requester: strconv.Itoa(i), Reason: focus.ReasonExpired}})
	}
	if s.RejectedLen() != MaxRejected {
		t.Fatalf("len %d", s.RejectedLen())
	}
	if got := s.Rejected(0).Requester; got != strconv.Itoa(MaxRejected+9) {
		t.Errorf("newest = %s", got)
	}
	if got := s.Rejected(MaxRejected - 1).Requester; got != "10" {
		t.Errorf("oldest kept = %s", got)
	}
	if s.ReasonCounts[focus.ReasonNoKey] != 5 || s.ReasonCounts[focus.ReasonExpired] != MaxRejected+10 {
		t.Errorf("counts %v", s.ReasonCounts)
	}
}

func TestDisplayMasksKeys(t *testing.T) {
	tests := []struct{ sep, room, want string }{
		{"=", "admin123=ttnd@conference.x", "•••=ttnd"},
		{".", "kf_abc.standup@conference.x", "•••.standup"},
		{"=", "standup@conference.x", "standup"},
		{"=", "=odd@conference.x", "=odd"},
		{"=", "admin=123=ttnd@conference.x", "•••=ttnd"},
		{"-", "kf_x-y-team@conference.x", "•••-team"},
	}
	for _, tt := range tests {
		if got := New(focus.State{}, tt.sep).DisplayRoom(tt.room); got != tt.want {
			t.Errorf("DisplayRoom(%q, sep %q) = %q, want %q", tt.room, tt.sep, got, tt.want)
		}
	}
}
