// Package simulate has XMPP participants that behave like lib-jitsi-meet:
// anonymous login, the conference request to the focus (with a key in any of
// the three forms of PROTOCOL.md §2), the MUC join, disco#info to the focus,
// occupants tracked from presence, removal noticed (307 kick with reason, 321
// affiliation change, room destroyed), leave. Tests of the focus use the
// Participant API; `keyfocus simulate`, the demo and the soak test use the
// load run (Run).
package simulate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// Account says where and as what a participant logs in.
type Account struct {
	// Addr is Prosody's c2s address, host:port.
	Addr string
	// Domain is the XMPP domain with anonymous authentication (meet.example).
	Domain string
	// Logger gets debug lines; default discards. Keys are never logged.
	Logger *slog.Logger
	// EventBuffer is the size of the Events channel; default 256.
	EventBuffer int
}

// EventKind says what a participant saw.
type EventKind string

const (
	EvOccupantJoined EventKind = "occupant_joined" // someone (not us) is now in a room we are in
	EvOccupantLeft   EventKind = "occupant_left"   // someone (not us) left; Status says why (307, 321, 333, ...)
	EvRemoved        EventKind = "removed"         // we were removed from a room: Removal set
	EvJoinRefused    EventKind = "join_refused"    // a join of ours was refused: Error set
	EvStanza         EventKind = "stanza"          // an IQ reply nobody waited for, or a message: Stanza set
	EvDisconnected   EventKind = "disconnected"    // the stream ended: Err set (nil after Close)
	EvFocusLeft      EventKind = "focus_left"      // the focus's occupant left a room we are in (lib-jitsi-meet then leaves)
)

// Event is one thing a participant saw. The Events channel drops events when
// its buffer is full; the state queries (Occupants, WaitRemoved, ...) never
// lose anything.
type Event struct {
	Kind     EventKind
	Time     time.Time
	Room     string    // bare room JID
	Occupant *Occupant // joined/left occupant
	Status   []int     // MUC status codes of the presence
	Reason   string    // <reason/> of a kick or destroy
	Removal  *Removal
	Error    *StanzaError
	Stanza   *Element
	Err      error
}

// Occupant is someone in a room as this participant sees them.
type Occupant struct {
	Nick        string
	JID         string // real full JID (the rooms are non-anonymous); empty if hidden
	Role        string
	Affiliation string
}

// Removal tells how we were taken out of a room.
type Removal struct {
	Room string
	// Status is the deciding MUC status code: 307 kicked, 321 affiliation
	// change, 301 banned, 322 members-only, 332 shutdown; 0 when the room
	// was destroyed (Destroyed set).
	Status    int
	Codes     []int // every status code of the presence
	Reason    string
	Destroyed bool
	Time      time.Time
}

// Participant is one logged-in, Jitsi-like client. Its methods are safe for
// concurrent use.
type Participant struct {
	sess   *xmpp.Session
	conn   net.Conn
	jid    jid.JID
	domain string
	log    *slog.Logger
	uid    string // machine-uid
	events chan Event
	done   chan struct{}

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change
	rooms   map[string]*roomState
	focusOf map[string]string // bare room JID -> focusjid of the admitting reply
	dropped uint64
	err     error // why the stream ended
	closing bool
}

type roomState struct {
	nick      string
	joining   bool
	joined    bool
	leaving   bool
	left      bool
	selfCodes []int
	self      Occupant
	occupants map[string]Occupant
	joinErr   *StanzaError
	removal   *Removal
	focus     string // focusjid for this room, if a reply named one
	focusLeft bool   // the focus's occupant left while we were in the room
}

// Dial logs in anonymously (SASL ANONYMOUS without TLS, as on loopback) and
// starts serving the stream.
func Dial(ctx context.Context, acc Account) (*Participant, error) {
	if acc.Addr == "" || acc.Domain == "" {
		return nil, errors.New("simulate: Account needs Addr (c2s host:port) and Domain")
	}
	domain, err := jid.Parse(acc.Domain)
	if err != nil {
		return nil, fmt.Errorf("simulate: domain %q: %w", acc.Domain, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", acc.Addr)
	if err != nil {
		return nil, fmt.Errorf("simulate: connect to %s: %w", acc.Addr, err)
	}
	// xmpp.Secure in the initial state: without TLS mellium would not offer
	// SASL at all (PROTOCOL.md §5). This is for loopback and test servers.
	sess, err := xmpp.NewSession(ctx, domain, domain, conn, xmpp.Secure, xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
		return xmpp.StreamConfig{Features: []xmpp.StreamFeature{
			xmpp.SASL("", "", sasl.Anonymous),
			xmpp.BindResource(),
		}}
	}))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("simulate: anonymous login to %s at %s: %w", acc.Domain, acc.Addr, err)
	}
	log := acc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	buf := acc.EventBuffer
	if buf <= 0 {
		buf = 256
	}
	p := &Participant{
		sess:    sess,
		conn:    conn,
		jid:     sess.LocalAddr(),
		domain:  domain.String(),
		log:     log,
		uid:     randomHex(16),
		events:  make(chan Event, buf),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		rooms:   make(map[string]*roomState),
		focusOf: make(map[string]string),
	}
	p.log = p.log.With("jid", p.jid.String())
	go p.serve()
	return p, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// JID is the participant's full JID (guest@domain/resource).
func (p *Participant) JID() string { return p.jid.String() }

// Bare is the participant's bare JID: what the focus grants membership to.
func (p *Participant) Bare() string { return p.jid.Bare().String() }

// Events delivers what the participant sees. It is closed after the stream ends.
func (p *Participant) Events() <-chan Event { return p.events }

// Dropped is how many events were lost because nobody read Events.
func (p *Participant) Dropped() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// Done is closed when the stream has ended; Err then says why.
func (p *Participant) Done() <-chan struct{} { return p.done }

// Err is why the stream ended (nil while it runs and after a clean Close).
func (p *Participant) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *Participant) serve() {
	err := p.sess.Serve(xmpp.HandlerFunc(p.handle))
	p.mu.Lock()
	if p.closing {
		err = nil
	} else if err == nil {
		err = errors.New("stream closed by the server")
	}
	p.err = err
	p.mu.Unlock()
	p.conn.Close()
	p.emit(Event{Kind: EvDisconnected, Err: err})
	p.notify()
	close(p.done)
	// Events is closed only here: emit is called from the serve goroutine
	// (the handler) and above, never after this point.
	close(p.events)
}

func (p *Participant) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	select {
	case p.events <- ev:
	default:
		p.mu.Lock()
		p.dropped++
		p.mu.Unlock()
	}
}

// notify wakes every waiter; call without p.mu held.
func (p *Participant) notify() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// wait blocks until cond (called with p.mu held) is true, the stream ends or
// ctx is done.
func (p *Participant) wait(ctx context.Context, cond func() bool) error {
	for {
		p.mu.Lock()
		if cond() {
			p.mu.Unlock()
			return nil
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-p.done:
			p.mu.Lock()
			ok := cond()
			err := p.err
			p.mu.Unlock()
			if ok {
				return nil
			}
			if err == nil {
				err = errors.New("participant closed")
			}
			return fmt.Errorf("simulate: stream ended: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handle gets every incoming stanza that is not a reply to an IQ of ours.
// It never blocks on the network beyond answering IQs addressed to us.
func (p *Participant) handle(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	el, err := readElement(xmlstream.MultiReader(xmlstream.Token(*start), t))
	if err != nil {
		return nil // a stanza we cannot read is skipped, the stream goes on
	}
	switch el.Name.Local {
	case "presence":
		p.handlePresence(el)
	case "iq":
		return p.handleIQ(t, el)
	default:
		p.emit(Event{Kind: EvStanza, Stanza: el})
	}
	return nil
}

func (p *Participant) handleIQ(w xmlstream.TokenWriter, el *Element) error {
	typ := el.AttrValue("type")
	if typ != "get" && typ != "set" {
		p.emit(Event{Kind: EvStanza, Stanza: el})
		return nil
	}
	reply := &Element{Name: xml.Name{Local: "iq"}, Attrs: []xml.Attr{
		{Name: xml.Name{Local: "type"}, Value: "result"},
		{Name: xml.Name{Local: "id"}, Value: el.AttrValue("id")},
	}}
	if from := el.AttrValue("from"); from != "" {
		reply.Attrs = append(reply.Attrs, xml.Attr{Name: xml.Name{Local: "to"}, Value: from})
	}
	switch {
	case typ == "get" && el.Child(nsPing, "ping") != nil:
	case typ == "get" && el.Child(nsDiscoInfo, "query") != nil:
		q := &Element{Name: xml.Name{Space: nsDiscoInfo, Local: "query"}}
		q.Children = append(q.Children, &Element{Name: xml.Name{Space: nsDiscoInfo, Local: "identity"}, Attrs: []xml.Attr{
			{Name: xml.Name{Local: "category"}, Value: "client"},
			{Name: xml.Name{Local: "type"}, Value: "web"},
			{Name: xml.Name{Local: "name"}, Value: "keyfocus simulate"},
		}})
		for _, f := range []string{nsDiscoInfo, nsPing, nsMUC} {
			q.Children = append(q.Children, &Element{Name: xml.Name{Space: nsDiscoInfo, Local: "feature"}, Attrs: []xml.Attr{{Name: xml.Name{Local: "var"}, Value: f}}})
		}
		reply.Children = append(reply.Children, q)
	default:
		reply.Attrs[0].Value = "error"
		reply.Children = append(reply.Children, &Element{Name: xml.Name{Local: "error"},
			Attrs:    []xml.Attr{{Name: xml.Name{Local: "type"}, Value: "cancel"}},
			Children: []*Element{{Name: xml.Name{Space: nsStanzas, Local: "service-unavailable"}}}})
	}
	_, err := xmlstream.Copy(w, reply.tokens())
	return err
}

// splitFrom returns the normalised bare room JID and the nick of a MUC from.
func splitFrom(from string) (room, nick string, ok bool) {
	j, err := jid.Parse(from)
	if err != nil {
		return "", "", false
	}
	return j.Bare().String(), j.Resourcepart(), true
}

func normRoom(room string) (string, error) {
	j, err := jid.Parse(room)
	if err != nil {
		return "", fmt.Errorf("simulate: room %q: %w", room, err)
	}
	if j.Localpart() == "" || j.Resourcepart() != "" {
		return "", fmt.Errorf("simulate: room %q must be a bare room JID (name@conference.domain)", room)
	}
	return j.String(), nil
}

func mucInfo(el *Element) (occ Occupant, codes []int, reason string, destroy *Element) {
	x := el.Child(nsMUCUser, "x")
	if x == nil {
		return occ, nil, "", nil
	}
	if it := x.Child(nsMUCUser, "item"); it != nil {
		occ.JID = it.AttrValue("jid")
		occ.Role = it.AttrValue("role")
		occ.Affiliation = it.AttrValue("affiliation")
		if r := it.Child(nsMUCUser, "reason"); r != nil {
			reason = r.Text
		}
	}
	for _, s := range x.All(nsMUCUser, "status") {
		if c, err := strconv.Atoi(s.AttrValue("code")); err == nil {
			codes = append(codes, c)
		}
	}
	destroy = x.Child(nsMUCUser, "destroy")
	if destroy != nil {
		if r := destroy.Child(nsMUCUser, "reason"); r != nil && reason == "" {
			reason = r.Text
		}
	}
	return occ, codes, reason, destroy
}

func hasCode(codes []int, c int) bool {
	for _, x := range codes {
		if x == c {
			return true
		}
	}
	return false
}

func (p *Participant) handlePresence(el *Element) {
	room, nick, ok := splitFrom(el.AttrValue("from"))
	if !ok || nick == "" {
		return
	}
	typ := el.AttrValue("type")
	occ, codes, reason, destroy := mucInfo(el)
	occ.Nick = nick

	var evs []Event
	p.mu.Lock()
	rs := p.rooms[room]
	if rs == nil {
		p.mu.Unlock()
		return // not a room we asked to join
	}
	self := nick == rs.nick
	switch typ {
	case "error":
		if self && rs.joining {
			rs.joining = false
			rs.joinErr = parseStanzaError(el)
			evs = append(evs, Event{Kind: EvJoinRefused, Room: room, Error: rs.joinErr})
		} else {
			evs = append(evs, Event{Kind: EvStanza, Room: room, Stanza: el})
		}
	case "unavailable":
		if self {
			rs.joined, rs.joining = false, false
			delete(rs.occupants, nick)
			if rs.leaving && destroy == nil && !hasCode(codes, 307) && !hasCode(codes, 321) && !hasCode(codes, 301) {
				rs.left, rs.leaving = true, false
				break
			}
			rem := &Removal{Room: room, Codes: codes, Reason: reason, Destroyed: destroy != nil, Time: time.Now()}
			for _, c := range []int{307, 321, 301, 322, 332} {
				if hasCode(codes, c) {
					rem.Status = c
					break
				}
			}
			rs.removal, rs.leaving = rem, false
			rs.occupants = map[string]Occupant{}
			evs = append(evs, Event{Kind: EvRemoved, Room: room, Status: codes, Reason: reason, Removal: rem})
		} else {
			old, had := rs.occupants[nick]
			delete(rs.occupants, nick)
			if had && occ.JID == "" {
				occ.JID = old.JID
			}
			evs = append(evs, Event{Kind: EvOccupantLeft, Room: room, Occupant: &occ, Status: codes, Reason: reason})
			if rs.joined && rs.focus != "" && strings.HasPrefix(occ.JID, rs.focus+"/") {
				rs.focusLeft = true
				evs = append(evs, Event{Kind: EvFocusLeft, Room: room, Occupant: &occ, Status: codes, Reason: reason})
			}
		}
	case "":
		_, had := rs.occupants[nick]
		rs.occupants[nick] = occ
		if self {
			if rs.joining || !rs.joined {
				rs.selfCodes = codes
			}
			rs.joined, rs.joining = true, false
			rs.self = occ
		} else if !had {
			evs = append(evs, Event{Kind: EvOccupantJoined, Room: room, Occupant: &occ, Status: codes})
		}
	}
	p.mu.Unlock()
	for _, ev := range evs {
		p.emit(ev)
	}
	p.notify()
}

// Joined is the outcome of a successful MUC join.
type Joined struct {
	Room        string
	Nick        string
	Codes       []int // status codes of our self-presence (110; 201 if we created it)
	Role        string
	Affiliation string
	Occupants   []Occupant // everyone in the room at the join, us included
}

// Join enters the room (bare JID) with nick, as lib-jitsi-meet does, and
// waits for the room's answer. A refusal is returned as *StanzaError
// (e.g. Condition "registration-required" for a members-only room).
func (p *Participant) Join(ctx context.Context, room, nick string) (*Joined, error) {
	room, err := normRoom(room)
	if err != nil {
		return nil, err
	}
	if nick == "" {
		return nil, errors.New("simulate: Join needs a nick")
	}
	to := room + "/" + nick
	if _, err := jid.Parse(to); err != nil {
		return nil, fmt.Errorf("simulate: nick %q: %w", nick, err)
	}
	p.mu.Lock()
	rs := &roomState{nick: nick, joining: true, occupants: map[string]Occupant{}, focus: p.focusOf[room]}
	p.rooms[room] = rs
	p.mu.Unlock()

	pres := &Element{Name: xml.Name{Local: "presence"}, Attrs: []xml.Attr{{Name: xml.Name{Local: "to"}, Value: to}},
		Children: []*Element{
			{Name: xml.Name{Space: nsMUC, Local: "x"}},
			{Name: xml.Name{Space: nsNick, Local: "nick"}, Text: nick},
			{Name: xml.Name{Space: "", Local: "stats-id"}, Text: "simulate-" + p.uid[:8]},
			{Name: xml.Name{Space: "http://jabber.org/protocol/caps", Local: "c"}, Attrs: []xml.Attr{
				{Name: xml.Name{Local: "hash"}, Value: "sha-1"},
				{Name: xml.Name{Local: "node"}, Value: "https://jitsi.org/jitsi-meet"},
				{Name: xml.Name{Local: "ver"}, Value: "keyfocus-simulate"},
			}},
		}}
	if err := p.sess.Send(ctx, pres.tokens()); err != nil {
		return nil, fmt.Errorf("simulate: send join presence: %w", err)
	}
	err = p.wait(ctx, func() bool { return !rs.joining })
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("simulate: join %s: %w", to, err)
	}
	if rs.joinErr != nil {
		return nil, rs.joinErr
	}
	if rs.removal != nil {
		return nil, fmt.Errorf("simulate: join %s: removed at once (status %d): %s", to, rs.removal.Status, rs.removal.Reason)
	}
	return &Joined{Room: room, Nick: nick, Codes: rs.selfCodes, Role: rs.self.Role, Affiliation: rs.self.Affiliation,
		Occupants: sortedOccupants(rs.occupants)}, nil
}

func sortedOccupants(m map[string]Occupant) []Occupant {
	out := make([]Occupant, 0, len(m))
	for _, o := range m {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Nick < out[j].Nick })
	return out
}

// Occupants is who is in the room now (us included), sorted by nick; nil if
// we are not in it.
func (p *Participant) Occupants(room string) []Occupant {
	room, err := normRoom(room)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := p.rooms[room]
	if rs == nil || !rs.joined {
		return nil
	}
	return sortedOccupants(rs.occupants)
}

// InRoom reports whether we are in the room now.
func (p *Participant) InRoom(room string) bool {
	room, err := normRoom(room)
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := p.rooms[room]
	return rs != nil && rs.joined
}

// WaitOccupants waits until cond holds for the room's occupants (us included).
func (p *Participant) WaitOccupants(ctx context.Context, room string, cond func([]Occupant) bool) error {
	room, err := normRoom(room)
	if err != nil {
		return err
	}
	return p.wait(ctx, func() bool {
		rs := p.rooms[room]
		if rs == nil {
			return cond(nil)
		}
		return cond(sortedOccupants(rs.occupants))
	})
}

// Removed returns how we were removed from the room, or nil if we were not
// (or rejoined since).
func (p *Participant) Removed(room string) *Removal {
	room, err := normRoom(room)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if rs := p.rooms[room]; rs != nil {
		return rs.removal
	}
	return nil
}

// WaitRemoved waits until we are removed from the room (kicked, membership
// revoked, room destroyed) and says how. Leaving by ourselves is not a removal.
func (p *Participant) WaitRemoved(ctx context.Context, room string) (*Removal, error) {
	room, err := normRoom(room)
	if err != nil {
		return nil, err
	}
	var rem *Removal
	err = p.wait(ctx, func() bool {
		if rs := p.rooms[room]; rs != nil && rs.removal != nil {
			rem = rs.removal
			return true
		}
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("simulate: waiting for removal from %s: %w", room, err)
	}
	return rem, nil
}

// FocusLeft reports whether the focus's occupant (the one whose real JID is
// under the focusjid of the reply that admitted us) left the room while we
// were in it. lib-jitsi-meet ends the conference then.
func (p *Participant) FocusLeft(room string) bool {
	room, err := normRoom(room)
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := p.rooms[room]
	return rs != nil && rs.focusLeft
}

// waitGone waits until we are removed from the room or its focus left.
func (p *Participant) waitGone(ctx context.Context, room string) (rem *Removal, focusLeft bool, err error) {
	room, err = normRoom(room)
	if err != nil {
		return nil, false, err
	}
	err = p.wait(ctx, func() bool {
		rs := p.rooms[room]
		if rs == nil {
			return false
		}
		rem, focusLeft = rs.removal, rs.focusLeft
		return rem != nil || focusLeft
	})
	return rem, focusLeft, err
}

// Leave exits the room and waits for the room to confirm.
func (p *Participant) Leave(ctx context.Context, room string) error {
	room, err := normRoom(room)
	if err != nil {
		return err
	}
	p.mu.Lock()
	rs := p.rooms[room]
	if rs == nil || !rs.joined {
		p.mu.Unlock()
		return nil
	}
	rs.leaving = true
	to := room + "/" + rs.nick
	p.mu.Unlock()
	pres := &Element{Name: xml.Name{Local: "presence"}, Attrs: []xml.Attr{
		{Name: xml.Name{Local: "to"}, Value: to},
		{Name: xml.Name{Local: "type"}, Value: "unavailable"},
	}}
	if err := p.sess.Send(ctx, pres.tokens()); err != nil {
		return fmt.Errorf("simulate: send leave presence: %w", err)
	}
	return p.wait(ctx, func() bool { return !rs.joined })
}

// SendRaw sends one stanza given as XML text, as is (an id is added if
// missing). Replies to IQs sent this way arrive as EvStanza events. The text
// must be well-formed XML: a broken stream would end the session.
func (p *Participant) SendRaw(ctx context.Context, stanza string) error {
	el, err := parseXML(strings.TrimSpace(stanza))
	if err != nil {
		return fmt.Errorf("simulate: SendRaw: %w", err)
	}
	return p.sess.Send(ctx, el.tokens())
}

// SendIQRaw sends an IQ given as XML text and waits for its reply (result or
// error), returned whole. For malformed-request and unknown-payload tests.
func (p *Participant) SendIQRaw(ctx context.Context, iq string) (*Element, error) {
	el, err := parseXML(strings.TrimSpace(iq))
	if err != nil {
		return nil, fmt.Errorf("simulate: SendIQRaw: %w", err)
	}
	if el.Name.Local != "iq" {
		return nil, fmt.Errorf("simulate: SendIQRaw: want an <iq/>, got <%s/>", el.Name.Local)
	}
	return p.sendIQ(ctx, el)
}

func (p *Participant) sendIQ(ctx context.Context, iq *Element) (*Element, error) {
	r, err := p.sess.SendIQ(ctx, iq.tokens())
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, nil // a result/error IQ: no reply expected
	}
	defer r.Close()
	return readElement(r)
}

// DiscoInfo is a disco#info answer.
type DiscoInfo struct {
	Identities []Identity
	Features   []string
}

// Identity is one disco#info identity.
type Identity struct{ Category, Type, Name string }

// HasFeature reports whether var is among the features.
func (d *DiscoInfo) HasFeature(v string) bool {
	for _, f := range d.Features {
		if f == v {
			return true
		}
	}
	return false
}

// Disco sends disco#info to `to` (lib-jitsi-meet asks the focus occupant,
// <focusjid>/focus) and returns the answer; an error reply is *StanzaError.
func (p *Participant) Disco(ctx context.Context, to string) (*DiscoInfo, error) {
	iq := &Element{Name: xml.Name{Local: "iq"}, Attrs: []xml.Attr{
		{Name: xml.Name{Local: "type"}, Value: "get"},
		{Name: xml.Name{Local: "to"}, Value: to},
	}, Children: []*Element{{Name: xml.Name{Space: nsDiscoInfo, Local: "query"}}}}
	reply, err := p.sendIQ(ctx, iq)
	if err != nil {
		return nil, fmt.Errorf("simulate: disco#info to %s: %w", to, err)
	}
	if se := parseStanzaError(reply); reply.AttrValue("type") == "error" || se != nil {
		if se == nil {
			se = &StanzaError{Condition: "undefined-condition"}
		}
		return nil, se
	}
	info := &DiscoInfo{}
	q := reply.Child(nsDiscoInfo, "query")
	for _, id := range q.All(nsDiscoInfo, "identity") {
		info.Identities = append(info.Identities, Identity{id.AttrValue("category"), id.AttrValue("type"), id.AttrValue("name")})
	}
	for _, f := range q.All(nsDiscoInfo, "feature") {
		info.Features = append(info.Features, f.AttrValue("var"))
	}
	return info, nil
}

// Close ends the stream (rooms are left implicitly, as when a browser tab
// closes) and waits briefly for the server to close its side.
func (p *Participant) Close() error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.closing = true
	p.mu.Unlock()
	err := p.sess.Close()
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.conn.Close()
		<-p.done
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("simulate: close: %w", err)
	}
	return nil
}
