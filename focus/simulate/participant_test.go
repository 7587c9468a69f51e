package simulate

import (
	"context"
	"encoding/xml"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"

	"github.com/keyfocus/keyfocus/focus/internal/bare"
	"github.com/keyfocus/keyfocus/focus/prosody"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(ctx context.Context, t *testing.T, s *prosody.Server) *Participant {
	t.Helper()
	p, err := Dial(ctx, Account{Addr: s.C2SAddr, Domain: s.Domain})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// scripted is a component that hands every IQ it gets to the test and
// answers with whatever reply the test scripted (XML with $ID, $TO, $FROM).
type scripted struct {
	got   chan *Element
	reply string
	sess  *xmpp.Session
}

func startScripted(ctx context.Context, t *testing.T, s *prosody.Server, name, reply string) *scripted {
	t.Helper()
	sc := &scripted{got: make(chan *Element, 16), reply: reply}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.ComponentAddr)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := component.NewSession(ctx, jid.MustParse(name), []byte(s.Secret), conn)
	if err != nil {
		t.Fatal(err)
	}
	sc.sess = sess
	done := make(chan struct{})
	go func() {
		defer close(done)
		sess.Serve(xmpp.HandlerFunc(func(tr xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			el, err := readElement(xmlstream.MultiReader(xmlstream.Token(*start), tr))
			if err != nil || el.Name.Local != "iq" || el.AttrValue("type") == "result" || el.AttrValue("type") == "error" {
				return nil
			}
			sc.got <- el
			r := strings.NewReplacer("$ID", el.AttrValue("id"), "$TO", el.AttrValue("from"), "$FROM", name).Replace(sc.reply)
			out, err := parseXML(r)
			if err != nil {
				t.Errorf("scripted reply: %v", err)
				return nil
			}
			_, err = xmlstream.Copy(tr, out.tokens())
			return err
		}))
	}()
	t.Cleanup(func() { sess.Close(); <-done })
	return sc
}

func TestRequestForms(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithExtraComponents("script.meet.example"))
	ctx := testCtx(t)
	sc := startScripted(ctx, t, s, "script.meet.example",
		`<iq type='result' id='$ID' to='$TO' from='$FROM'><conference xmlns='http://jitsi.org/protocol/focus' room='x@conference.meet.example' ready='true' focusjid='$FROM'><property name='authentication' value='false'/></conference></iq>`)
	p := dial(ctx, t, s)
	const key = "kf_Secret9"
	tests := []struct {
		name     string
		req      Request
		wantRoom string
		check    func(t *testing.T, conf *Element)
	}{
		{"property", Request{Key: key}, "standup@conference.meet.example", func(t *testing.T, c *Element) {
			found := false
			for _, pr := range c.All(nsFocus, "property") {
				if pr.AttrValue("name") == "clientKey" && pr.AttrValue("value") == key {
					found = true
				}
			}
			if !found {
				t.Errorf("no clientKey property in %s", c)
			}
			if _, ok := c.Attr("token"); ok {
				t.Errorf("token attribute sent in property form: %s", c)
			}
		}},
		{"room", Request{Key: key, Form: FormRoom}, key + "=standup@conference.meet.example", func(t *testing.T, c *Element) {
			if strings.Contains(c.String(), "clientKey") {
				t.Errorf("clientKey property sent in room form: %s", c)
			}
		}},
		{"room lowercased with separator", Request{Key: key, Form: FormRoom, Separator: ".", Lowercase: true}, "kf_secret9.standup@conference.meet.example", nil},
		{"token", Request{Key: key, Form: FormToken}, "standup@conference.meet.example", func(t *testing.T, c *Element) {
			if c.AttrValue("token") != key {
				t.Errorf("token attribute %q, want the key", c.AttrValue("token"))
			}
		}},
		{"none", Request{}, "standup@conference.meet.example", func(t *testing.T, c *Element) {
			if strings.Contains(c.String(), key) || strings.Contains(c.String(), "clientKey") {
				t.Errorf("a key was sent: %s", c)
			}
		}},
		{"realistic extras", Request{Key: key}, "standup@conference.meet.example", func(t *testing.T, c *Element) {
			var sctp *Element
			for _, pr := range c.All(nsFocus, "property") {
				if pr.AttrValue("name") == "openSctp" {
					sctp = pr
				}
			}
			if sctp == nil {
				t.Fatalf("no openSctp property: %s", c)
			}
			if _, ok := sctp.Attr("value"); ok {
				t.Errorf("openSctp has a value attribute: %s", sctp)
			}
			if c.AttrValue("machine-uid") == "" {
				t.Errorf("no machine-uid: %s", c)
			}
		}},
		{"no extras", Request{Key: key, NoExtras: true}, "standup@conference.meet.example", func(t *testing.T, c *Element) {
			if n := len(c.All(nsFocus, "property")); n != 1 {
				t.Errorf("%d properties, want only clientKey: %s", n, c)
			}
		}},
		{"omit room", Request{Key: key, OmitRoom: true}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Room = "standup@conference.meet.example"
			tc.req.Focus = "script.meet.example"
			rep, err := p.RequestConference(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Admitted() || rep.FocusJID != "script.meet.example" || rep.Properties["authentication"] != "false" {
				t.Errorf("reply not parsed: %+v", rep)
			}
			got := <-sc.got
			if got.AttrValue("type") != "set" || got.AttrValue("from") != p.JID() {
				t.Errorf("IQ: %s", got)
			}
			conf := got.Child(nsFocus, "conference")
			if conf == nil {
				t.Fatalf("no conference element: %s", got)
			}
			if room := conf.AttrValue("room"); room != tc.wantRoom {
				t.Errorf("room %q, want %q", room, tc.wantRoom)
			}
			if tc.req.RoomJID() != tc.wantRoom && !tc.req.OmitRoom {
				t.Errorf("RoomJID() = %q, want %q", tc.req.RoomJID(), tc.wantRoom)
			}
			if tc.check != nil {
				tc.check(t, conf)
			}
		})
	}
}

func TestReplyErrors(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithExtraComponents("refuse.meet.example", "drain.meet.example", "absent.meet.example"))
	ctx := testCtx(t)
	startScripted(ctx, t, s, "refuse.meet.example", `<iq type='error' id='$ID' to='$TO' from='$FROM'>
		<conference xmlns='http://jitsi.org/protocol/focus' room='standup@conference.meet.example'/>
		<error type='cancel'>
		  <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
		  <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Client Name / Client Key pair mismatch. Please Retry</text>
		  <reservation-error xmlns='http://jitsi.org/protocol/focus' error-code='403'/>
		</error></iq>`)
	startScripted(ctx, t, s, "drain.meet.example", `<iq type='error' id='$ID' to='$TO' from='$FROM'>
		<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
		<graceful-shutdown xmlns='http://jitsi.org/protocol/colibri'/></error></iq>`)
	p := dial(ctx, t, s)
	tests := []struct {
		focus string
		want  StanzaError
	}{
		{"refuse.meet.example", StanzaError{Type: "cancel", Condition: "service-unavailable", Code: 403,
			Text: "Client Name / Client Key pair mismatch. Please Retry"}},
		{"drain.meet.example", StanzaError{Type: "cancel", Condition: "service-unavailable", GracefulShutdown: true}},
		// Configured but not connected: Prosody itself answers.
		{"absent.meet.example", StanzaError{Type: "wait", Condition: "remote-server-timeout", Text: "Component unavailable"}},
	}
	for _, tc := range tests {
		t.Run(tc.focus, func(t *testing.T) {
			rep, err := p.RequestConference(ctx, Request{Room: "standup@conference.meet.example", Key: "wrong", Focus: tc.focus})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Admitted() || rep.Error == nil {
				t.Fatalf("refusal not seen: %+v", rep)
			}
			e := *rep.Error
			if e.Type != tc.want.Type || e.Condition != tc.want.Condition || e.Code != tc.want.Code ||
				e.GracefulShutdown != tc.want.GracefulShutdown || (tc.want.Text != "" && e.Text != tc.want.Text) {
				t.Errorf("error %+v, want %+v", e, tc.want)
			}
		})
	}
}

func TestBareComponent(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithExtraComponents("bare.meet.example"))
	ctx := testCtx(t)
	b, err := bare.Start(ctx, bare.Config{Addr: s.ComponentAddr, Name: "bare.meet.example", Secret: s.Secret})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := dial(ctx, t, s)
	for _, form := range []KeyForm{FormProperty, FormRoom, FormToken, FormNone} {
		rep, err := p.RequestConference(ctx, Request{Room: "r1@" + s.MUC, Key: "k", Form: form, Focus: "bare.meet.example"})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Admitted() || rep.FocusJID != "bare.meet.example" {
			t.Errorf("%s: %+v", form, rep)
		}
	}
	rep, err := p.RequestConference(ctx, Request{OmitRoom: true, Focus: "bare.meet.example"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Error == nil || rep.Error.Condition != "bad-request" {
		t.Errorf("no room: %+v", rep)
	}
	reply, err := p.SendIQRaw(ctx, `<iq type='get' to='bare.meet.example'><query xmlns='urn:example:unknown'/></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	if se := parseStanzaError(reply); se == nil || se.Condition != "service-unavailable" {
		t.Errorf("unknown payload: %s", reply)
	}
	if b.Answered() != 4 {
		t.Errorf("answered %d, want 4", b.Answered())
	}
	info, err := p.Disco(ctx, "bare.meet.example/focus")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Identities) != 1 || info.Identities[0].Category != "component" || !info.HasFeature(nsDiscoInfo) {
		t.Errorf("disco#info: %+v", info)
	}
}

// TestMUC exercises join, occupants, disco to an occupant, kick (307),
// affiliation removal (321), registration-required and destroy against
// Prosody's own MUC, with alice as the room's owner standing in for a focus.
func TestMUC(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithOpenRoomCreation())
	ctx := testCtx(t)
	alice, bob := dial(ctx, t, s), dial(ctx, t, s)
	room := "Standup@" + s.MUC // mixed case: Prosody normalises it
	norm := "standup@" + s.MUC

	j, err := alice.Join(ctx, room, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !hasCode(j.Codes, 201) || j.Affiliation != "owner" || j.Room != norm {
		t.Fatalf("alice's join: %+v", j)
	}
	jb, err := bob.Join(ctx, room, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if hasCode(jb.Codes, 201) || len(jb.Occupants) != 2 || jb.Occupants[0].Nick != "alice" || jb.Occupants[0].JID != alice.JID() {
		t.Fatalf("bob's join: %+v", jb)
	}
	if err := alice.WaitOccupants(ctx, room, func(o []Occupant) bool { return len(o) == 2 }); err != nil {
		t.Fatal(err)
	}
	occ := alice.Occupants(room)
	if occ[1].Nick != "bob" || occ[1].JID != bob.JID() || occ[1].Role != "participant" {
		t.Errorf("alice sees %+v", occ)
	}
	// disco#info to bob's occupant is forwarded to bob, who answers like a client.
	info, err := alice.Disco(ctx, norm+"/bob")
	if err != nil {
		t.Fatal(err)
	}
	if !info.HasFeature(nsDiscoInfo) || len(info.Identities) == 0 || info.Identities[0].Category != "client" {
		t.Errorf("disco: %+v", info)
	}

	admin := func(item string) {
		t.Helper()
		reply, err := alice.SendIQRaw(ctx, `<iq type='set' to='`+norm+`'><query xmlns='http://jabber.org/protocol/muc#admin'>`+item+`</query></iq>`)
		if err != nil {
			t.Fatal(err)
		}
		if reply.AttrValue("type") != "result" {
			t.Fatalf("admin %s: %s", item, reply)
		}
	}
	// Kick with a reason: 307.
	admin(`<item nick='bob' role='none'><reason>key revoked</reason></item>`)
	rem, err := bob.WaitRemoved(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if rem.Status != 307 || rem.Reason != "key revoked" || bob.InRoom(room) {
		t.Errorf("kick: %+v", rem)
	}
	waitEvent(ctx, t, alice, func(ev Event) bool {
		return ev.Kind == EvOccupantLeft && ev.Occupant.Nick == "bob" && hasCode(ev.Status, 307)
	})

	// Members-only with bob a member; then membership revoked: 321, and no way back in.
	reply, err := alice.SendIQRaw(ctx, `<iq type='set' to='`+norm+`'><query xmlns='http://jabber.org/protocol/muc#owner'>
		<x xmlns='jabber:x:data' type='submit'>
		<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>
		<field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>`)
	if err != nil || reply.AttrValue("type") != "result" {
		t.Fatalf("config: %v %s", err, reply)
	}
	admin(`<item affiliation='member' jid='` + bob.Bare() + `'/>`)
	if _, err := bob.Join(ctx, room, "bob"); err != nil {
		t.Fatalf("member rejoin: %v", err)
	}
	if bob.Removed(room) != nil {
		t.Error("Removed still set after rejoining")
	}
	admin(`<item affiliation='none' jid='` + bob.Bare() + `'/>`)
	rem, err = bob.WaitRemoved(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if rem.Status != 321 {
		t.Errorf("affiliation removal: %+v", rem)
	}
	_, err = bob.Join(ctx, room, "bob")
	var se *StanzaError
	if !errors.As(err, &se) || se.Condition != "registration-required" {
		t.Errorf("rejoin without membership: %v, want registration-required", err)
	}

	// Bob back as member, then the room is destroyed.
	admin(`<item affiliation='member' jid='` + bob.Bare() + `'/>`)
	if _, err := bob.Join(ctx, room, "bob"); err != nil {
		t.Fatal(err)
	}
	reply, err = alice.SendIQRaw(ctx, `<iq type='set' to='`+norm+`'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy><reason>meeting over</reason></destroy></query></iq>`)
	if err != nil || reply.AttrValue("type") != "result" {
		t.Fatalf("destroy: %v %s", err, reply)
	}
	rem, err = bob.WaitRemoved(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if !rem.Destroyed || rem.Reason != "meeting over" {
		t.Errorf("destroy: %+v", rem)
	}
}

func TestLeaveIsNotRemoval(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithOpenRoomCreation())
	ctx := testCtx(t)
	alice, bob := dial(ctx, t, s), dial(ctx, t, s)
	room := "leave@" + s.MUC
	if _, err := alice.Join(ctx, room, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctx, room, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := bob.Leave(ctx, room); err != nil {
		t.Fatal(err)
	}
	if bob.InRoom(room) || bob.Removed(room) != nil {
		t.Errorf("after leave: in room %v, removal %+v", bob.InRoom(room), bob.Removed(room))
	}
	if err := alice.WaitOccupants(ctx, room, func(o []Occupant) bool { return len(o) == 1 }); err != nil {
		t.Fatal(err)
	}
	// Closing the stream leaves too.
	if _, err := bob.Join(ctx, room, "bob"); err != nil {
		t.Fatal(err)
	}
	bob.Close()
	if err := alice.WaitOccupants(ctx, room, func(o []Occupant) bool { return len(o) == 1 }); err != nil {
		t.Fatal(err)
	}
	if bob.Err() != nil {
		t.Errorf("clean close reports %v", bob.Err())
	}
}

func TestDisconnectNoticed(t *testing.T) {
	s := prosodytest.Start(t)
	ctx := testCtx(t)
	p := dial(ctx, t, s)
	s.Kill()
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("no disconnect noticed")
	}
	if p.Err() == nil {
		t.Error("Err is nil after the server died")
	}
	var last Event
	for ev := range p.Events() {
		last = ev
	}
	if last.Kind != EvDisconnected {
		t.Errorf("last event %+v, want disconnected", last)
	}
	if _, err := p.RequestConference(ctx, Request{Room: "a@" + s.MUC}); err == nil {
		t.Error("request on a dead stream succeeded")
	}
}

func TestSendRawBadInput(t *testing.T) {
	s := prosodytest.Start(t)
	ctx := testCtx(t)
	p := dial(ctx, t, s)
	for _, in := range []string{"", "<iq", "<iq></message>", "not xml"} {
		if err := p.SendRaw(ctx, in); err == nil {
			t.Errorf("SendRaw(%q) accepted", in)
		}
	}
	if _, err := p.SendIQRaw(ctx, "<message to='x'/>"); err == nil {
		t.Error("SendIQRaw accepted a message")
	}
	// The stream survived: a ping to the server still works.
	reply, err := p.SendIQRaw(ctx, `<iq type='get' to='`+s.Domain+`'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if err != nil || reply.AttrValue("type") != "result" {
		t.Errorf("ping after bad input: %v %s", err, reply)
	}
}

func TestDialErrors(t *testing.T) {
	s := prosodytest.Start(t)
	ctx := testCtx(t)
	tests := []struct {
		name string
		acc  Account
	}{
		{"no addr", Account{Domain: "meet.example"}},
		{"bad domain", Account{Addr: s.C2SAddr, Domain: "a b@"}},
		{"wrong domain", Account{Addr: s.C2SAddr, Domain: "other.example"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := Dial(ctx, tc.acc); err == nil {
				p.Close()
				t.Error("Dial succeeded")
			}
		})
	}
}

func waitEvent(ctx context.Context, t *testing.T, p *Participant, match func(Event) bool) Event {
	t.Helper()
	for {
		select {
		case ev, ok := <-p.Events():
			if !ok {
				t.Fatal("events closed")
			}
			if match(ev) {
				return ev
			}
		case <-ctx.Done():
			t.Fatal("event not seen")
		}
	}
}

// send sends a stanza from the scripted component.
func (sc *scripted) send(ctx context.Context, t *testing.T, stanza string) {
	t.Helper()
	el, err := parseXML(stanza)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.sess.Send(ctx, el.tokens()); err != nil {
		t.Fatal(err)
	}
}

// TestFocusLeft: a component that admits and sits in the room as
// <focusjid>/focus; when it leaves, the participant notices, as
// lib-jitsi-meet does.
func TestFocusLeft(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithOpenRoomCreation(), prosodytest.WithExtraComponents("script.meet.example"))
	ctx := testCtx(t)
	sc := startScripted(ctx, t, s, "script.meet.example",
		`<iq type='result' id='$ID' to='$TO' from='$FROM'><conference xmlns='http://jitsi.org/protocol/focus' room='fl@conference.meet.example' ready='true' focusjid='$FROM'/></iq>`)
	room := "fl@" + s.MUC
	p, other := dial(ctx, t, s), dial(ctx, t, s)
	if _, err := other.Join(ctx, room, "other"); err != nil {
		t.Fatal(err)
	}
	sc.send(ctx, t, `<presence from='script.meet.example/focus' to='`+room+`/focus'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	if err := other.WaitOccupants(ctx, room, func(o []Occupant) bool { return len(o) == 2 }); err != nil {
		t.Fatal(err)
	}
	rep, err := p.RequestConference(ctx, Request{Room: room, Key: "k", Focus: "script.meet.example"})
	if err != nil || !rep.Admitted() {
		t.Fatalf("request: %v %+v", err, rep)
	}
	if _, err := p.Join(ctx, room, "me"); err != nil {
		t.Fatal(err)
	}
	// Another occupant leaving is not the focus leaving.
	if err := other.Leave(ctx, room); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOccupants(ctx, room, func(o []Occupant) bool { return len(o) == 2 }); err != nil {
		t.Fatal(err)
	}
	if p.FocusLeft(room) {
		t.Fatal("FocusLeft after an ordinary occupant left")
	}
	sc.send(ctx, t, `<presence from='script.meet.example/focus' to='`+room+`/focus' type='unavailable'/>`)
	waitEvent(ctx, t, p, func(ev Event) bool { return ev.Kind == EvFocusLeft && ev.Occupant.Nick == "focus" })
	if !p.FocusLeft(room) {
		t.Error("FocusLeft false after the event")
	}
}
