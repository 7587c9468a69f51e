package focus

import (
	"sync"
	"time"
)

// EventKind names what happened. The set is part of the contract between the
// focus and everything that watches it (console, control socket, metrics,
// audit log): add kinds, never change the meaning of one.
type EventKind string

const (
	EvConnection    EventKind = "connection"     // Conn set
	EvRoomOpened    EventKind = "room_opened"    // Room set
	EvRoomEnded     EventKind = "room_ended"     // Room, Reason set
	EvMemberJoined  EventKind = "member_joined"  // Room, Member set
	EvMemberLeft    EventKind = "member_left"    // Room, Member set (Reason: left|kicked|removed|lost)
	EvMemberRemoved EventKind = "member_removed" // Room, Member, Reason set: removed by keyfocus (revocation or operator)
	EvAdmitted      EventKind = "admitted"       // Request set
	EvRefused       EventKind = "refused"        // Rejection set
	EvStoreReloaded EventKind = "store_reloaded" // Store set
	EvStoreFailed   EventKind = "store_failed"   // Store set (Store.LastError)
	// EvMembershipRevoked: Room, Member (JID is the bare JID, no Nick),
	// Reason and Actor set. keyfocus withdrew the membership of someone it
	// does not see in the room: they left before, or they were in it while
	// the focus was away (a key revoked while keyfocus was down), in which
	// case Prosody takes them out with status 321.
	EvMembershipRevoked EventKind = "membership_revoked"
)

// ConnState is the state of the component's connection to Prosody.
type ConnState struct {
	Connected bool      `json:"connected"`
	Attempt   int       `json:"attempt,omitempty"` // reconnect attempt while not connected
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
}

// Member is one person in a room, as the focus sees them. The focus's own
// occupant is never a Member.
type Member struct {
	Nick        string    `json:"nick"`
	JID         string    `json:"jid"` // real full JID
	Role        string    `json:"role"`
	Joined      time.Time `json:"joined"`
	KeyID       string    `json:"-"`           // entry ID of the key that admitted them (never sent out)
	Fingerprint string    `json:"fingerprint"` // of that key; empty if unknown
	Client      string    `json:"client"`      // client name of that key
}

// Room is one room the focus manages.
type Room struct {
	Name    string    `json:"name"` // bare room JID
	Created time.Time `json:"created"`
	Members []Member  `json:"members"`
}

// Rejection is one refused conference request.
type Rejection struct {
	Time        time.Time `json:"time"`
	Requester   string    `json:"requester"` // full JID
	Room        string    `json:"room"`
	Reason      string    `json:"reason"` // one of the Reason* constants
	Code        int       `json:"code"`   // reservation-error code (401, 403, 429) or 0
	Fingerprint string    `json:"fingerprint,omitempty"`
}

// Refusal reasons (the rows of PROTOCOL.md §3).
const (
	ReasonNoKey        = "no_key"
	ReasonUnknownKey   = "unknown_key"
	ReasonExpired      = "expired"
	ReasonRoomNotAllow = "room_not_allowed"
	ReasonRoomFull     = "room_full"
	ReasonRateLimited  = "rate_limited"
	ReasonShutdown     = "shutting_down"
	ReasonBadRequest   = "bad_request"
)

// Admission is one admitted conference request.
type Admission struct {
	Time        time.Time     `json:"time"`
	Requester   string        `json:"requester"`
	Room        string        `json:"room"`
	Fingerprint string        `json:"fingerprint"`
	Client      string        `json:"client"`
	Latency     time.Duration `json:"latency"`
}

// StoreState is the key store as the focus last saw it.
type StoreState struct {
	Path       string    `json:"path"`
	Keys       int       `json:"keys"`
	LastReload time.Time `json:"last_reload"`
	LastError  string    `json:"last_error,omitempty"` // "FILE:LINE: message" of the last failed reload
	Notice     string    `json:"notice,omitempty"`     // e.g. a mass revocation that went through after the hold
}

// Event is one thing that happened in the focus. Exactly the fields named
// by its Kind are set.
type Event struct {
	Kind      EventKind   `json:"kind"`
	Time      time.Time   `json:"time"`
	Conn      *ConnState  `json:"conn,omitempty"`
	Room      string      `json:"room,omitempty"`
	Member    *Member     `json:"member,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	Request   *Admission  `json:"request,omitempty"`
	Rejection *Rejection  `json:"rejection,omitempty"`
	Store     *StoreState `json:"store,omitempty"`
	// Actor says who caused a removal or a room end ("revocation", "operator",
	// "expiry", ...), where that applies.
	Actor string `json:"actor,omitempty"`
}

// State is a consistent picture of the focus at one moment: what a console
// draws before it starts applying events.
type State struct {
	Component string      `json:"component"`
	Conn      ConnState   `json:"conn"`
	Rooms     []Room      `json:"rooms"`
	Rejected  []Rejection `json:"rejected"` // newest first, bounded
	Store     StoreState  `json:"store"`
}

// Bus fans events out to subscribers. Each subscriber has its own buffered
// channel; Publish never blocks: a subscriber that falls behind loses events
// and sees its Dropped count grow (a console then asks for a fresh State).
type Bus struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscription is one subscriber's view of a Bus.
type Subscription struct {
	C       <-chan Event
	c       chan Event
	bus     *Bus
	mu      sync.Mutex
	dropped uint64
}

// Dropped is how many events this subscriber lost because its buffer was full.
func (s *Subscription) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close ends the subscription and closes C.
func (s *Subscription) Close() {
	b := s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.c)
	}
}

// Subscribe returns a subscription with a buffer of size events (at least 1).
func (b *Bus) Subscribe(size int) *Subscription {
	if size < 1 {
		size = 1
	}
	c := make(chan Event, size)
	s := &Subscription{C: c, c: c, bus: b}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = make(map[*Subscription]struct{})
	}
	b.subs[s] = struct{}{}
	return s
}

// Publish sends ev to every subscriber without blocking.
func (b *Bus) Publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.c <- ev:
		default:
			s.mu.Lock()
			s.dropped++
			s.mu.Unlock()
		}
	}
}
