package focus

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/simulate"
)

const baseKeys = `# test keys
kf_alpha=Alpha Corp
kf_acme=Acme; rooms=acme-*,board
kf_old=Old Client; expires=2001-01-01
kf_one=Solo; max-participants=1
`

func TestAdmitAndJoin(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(nil)
	p := e.dial()

	rep := e.request(p, simulate.Request{Room: e.room("standup"), Key: "kf_alpha"})
	if !rep.Admitted() {
		t.Fatalf("not admitted: %+v", rep.Error)
	}
	if rep.FocusJID != e.srv.Component || rep.Properties["authentication"] != "false" || rep.Room != e.room("standup") {
		t.Errorf("reply = focusjid %q room %q props %v", rep.FocusJID, rep.Room, rep.Properties)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	j, err := p.Join(ctx, e.room("standup"), "alice")
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if j.Affiliation != "member" {
		t.Errorf("affiliation = %q, want member", j.Affiliation)
	}
	var focusOcc bool
	for _, o := range j.Occupants {
		if o.Nick == Nick {
			focusOcc = strings.HasPrefix(o.JID, e.srv.Component+"/")
		}
	}
	if !focusOcc {
		t.Errorf("no focus occupant with nick %q and real JID %s/...: %+v", Nick, e.srv.Component, j.Occupants)
	}
	ev := e.waitEvent("member_joined", func(ev Event) bool { return ev.Kind == EvMemberJoined })
	if ev.Member.Nick != "alice" || ev.Member.Fingerprint == "" || ev.Member.Client != "Alpha Corp" {
		t.Errorf("member = %+v", ev.Member)
	}
	// lib-jitsi-meet asks the focus occupant for disco#info right after joining.
	for _, to := range []string{e.srv.Component + "/" + Nick, e.srv.Component} {
		info, err := p.Disco(ctx, to)
		if err != nil {
			t.Fatalf("disco#info to %s: %v", to, err)
		}
		if !info.HasFeature("http://jabber.org/protocol/disco#info") || len(info.Identities) == 0 ||
			info.Identities[0].Category != "component" || info.Identities[0].Type != "generic" {
			t.Errorf("disco#info to %s = %+v", to, info)
		}
	}
	// The other key sources: the room prefix (lowercased as jitsi-meet does) and the token.
	p2 := e.dial()
	rep = e.request(p2, simulate.Request{Room: e.room("Daily"), Key: "kf_alpha", Form: simulate.FormRoom, Lowercase: true})
	if !rep.Admitted() {
		t.Fatalf("room-prefix form not admitted: %+v", rep.Error)
	}
	rep = e.request(p2, simulate.Request{Room: e.room("standup"), Key: "kf_alpha", Form: simulate.FormToken})
	if !rep.Admitted() {
		t.Fatalf("token form not admitted: %+v", rep.Error)
	}
	if _, err := p2.Join(ctx, e.room("standup"), "bob"); err != nil {
		t.Fatalf("second member join: %v", err)
	}
	st := e.f.State()
	if len(st.Rooms) != 2 {
		t.Errorf("rooms = %+v", st.Rooms)
	}
	// The room-prefix room shows with the key's fingerprint only, and that
	// name works for operator actions.
	for _, r := range st.Rooms {
		if strings.Contains(r.Name, "kf_") {
			t.Errorf("State shows a key in a room name: %s", r.Name)
		}
		if strings.HasPrefix(r.Name, "[key ") {
			if err := e.f.EndRoom(ctx, r.Name, "test"); err != nil {
				t.Errorf("EndRoom(%q): %v", r.Name, err)
			}
		}
	}
	if strings.Contains(e.logs.String(), "kf_alpha") {
		t.Errorf("a client key reached the log:\n%s", e.logs.String())
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(func(c *Config) { c.FailuresPerJID = 100 })
	// A room with one Solo member makes the max-participants row.
	solo := e.dial()
	e.admitJoin(solo, "solo", "kf_one", "solo1")

	tests := []struct {
		name   string
		req    simulate.Request
		code   int
		cond   string
		text   string // exact, or "~substring"
		reason string
	}{
		{"no key", simulate.Request{Room: e.room("r1")}, 401, "service-unavailable", "Client Name / Client Key is not Supplied. Please Retry", ReasonNoKey},
		{"unknown key", simulate.Request{Room: e.room("r1"), Key: "kf_nope"}, 403, "service-unavailable", "Client Name / Client Key pair mismatch. Please Retry", ReasonUnknownKey},
		{"unknown key in room prefix", simulate.Request{Room: e.room("r1"), Key: "kf_nope", Form: simulate.FormRoom}, 403, "service-unavailable", "Client Name / Client Key pair mismatch. Please Retry", ReasonUnknownKey},
		{"expired", simulate.Request{Room: e.room("r1"), Key: "kf_old"}, 403, "service-unavailable", "~expired", ReasonExpired},
		{"room not allowed", simulate.Request{Room: e.room("other"), Key: "kf_acme"}, 403, "service-unavailable", "~acme-*, board", ReasonRoomNotAllow},
		{"room full", simulate.Request{Room: e.room("solo"), Key: "kf_one"}, 403, "service-unavailable", "~limit 1", ReasonRoomFull},
		{"no room", simulate.Request{Key: "kf_alpha", OmitRoom: true}, 0, "bad-request", "", ReasonBadRequest},
		{"room on another host", simulate.Request{Room: "x@elsewhere.example", Key: "kf_alpha"}, 0, "bad-request", "", ReasonBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := e.dial()
			rep := e.request(p, tc.req)
			if rep.Error == nil {
				t.Fatalf("admitted, want refusal")
			}
			if rep.Error.Condition != tc.cond || rep.Error.Code != tc.code {
				t.Errorf("error = %s code %d, want %s code %d", rep.Error.Condition, rep.Error.Code, tc.cond, tc.code)
			}
			if tc.code != 0 && rep.Error.Type != "cancel" {
				t.Errorf("error type = %q, want cancel", rep.Error.Type)
			}
			switch {
			case strings.HasPrefix(tc.text, "~"):
				if !strings.Contains(rep.Error.Text, tc.text[1:]) {
					t.Errorf("text = %q, want it to contain %q", rep.Error.Text, tc.text[1:])
				}
			case tc.text != "":
				if rep.Error.Text != tc.text {
					t.Errorf("text = %q, want %q", rep.Error.Text, tc.text)
				}
			}
			if c := rep.IQ.Child("http://jitsi.org/protocol/focus", "conference"); tc.code != 0 && c == nil {
				t.Errorf("refusal does not echo <conference/>: %s", rep.IQ)
			}
			e.waitEvent("refused "+tc.reason, func(ev Event) bool {
				return ev.Kind == EvRefused && ev.Rejection.Reason == tc.reason && ev.Rejection.Requester == p.JID()
			})
		})
	}
	// The Solo key's slot frees up when its member leaves.
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := solo.Leave(ctx, e.room("solo")); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("solo left", func(ev Event) bool { return ev.Kind == EvMemberLeft && ev.Member.Nick == "solo1" })
	if rep := e.request(e.dial(), simulate.Request{Room: e.room("solo"), Key: "kf_one"}); !rep.Admitted() {
		t.Errorf("Solo key refused after its member left: %+v", rep.Error)
	}
}

func TestRateLimitPerRequester(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(func(c *Config) { c.FailuresPerJID = 3; c.FailuresWindow = time.Hour })
	guesser := e.dial()
	for i := range 3 {
		rep := e.request(guesser, simulate.Request{Room: e.room("r"), Key: fmt.Sprintf("kf_guess%d", i)})
		if rep.Error == nil || rep.Error.Code != 403 {
			t.Fatalf("guess %d: %+v", i, rep.Error)
		}
	}
	// The limit holds even for a valid key: the guesser must not learn it.
	rep := e.request(guesser, simulate.Request{Room: e.room("r"), Key: "kf_alpha"})
	if rep.Error == nil || rep.Error.Code != 429 || !strings.Contains(rep.Error.Text, "Retry in") {
		t.Fatalf("after 3 failures: %+v, want 429 with a retry time", rep.Error)
	}
	// Someone else with a valid key is not affected.
	if rep := e.request(e.dial(), simulate.Request{Room: e.room("r"), Key: "kf_alpha"}); !rep.Admitted() {
		t.Fatalf("valid key of another requester refused: %+v", rep.Error)
	}
}

func TestSkippingTheRequestIsRefused(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(nil)
	e.admitJoin(e.dial(), "locked", "kf_alpha", "alice")
	intruder := e.dial()
	if se := joinErr(t, intruder, e.room("locked"), "mallory"); se.Condition != "registration-required" {
		t.Errorf("intruder into an existing room: %s, want registration-required", se.Condition)
	}
	// Nor can anyone create a room without the focus.
	if se := joinErr(t, intruder, e.room("fresh"), "mallory"); se.Condition == "" {
		t.Errorf("intruder created a room")
	}
}

func TestMalformedAndUnknownIQs(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(nil)
	p := e.dial()
	comp := e.srv.Component
	tests := []struct {
		name, iq, cond string
	}{
		{"unknown payload", `<iq type='get' to='` + comp + `'><query xmlns='urn:example:nothing'/></iq>`, "service-unavailable"},
		{"unknown payload to focus resource", `<iq type='set' to='` + comp + `/focus'><frob xmlns='urn:example:frob'/></iq>`, "service-unavailable"},
		{"version query", `<iq type='get' to='` + comp + `'><query xmlns='jabber:iq:version'/></iq>`, "service-unavailable"},
		{"no payload", `<iq type='get' to='` + comp + `'/>`, "bad-request"},
		{"two payloads", `<iq type='set' to='` + comp + `'><a xmlns='urn:x'/><b xmlns='urn:x'/></iq>`, "bad-request"},
		{"conference without room", `<iq type='set' to='` + comp + `'><conference xmlns='http://jitsi.org/protocol/focus'><property name='clientKey' value='kf_alpha'/></conference></iq>`, "bad-request"},
		{"conference with a full JID room", `<iq type='set' to='` + comp + `'><conference xmlns='http://jitsi.org/protocol/focus' room='a@` + e.srv.MUC + `/x'/></iq>`, "bad-request"},
		{"property without value", `<iq type='set' to='` + comp + `'><conference xmlns='http://jitsi.org/protocol/focus' room='pv@` + e.srv.MUC + `'><property name='openSctp'/></conference></iq>`, "service-unavailable"},
		{"ping", `<iq type='get' to='` + comp + `'><ping xmlns='urn:xmpp:ping'/></iq>`, ""},
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			el, err := p.SendIQRaw(ctx, tc.iq)
			if err != nil && tc.cond == "" {
				t.Fatalf("want a result, got %v", err)
			}
			if tc.cond == "" {
				if el.AttrValue("type") != "result" {
					t.Errorf("reply %s", el)
				}
				return
			}
			var cond string
			if x := el.Child("", "error"); x != nil {
				for _, c := range x.Children {
					if c.Name.Space == nsStanzas && c.Name.Local != "text" {
						cond = c.Name.Local
					}
				}
			}
			if el.AttrValue("type") != "error" || cond != tc.cond {
				t.Errorf("reply %s, want error %s (err %v)", el, tc.cond, err)
			}
		})
	}
	// The stream is still up: a real request still works.
	if rep := e.request(p, simulate.Request{Room: e.room("after"), Key: "kf_alpha"}); !rep.Admitted() {
		t.Fatalf("request after malformed IQs: %+v", rep.Error)
	}
	if !e.f.Connected() {
		t.Fatal("focus lost its connection")
	}
}

func TestRevocationByFileEdit(t *testing.T) {
	e := newEnv(t, baseKeys+"kf_bravo=Bravo\n")
	e.startFocus(nil)
	alice, bob := e.dial(), e.dial()
	e.admitJoin(alice, "meet", "kf_alpha", "alice")
	e.admitJoin(bob, "meet", "kf_bravo", "bob")

	// Revoke Bravo by editing the file as vim does.
	e.writeKeys(baseKeys)
	rm := waitRemoved(t, bob, e.room("meet"))
	if rm.Status != 307 || !strings.Contains(rm.Reason, "revoked") {
		t.Errorf("removal = status %d reason %q, want 307 with a reason", rm.Status, rm.Reason)
	}
	e.waitEvent("member_removed", func(ev Event) bool {
		return ev.Kind == EvMemberRemoved && ev.Member.Nick == "bob" && ev.Actor == "revocation"
	})
	if se := joinErr(t, bob, e.room("meet"), "bob"); se.Condition != "registration-required" {
		t.Errorf("rejoin after revocation: %s, want registration-required", se.Condition)
	}
	if rep := e.request(bob, simulate.Request{Room: e.room("meet"), Key: "kf_bravo"}); rep.Error == nil || rep.Error.Code != 403 {
		t.Errorf("request with the revoked key: %+v", rep.Error)
	}
	if !alice.InRoom(e.room("meet")) {
		t.Error("alice was removed too")
	}

	// Revoking the last key in a room ends the room.
	e.writeKeys(strings.Replace(baseKeys, "kf_alpha=Alpha Corp\n", "", 1))
	waitRemoved(t, alice, e.room("meet"))
	e.waitEvent("alice member_removed", func(ev Event) bool {
		return ev.Kind == EvMemberRemoved && ev.Member.Nick == "alice" && ev.Actor == "revocation"
	})
	e.waitEvent("room_ended", func(ev Event) bool { return ev.Kind == EvRoomEnded && ev.Room == e.room("meet") })
}

func TestFailedReloadKeepsKeys(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(nil)
	alice := e.dial()
	e.admitJoin(alice, "keep", "kf_alpha", "alice")
	e.writeKeys(baseKeys + "this line \\u12 is broken\n")
	e.waitEvent("store_failed", func(ev Event) bool { return ev.Kind == EvStoreFailed && ev.Store.LastError != "" })
	if !alice.InRoom(e.room("keep")) {
		t.Fatal("a failed reload removed someone")
	}
	if rep := e.request(e.dial(), simulate.Request{Room: e.room("keep"), Key: "kf_alpha"}); !rep.Admitted() {
		t.Fatalf("key refused after a failed reload: %+v", rep.Error)
	}
}

func TestExpiryOnTime(t *testing.T) {
	exp := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339)
	e := newEnv(t, baseKeys+"kf_brief=Brief; expires="+exp+"\n")
	e.startFocus(nil)
	p := e.dial()
	e.admitJoin(p, "brief", "kf_brief", "pat")
	rm := waitRemoved(t, p, e.room("brief"))
	if !strings.Contains(rm.Reason, "expired") {
		t.Errorf("removal reason %q", rm.Reason)
	}
	e.waitEvent("room ended after expiry", func(ev Event) bool { return ev.Kind == EvRoomEnded && ev.Room == e.room("brief") })
}

func TestRoomScopes(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(nil)
	p, q := e.dial(), e.dial()
	e.admitJoin(p, "acme-sales", "kf_acme", "p")
	e.admitJoin(q, "board", "kf_acme", "q")
	if rep := e.request(e.dial(), simulate.Request{Room: e.room("globex"), Key: "kf_acme"}); rep.Error == nil || rep.Error.Code != 403 {
		t.Fatalf("room outside the scope: %+v", rep.Error)
	}
	// Narrow the scope: the board member goes, the acme member stays.
	e.writeKeys(strings.Replace(baseKeys, "rooms=acme-*,board", "rooms=acme-*", 1))
	rm := waitRemoved(t, q, e.room("board"))
	if !strings.Contains(rm.Reason, "no longer allowed") {
		t.Errorf("reason %q", rm.Reason)
	}
	if !p.InRoom(e.room("acme-sales")) {
		t.Error("member of a room still in scope was removed")
	}
}

func TestProsodyRestartUnderTheFocus(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(nil)
	e.admitJoin(e.dial(), "survive", "kf_alpha", "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("disconnect", func(ev Event) bool { return ev.Kind == EvConnection && !ev.Conn.Connected })
	e.waitEvent("reconnect", func(ev Event) bool { return ev.Kind == EvConnection && ev.Conn.Connected })
	// The room is back (members-only again) and people can come back.
	p := e.dial()
	rep := e.request(p, simulate.Request{Room: e.room("survive"), Key: "kf_alpha"})
	if !rep.Admitted() {
		t.Fatalf("after the restart: %+v", rep.Error)
	}
	if _, err := p.Join(ctx, e.room("survive"), "alice2"); err != nil {
		t.Fatalf("join after the restart: %v", err)
	}
	if se := joinErr(t, e.dial(), e.room("survive"), "mallory"); se.Condition != "registration-required" {
		t.Errorf("room not members-only after the restart: %s", se.Condition)
	}
	if n := strings.Count(e.logs.String(), "lost the connection to Prosody"); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
}

func TestFocusRestartKeepsAdmissions(t *testing.T) {
	for _, whileDown := range []bool{false, true} {
		t.Run(fmt.Sprintf("revoked-while-down=%v", whileDown), func(t *testing.T) {
			e := newEnv(t, baseKeys+"kf_bravo=Bravo\n")
			statePath := filepath.Join(t.TempDir(), "state.json")
			e.startFocus(func(c *Config) { c.StatePath = statePath })
			alice, bob := e.dial(), e.dial()
			e.admitJoin(alice, "keep", "kf_alpha", "alice")
			e.admitJoin(bob, "keep", "kf_bravo", "bob")
			e.stopFocus()

			data, err := os.ReadFile(statePath)
			if err != nil {
				t.Fatalf("no state file after shutdown: %v", err)
			}
			if strings.Contains(string(data), "kf_") {
				t.Fatalf("state file holds a key:\n%s", data)
			}
			if !bob.InRoom(e.room("keep")) {
				t.Fatal("shutdown removed people from the room")
			}
			if whileDown {
				// Revoked while no focus runs: the next one reads the file anew.
				e.writeKeys(baseKeys)
				e.reopenStore()
			}
			e.startFocus(func(c *Config) { c.StatePath = statePath })
			if !whileDown {
				e.waitEvent("bob seen again", func(ev Event) bool { return ev.Kind == EvMemberJoined && ev.Member.Nick == "bob" })
				e.writeKeys(baseKeys)
			}
			rm := waitRemoved(t, bob, e.room("keep"))
			// Revoked while the focus was down, the membership is removed
			// as soon as it connects, before it is back in the room to
			// kick with a reason (321); revoked with the focus in the
			// room, the kick with the reason goes first (307).
			if want := map[bool]int{false: 307, true: 321}[whileDown]; rm.Status != want {
				t.Errorf("removal status %d, want %d", rm.Status, want)
			}
			if se := joinErr(t, bob, e.room("keep"), "bob"); se.Condition != "registration-required" {
				t.Errorf("rejoin: %s", se.Condition)
			}
			if !alice.InRoom(e.room("keep")) {
				t.Error("alice removed")
			}
		})
	}
}

func TestCorruptStateFile(t *testing.T) {
	e := newEnv(t, baseKeys)
	statePath := filepath.Join(t.TempDir(), "state.json")
	e.startFocus(func(c *Config) { c.StatePath = statePath })
	alice := e.dial()
	e.admitJoin(alice, "lost", "kf_alpha", "alice")
	e.stopFocus()
	// Damage it the way a full disk or a bad copy does: cut it short.
	data, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	cut := strings.Index(string(data), `"admissions"`)
	if cut < 0 {
		t.Fatalf("state file without admissions:\n%s", data)
	}
	if err := os.WriteFile(statePath, data[:cut], 0o600); err != nil {
		t.Fatal(err)
	}

	e.reopenStore()
	f, err := New(e.config(func(c *Config) { c.StatePath = statePath }))
	if err != nil {
		t.Fatal(err)
	}
	_, sub := f.Watch(256)
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	e.sub, e.f = sub, f
	e.waitEvent("state_failed", func(ev Event) bool { return ev.Kind == EvStateFailed && strings.Contains(ev.Reason, statePath) })
	select {
	case <-f.Ready():
	case <-time.After(waitLong):
		t.Fatal("focus did not start with a corrupt state file")
	}
	// The room is found again, with alice in it (key unknown).
	ev := e.waitEvent("alice re-derived", func(ev Event) bool { return ev.Kind == EvMemberJoined && ev.Member.Nick == "alice" })
	if ev.Room != e.room("lost") || ev.Member.Fingerprint != "" {
		t.Errorf("re-derived member %+v in %s", ev.Member, ev.Room)
	}
	if se := joinErr(t, e.dial(), e.room("lost"), "mallory"); se.Condition != "registration-required" {
		t.Errorf("re-derived room not members-only: %s", se.Condition)
	}
	if rep := e.request(e.dial(), simulate.Request{Room: e.room("x"), Key: "kf_alpha"}); !rep.Admitted() {
		t.Fatalf("request: %+v", rep.Error)
	}
	eventually(t, "state file rewritten", func() bool {
		data, _ := os.ReadFile(statePath)
		return strings.Contains(string(data), `"version": 1`) && strings.Contains(string(data), alice.Bare())
	})
}

func TestGracefulShutdownRefusesNewRooms(t *testing.T) {
	e := newEnv(t, baseKeys)
	f := e.startFocus(nil)
	p := e.dial()
	e.admitJoin(p, "old", "kf_alpha", "alice")
	f.mu.Lock()
	f.draining = true
	f.mu.Unlock()
	rep := e.request(e.dial(), simulate.Request{Room: e.room("new"), Key: "kf_alpha"})
	if rep.Error == nil || !rep.Error.GracefulShutdown || rep.Error.Condition != "service-unavailable" {
		t.Fatalf("new room while draining: %+v", rep.Error)
	}
	if rep := e.request(e.dial(), simulate.Request{Room: e.room("old"), Key: "kf_alpha"}); !rep.Admitted() {
		t.Fatalf("existing room while draining: %+v", rep.Error)
	}
	e.stopFocus()
	if !p.InRoom(e.room("old")) {
		t.Error("shutdown ended the room")
	}
}

func TestOperatorActions(t *testing.T) {
	e := newEnv(t, baseKeys)
	f := e.startFocus(nil)
	var src Source = f
	alice, bob := e.dial(), e.dial()
	e.admitJoin(alice, "ops", "kf_alpha", "alice")
	e.admitJoin(bob, "ops", "kf_alpha", "bob")
	e.waitEvent("bob in the focus's view", func(ev Event) bool { return ev.Kind == EvMemberJoined && ev.Member.Nick == "bob" })
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	if err := src.RemoveMember(ctx, e.room("ops"), "nobody", ""); err == nil {
		t.Error("removing an unknown nick succeeded")
	}
	if err := src.RemoveMember(ctx, e.room("ops"), "bob", "Please behave"); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	rm := waitRemoved(t, bob, e.room("ops"))
	if rm.Status != 307 || rm.Reason != "Please behave" {
		t.Errorf("removal = %d %q", rm.Status, rm.Reason)
	}
	e.waitEvent("member_removed by operator", func(ev Event) bool {
		return ev.Kind == EvMemberRemoved && ev.Member.Nick == "bob" && ev.Actor == "operator"
	})
	// Removed, not banned: back with a new request, not without one.
	if se := joinErr(t, bob, e.room("ops"), "bob"); se.Condition != "registration-required" {
		t.Errorf("rejoin without a request: %s", se.Condition)
	}
	e.admitJoin(bob, "ops", "kf_alpha", "bob")

	if err := src.EndRoom(ctx, e.room("ops"), "Meeting over"); err != nil {
		t.Fatalf("EndRoom: %v", err)
	}
	rm = waitRemoved(t, alice, e.room("ops"))
	if !rm.Destroyed {
		t.Errorf("alice's removal is not a destroy: %+v", rm)
	}
	e.waitEvent("room_ended by operator", func(ev Event) bool {
		return ev.Kind == EvRoomEnded && ev.Room == e.room("ops") && ev.Actor == "operator"
	})
	if len(f.State().Rooms) != 0 {
		t.Errorf("rooms after EndRoom: %+v", f.State().Rooms)
	}
	if err := src.EndRoom(ctx, e.room("ops"), ""); err == nil {
		t.Error("ending a room twice succeeded")
	}
}

func TestEmptyRoomsEnd(t *testing.T) {
	e := newEnv(t, baseKeys)
	f := e.startFocus(func(c *Config) { c.EmptyRoomGrace = 300 * time.Millisecond })
	p := e.dial()
	e.admitJoin(p, "brief", "kf_alpha", "pat")
	// Admitted but never joined: that room ends too.
	if rep := e.request(e.dial(), simulate.Request{Room: e.room("ghost"), Key: "kf_alpha"}); !rep.Admitted() {
		t.Fatal(rep.Error)
	}
	e.waitEvent("ghost room ended", func(ev Event) bool {
		return ev.Kind == EvRoomEnded && ev.Room == e.room("ghost") && ev.Actor == "empty"
	})
	if n := len(f.State().Rooms); n != 1 {
		t.Fatalf("rooms = %d, want the occupied one only", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := p.Leave(ctx, e.room("brief")); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("member_left", func(ev Event) bool { return ev.Kind == EvMemberLeft && ev.Reason == "left" })
	e.waitEvent("room ended after the grace", func(ev Event) bool {
		return ev.Kind == EvRoomEnded && ev.Room == e.room("brief") && ev.Actor == "empty"
	})
}

func TestFloodNeverRefusesAValidKey(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(func(c *Config) { c.FailuresPerJID = 1000; c.GlobalFailuresPerSecond = 5 })
	guessers := []*simulate.Participant{e.dial(), e.dial(), e.dial(), e.dial()}
	var wg sync.WaitGroup
	codes := make(chan int, 16)
	for i, g := range guessers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 4 {
				ctx, cancel := context.WithTimeout(context.Background(), waitLong)
				rep, err := g.RequestConference(ctx, simulate.Request{Room: e.room("r"), Key: fmt.Sprintf("kf_guess%d_%d", i, j), Focus: e.srv.Component})
				cancel()
				if err != nil || rep.Error == nil {
					codes <- -1
					continue
				}
				codes <- rep.Error.Code
			}
		}()
	}
	// In the middle of it, someone with a valid key.
	e.waitEvent("a flood refusal", func(ev Event) bool { return ev.Kind == EvRefused && ev.Rejection.Code == 429 })
	if rep := e.request(e.dial(), simulate.Request{Room: e.room("r"), Key: "kf_alpha"}); !rep.Admitted() {
		t.Errorf("valid key refused during a flood: %+v", rep.Error)
	}
	wg.Wait()
	close(codes)
	n429 := 0
	for c := range codes {
		switch c {
		case 429:
			n429++
		case 403:
		default:
			t.Errorf("a guess got %d", c)
		}
	}
	if n429 == 0 {
		t.Error("no guess was answered 429 during the flood")
	}
}

func TestStateSealsKeyRooms(t *testing.T) {
	e := newEnv(t, baseKeys)
	statePath := filepath.Join(t.TempDir(), "state.json")
	e.startFocus(func(c *Config) { c.StatePath = statePath })
	p := e.dial()
	req := simulate.Request{Room: e.room("Daily"), Key: "kf_alpha", Form: simulate.FormRoom, Lowercase: true}
	if rep := e.request(p, req); !rep.Admitted() {
		t.Fatal(rep.Error)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := p.Join(ctx, req.RoomJID(), "pat"); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("pat joined", func(ev Event) bool { return ev.Kind == EvMemberJoined && ev.Member.Nick == "pat" })
	e.stopFocus()
	data, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "kf_alpha") || !strings.Contains(string(data), "sealed:") {
		t.Fatalf("state file does not seal the key's room:\n%s", data)
	}
	e.startFocus(func(c *Config) { c.StatePath = statePath })
	ev := e.waitEvent("pat seen again", func(ev Event) bool { return ev.Kind == EvMemberJoined && ev.Member.Nick == "pat" })
	if ev.Member.Fingerprint == "" || strings.Contains(ev.Room, "kf_") {
		t.Errorf("after the restart: room %q member %+v", ev.Room, ev.Member)
	}
}
