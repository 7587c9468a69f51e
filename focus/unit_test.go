package focus

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/xmppx"
)

func TestExtractKey(t *testing.T) {
	tests := []struct {
		name, conf, local, sep string
		key                    string
		src                    keySource
		scope                  string
	}{
		{"property first", `<conference xmlns='http://jitsi.org/protocol/focus' token='tok'><property name='clientKey' value='kf_p'/></conference>`, "k=room", "=", "kf_p", keyProperty, "k=room"},
		{"room prefix", `<conference xmlns='http://jitsi.org/protocol/focus' token='tok'/>`, "kf_r=standup", "=", "kf_r", keyRoomPrefix, "standup"},
		{"other separator", `<conference xmlns='http://jitsi.org/protocol/focus'/>`, "kf_r~standup", "~", "kf_r", keyRoomPrefix, "standup"},
		{"token last", `<conference xmlns='http://jitsi.org/protocol/focus' token='tok'/>`, "standup", "=", "tok", keyToken, "standup"},
		{"empty clientKey falls through", `<conference xmlns='http://jitsi.org/protocol/focus'><property name='clientKey' value=''/><property name='openSctp'/></conference>`, "standup", "=", "", keyNone, "standup"},
		{"property without value", `<conference xmlns='http://jitsi.org/protocol/focus'><property name='clientKey'/></conference>`, "standup", "=", "", keyNone, "standup"},
		{"separator first char is no key", `<conference xmlns='http://jitsi.org/protocol/focus'/>`, "=standup", "=", "", keyNone, "=standup"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := xmppx.Parse(tc.conf)
			if err != nil {
				t.Fatal(err)
			}
			key, src, scope := extractKey(conf, tc.local, tc.sep)
			if key != tc.key || src != tc.src || scope != tc.scope {
				t.Errorf("got %q %v %q, want %q %v %q", key, src, scope, tc.key, tc.src, tc.scope)
			}
		})
	}
}

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(3, time.Minute, 10)
	for i := range 3 {
		if w := l.blocked("a@x", t0); w != 0 {
			t.Fatalf("blocked before failure %d", i)
		}
		l.fail("a@x", t0.Add(time.Duration(i)*time.Second))
	}
	if w := l.blocked("a@x", t0.Add(3*time.Second)); w != 57*time.Second {
		t.Errorf("wait = %v, want 57s (until the first failure leaves the window)", w)
	}
	if w := l.blocked("b@x", t0.Add(3*time.Second)); w != 0 {
		t.Errorf("another requester is blocked: %v", w)
	}
	if w := l.blocked("a@x", t0.Add(61*time.Second)); w != 0 {
		t.Errorf("still blocked after the window: %v", w)
	}

	// A flood: many requesters, one failure each, past the global rate.
	l = newLimiter(5, time.Minute, 10)
	flood := false
	for i := range 20 {
		flood = l.fail(strings.Repeat("g", i+1)+"@x", t0.Add(time.Duration(i)*time.Millisecond))
	}
	if !flood {
		t.Fatal("20 failures in 20ms is not a flood at 10/s")
	}
	// It only ever touches failures: nobody is held off before their key
	// is checked because of it (a valid key is admitted whoever is guessing).
	for _, who := range []string{"g@x", "honest@x"} {
		if w := l.blocked(who, t0.Add(30*time.Millisecond)); w != 0 {
			t.Errorf("%s held off by the flood: %v", who, w)
		}
	}
	// It ends a second after the failures stop.
	if l.fail("late@x", t0.Add(3*time.Second)) {
		t.Error("still a flood 3s later")
	}
	// Honest mistakes spread out never trip it.
	l = newLimiter(5, time.Minute, 10)
	for i := range 100 {
		if l.fail("u"+strings.Repeat("x", i)+"@x", t0.Add(time.Duration(i)*200*time.Millisecond)) {
			t.Fatalf("5 failures a second counted as a flood (at %d)", i)
		}
	}
}

func TestLogRoomHidesKeys(t *testing.T) {
	f := &Focus{cfg: Config{RoomKeySeparator: "="}}
	got := f.logRoom("kf_secret=standup@conference.meet.example")
	if strings.Contains(got, "kf_secret") || !strings.HasSuffix(got, "=standup@conference.meet.example") {
		t.Errorf("logRoom = %q", got)
	}
	if again := f.logRoom(got); again != got {
		t.Errorf("logRoom is not idempotent: %q -> %q", got, again)
	}
	if got := f.logRoom("standup@conference.meet.example"); got != "standup@conference.meet.example" {
		t.Errorf("plain room changed: %q", got)
	}
}

func TestSalvageRooms(t *testing.T) {
	data := []byte(`{"version":1,"rooms":[{"room": "a@conference.meet.example","admissions":[{"jid":"x@y"}]},{"room":"b@conference.meet.example","adm`)
	got := salvageRooms(data, "conference.meet.example")
	if strings.Join(got, ",") != "a@conference.meet.example,b@conference.meet.example" {
		t.Errorf("salvaged %v", got)
	}
	ended := []byte(`{"version":1,"rooms":[{"room":"a@conference.meet.example"}],"ended":[{"room":"gone@conference.meet.example","destroy":"x"`)
	if got := salvageRooms(ended, "conference.meet.example"); strings.Join(got, ",") != "a@conference.meet.example" {
		t.Errorf("salvaged %v from a file with ended rooms, want only a@", got)
	}
	if got := salvageRooms([]byte(`{"room":"c@evil.example"}`), "conference.meet.example"); len(got) != 0 {
		t.Errorf("salvaged a room on another host: %v", got)
	}
}

// FuzzDecode: any input either fails to parse or gives an element that
// encodes and parses back to the same XML.
func FuzzDecode(f *testing.F) {
	f.Add(`<iq type='set' to='focus.meet.example' id='a7'><conference xmlns='http://jitsi.org/protocol/focus' room='r@c'><property name='clientKey' value='k'/></conference></iq>`)
	f.Add(`<presence from='r@c/n'><x xmlns='http://jabber.org/protocol/muc#user'><item jid='a@b/c' role='none'/><status code='307'/></x></presence>`)
	f.Add(`<a><b>text<c/>more</b></a>`)
	f.Fuzz(func(t *testing.T, s string) {
		el, err := xmppx.Parse(s)
		if err != nil || el == nil {
			return
		}
		out := el.String()
		back, err := xmppx.Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		if back.String() != out {
			t.Fatalf("round trip changed:\n%s\n%s", out, back.String())
		}
		// Every handler accessor is safe on any element.
		_, _, _ = extractKey(el, "x=y", "=")
		_ = stanzaError(el)
	})
}

func TestRepliesMustComeFromTheAddressee(t *testing.T) {
	c := &conn{pending: map[string]func(*xmppx.Element, error){}, from: map[string]string{}, prefix: "kfX-"}
	iq := xmppx.New("", "iq", "type", "set", "to", "room@conference.meet.example")
	var got []string
	c.track(iq, func(el *xmppx.Element, err error) { got = append(got, el.Get("from")) })
	id := iq.Get("id")
	forged := xmppx.New("", "iq", "type", "error", "id", id, "from", "mallory@meet.example/x")
	real := xmppx.New("", "iq", "type", "result", "id", id, "from", "Room@conference.meet.example")
	c.deliver(forged)
	if len(got) != 0 {
		t.Fatalf("a reply from someone else was taken: %v", got)
	}
	c.deliver(real)
	if len(got) != 1 || got[0] != "Room@conference.meet.example" {
		t.Fatalf("the real reply was not delivered: %v", got)
	}
}

// A removal is remembered while Prosody has not confirmed it, whatever its
// age; once confirmed, for revokedTTL. The bound drops confirmed ones first.
func TestRevokedMemory(t *testing.T) {
	t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newRoom("r@conference.meet.example", "r", t0)
	r.noteRevoked("lost@x", t0)
	r.confirmRevoked("done@x", 0, t0) // never removed: nothing to confirm
	gen := r.noteRevoked("done@x", t0)
	if r.confirmRevoked("done@x", gen+1, t0) {
		t.Error("the answer to another removal confirmed this one")
	}
	r.confirmRevoked("done@x", gen, t0)
	late := t0.Add(revokedTTL + time.Minute)
	if !r.recentlyRevoked("lost@x", late) {
		t.Error("an unconfirmed removal was forgotten after revokedTTL")
	}
	if r.recentlyRevoked("done@x", late) || !r.recentlyRevoked("done@x", t0.Add(revokedTTL)) {
		t.Error("a confirmed removal is not remembered for exactly revokedTTL")
	}
	older := r.revGen["lost@x"]
	newer := r.noteRevoked("lost@x", late) // sent again
	if r.confirmRevoked("lost@x", older, late) || !r.recentlyRevoked("lost@x", late.Add(time.Hour)) {
		t.Error("the answer to an older removal confirmed a newer one")
	}
	r.confirmRevoked("lost@x", newer, late)
	if !r.recentlyRevoked("lost@x", late.Add(revokedTTL)) || r.recentlyRevoked("lost@x", late.Add(revokedTTL+time.Second)) {
		t.Error("the TTL does not start at the confirmation")
	}
	if r.recentlyRevoked("never@x", t0) {
		t.Error("a JID never removed counts as removed")
	}

	// Full: confirmed ones go first (oldest first), pending ones stay.
	r = newRoom("r@conference.meet.example", "r", t0)
	r.noteRevoked("pending@x", t0)
	for i := range maxRevoked - 1 {
		b := fmt.Sprintf("c%d@x", i)
		r.confirmRevoked(b, r.noteRevoked(b, t0), t0.Add(time.Duration(i)*time.Millisecond))
	}
	r.noteRevoked("new@x", t0.Add(time.Second))
	if len(r.revoked) != maxRevoked {
		t.Fatalf("%d remembered, bound %d", len(r.revoked), maxRevoked)
	}
	if !r.recentlyRevoked("pending@x", t0) || !r.recentlyRevoked("new@x", t0) || r.recentlyRevoked("c0@x", t0) || !r.recentlyRevoked("c1@x", t0) {
		t.Error("the bound dropped the wrong removal")
	}
}
