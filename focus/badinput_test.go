package focus

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/simulate"
)

// Bad input against a running focus on a real Prosody: each test shows the
// clear answer and that nothing the focus held was lost.

// stillServing checks that the member admitted before the bad input is still
// in its room (as the focus and Prosody see it) and that a new requester with
// a valid key is admitted.
func (e *testEnv) stillServing(member *simulate.Participant, room, nick string) {
	e.t.Helper()
	if !e.f.Connected() {
		e.t.Fatalf("the focus lost its connection to Prosody; log:\n%s", tailOf(e.logs.String(), 20))
	}
	if !member.InRoom(e.room(room)) {
		e.t.Errorf("the member admitted before the bad input is no longer in %s", room)
	}
	found := false
	for _, r := range e.f.State().Rooms {
		for _, m := range r.Members {
			if r.Name == e.room(room) && m.Nick == nick {
				found = true
			}
		}
	}
	if !found {
		e.t.Errorf("the focus forgot member %s of %s", nick, room)
	}
	if rep := e.request(e.dial(), simulate.Request{Room: e.room("after-" + room), Key: "kf_alpha"}); !rep.Admitted() {
		e.t.Errorf("a valid key is refused after the bad input: %+v", rep.Error)
	}
}

func tailOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// countCodes sends n conference requests with wrong keys from p, conc at a
// time, and counts the reservation-error codes of the answers.
func countCodes(t *testing.T, e *testEnv, ps []*simulate.Participant, n, conc int) (codes map[int]int, texts map[int]string, rate float64) {
	t.Helper()
	var mu sync.Mutex
	codes, texts = map[int]int{}, map[int]string{}
	var next atomic.Int64
	var wg sync.WaitGroup
	begin := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				p := ps[(w+i)%len(ps)]
				ctx, cancel := context.WithTimeout(context.Background(), waitLong)
				rep, err := p.RequestConference(ctx, simulate.Request{Room: e.room("vault"), Key: simulate.InvalidKey(), Focus: e.srv.Component, NoExtras: true})
				cancel()
				mu.Lock()
				switch {
				case err != nil:
					codes[-1]++
					texts[-1] = err.Error()
				case rep.Error == nil:
					codes[0]++ // admitted: must never happen
				default:
					codes[rep.Error.Code]++
					texts[rep.Error.Code] = rep.Error.Text
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return codes, texts, float64(n) / time.Since(begin).Seconds()
}

func TestBruteForceFromOneRequester(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(nil) // default limits: 5 failures a minute per requester
	member := e.dial()
	e.admitJoin(member, "standup", "kf_alpha", "alice")

	guesser := e.dial()
	const n = 3000
	codes, texts, rate := countCodes(t, e, []*simulate.Participant{guesser}, n, 32)
	t.Logf("one requester: %d wrong keys at %.0f/s: answers by code %v", n, rate, codes)
	if codes[-1] > 0 {
		t.Errorf("%d requests got no answer (%s)", codes[-1], texts[-1])
	}
	if codes[0] > 0 {
		t.Fatalf("%d wrong keys were admitted", codes[0])
	}
	if codes[403] != DefaultFailuresPerJID || codes[429] != n-DefaultFailuresPerJID {
		t.Errorf("codes = %v, want %d x 403 then 429 for the rest", codes, DefaultFailuresPerJID)
	}
	if !strings.Contains(texts[429], "Too many failed attempts") || !strings.Contains(texts[429], "Retry in") {
		t.Errorf("429 text = %q: want it to say why and when to retry", texts[429])
	}
	// The guesser learns nothing even with the right key.
	if rep := e.request(guesser, simulate.Request{Room: e.room("vault"), Key: "kf_alpha"}); rep.Error == nil || rep.Error.Code != 429 {
		t.Errorf("guesser with a valid key: %+v, want 429", rep.Error)
	}
	// The log is not flooded: refusals are logged at most 20 a second.
	if got := strings.Count(e.logs.String(), `"msg":"refused"`); got > 20*(int(float64(n)/rate)+2) {
		t.Errorf("%d refusals logged for %d requests: the log is flooded", got, n)
	}
	if got := len(e.f.State().Rejected); got > maxRejected {
		t.Errorf("%d rejections kept, bound is %d", got, maxRejected)
	}
	e.stillServing(member, "standup", "alice")
}

func TestBruteForceFromManyRequesters(t *testing.T) {
	e := newEnv(t, baseKeys)
	// Many requesters, each under the per-requester limit: only the overall
	// flood limit can stop them.
	e.startFocus(func(c *Config) { c.FailuresPerJID = 1000; c.GlobalFailuresPerSecond = 100 })
	member := e.dial()
	e.admitJoin(member, "standup", "kf_alpha", "alice")

	var guessers []*simulate.Participant
	for range 40 {
		guessers = append(guessers, e.dial())
	}
	// The flood runs in the background while valid keys arrive.
	stop := make(chan struct{})
	var flood sync.WaitGroup
	var sent, limited atomic.Int64
	for _, g := range guessers {
		flood.Add(1)
		go func() {
			defer flood.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitLong)
				rep, err := g.RequestConference(ctx, simulate.Request{Room: e.room("vault"), Key: simulate.InvalidKey(), Focus: e.srv.Component, NoExtras: true})
				cancel()
				sent.Add(1)
				if err == nil && rep.Error != nil && rep.Error.Code == 429 {
					limited.Add(1)
				}
				if err == nil && rep.Error == nil {
					t.Errorf("a wrong key was admitted")
				}
			}
		}()
	}
	begin := time.Now()
	// The flood limit answers 429 (after a tarpit, so each guesser waits).
	eventually(t, "the flood limit answers 429", func() bool { return limited.Load() >= int64(len(guessers)) })
	// During the flood: fresh requesters with valid keys are admitted, in
	// every key form.
	for i, form := range []simulate.KeyForm{simulate.FormProperty, simulate.FormRoom, simulate.FormToken} {
		p := e.dial()
		rep := e.request(p, simulate.Request{Room: e.room(fmt.Sprintf("meeting%d", i)), Key: "kf_alpha", Form: form, Lowercase: true})
		if !rep.Admitted() {
			t.Errorf("valid key (%s form) refused during the flood: %+v", form, rep.Error)
		}
	}
	close(stop)
	flood.Wait()
	el := time.Since(begin)
	t.Logf("many requesters: %d wrong keys from %d requesters in %v (%.0f/s), %d answered 429",
		sent.Load(), len(guessers), el.Round(time.Millisecond), float64(sent.Load())/el.Seconds(), limited.Load())
	e.stillServing(member, "standup", "alice")
}

// rawIQ sends an IQ as XML text and returns the reply.
func (e *testEnv) rawIQ(p *simulate.Participant, iq string) (*simulate.Element, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	return p.SendIQRaw(ctx, iq)
}

func condition(el *simulate.Element) string {
	if el == nil {
		return "<no reply>"
	}
	if x := el.Child("", "error"); x != nil {
		for _, c := range x.Children {
			if c.Name.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.Name.Local != "text" {
				return c.Name.Local
			}
		}
	}
	return el.AttrValue("type")
}

func TestOversizedAndNestedStanzas(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(nil)
	member := e.dial()
	e.admitJoin(member, "standup", "kf_alpha", "alice")
	comp := e.srv.Component
	room := e.room("big")
	conf := func(inner string) string {
		return `<iq type='set' to='` + comp + `'><conference xmlns='http://jitsi.org/protocol/focus' room='` + room + `'>` +
			`<property name='clientKey' value='kf_alpha'/>` + inner + `</conference></iq>`
	}
	tests := []struct {
		name string
		iq   string
		want string // condition of the focus's answer
	}{
		{"deeply nested (2000 levels)", conf(strings.Repeat("<x>", 2000) + strings.Repeat("</x>", 2000)), "bad-request"},
		{"very wide (2000 children)", conf(strings.Repeat("<x/>", 2000)), "bad-request"},
		{"200 KB of text", conf("<property name='blob'>" + strings.Repeat("A", 200<<10) + "</property>"), "bad-request"},
		{"100 KB attribute", conf("<property name='blob' value='" + strings.Repeat("B", 100<<10) + "'/>"), "result"},
		{"400 properties without value", conf(strings.Repeat("<property name='openSctp'/>", 400)), "result"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := e.dial()
			rep, err := e.rawIQ(p, tc.iq)
			if err != nil {
				t.Fatalf("no answer: %v (sender stream: %v)", err, p.Err())
			}
			if got := condition(rep); got != tc.want {
				t.Errorf("answer = %s, want %s", got, tc.want)
			}
			e.stillServing(member, "standup", "alice")
		})
	}

	// Past Prosody's own stanza limit (256 KiB on c2s) Prosody ends the
	// SENDER's stream; the focus never sees it and keeps serving.
	t.Run("past Prosody's stanza limit", func(t *testing.T) {
		p := e.dial()
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := p.SendRaw(ctx, conf("<property name='blob'>"+strings.Repeat("C", 600<<10)+"</property>")); err != nil {
			t.Fatalf("send: %v", err)
		}
		select {
		case <-p.Done():
		case <-ctx.Done():
			t.Fatalf("the sender's stream is still open after a 600 KiB stanza")
		}
		t.Logf("sender's stream ended: %v", p.Err())
		e.stillServing(member, "standup", "alice")
	})
}

func TestHostileRoomNames(t *testing.T) {
	e := newEnv(t, baseKeys)
	e.startFocus(func(c *Config) { c.FailuresPerJID = 1000 })
	member := e.dial()
	e.admitJoin(member, "standup", "kf_alpha", "alice")
	e.admitJoin(e.dial(), "solo", "kf_one", "solo1") // kf_one allows one participant
	muc := e.srv.MUC
	long := strings.Repeat("r", 1023) // the longest local part a JID may have
	tests := []struct {
		name  string
		req   simulate.Request
		code  int    // reservation-error code; 0 with cond "" means admitted
		cond  string // error condition when refused
		join  bool   // join the admitted room too
		check func(t *testing.T, rep *simulate.Reply)
	}{
		// Unicode: jitsi-meet sends room names percent-encoded; other
		// clients may send UTF-8. What an XMPP address can carry (PRECIS) is
		// admitted; the rest is refused as a bad request, not crashed on.
		{name: "unicode", req: simulate.Request{Room: "café-会議-встреча@" + muc, Key: "kf_alpha"}, join: true},
		{name: "unicode as jitsi-meet sends it", req: simulate.Request{Room: "caf%c3%a9-%f0%9f%8e%89@" + muc, Key: "kf_alpha"}, join: true},
		{name: "right-to-left", req: simulate.Request{Room: "اجتماع@" + muc, Key: "kf_alpha"}, join: true},
		{name: "emoji", req: simulate.Request{Room: "party-🎉@" + muc, Key: "kf_alpha"}, cond: "bad-request"},
		{name: "right-to-left mixed with left-to-right", req: simulate.Request{Room: "اجتماع-meeting@" + muc, Key: "kf_alpha"}, cond: "bad-request"},
		// Names Prosody folds onto another room (nodeprep maps these to
		// nothing, or to the same letters) must not open a second focus room
		// for one Prosody room: that would bypass max-participants.
		{name: "zero-width joiner", req: simulate.Request{Room: "so\u200dlo@" + muc, Key: "kf_one"}, cond: "bad-request"},
		{name: "soft hyphen", req: simulate.Request{Room: "so\u00adlo@" + muc, Key: "kf_one"}, cond: "bad-request"},
		{name: "variation selector", req: simulate.Request{Room: "so\ufe0flo@" + muc, Key: "kf_one"}, cond: "bad-request"},
		{name: "fullwidth letters fold onto a full room", req: simulate.Request{Room: "ｓｏｌｏ@" + muc, Key: "kf_one"}, code: 403, cond: "service-unavailable"},
		{name: "upper case folds onto a full room", req: simulate.Request{Room: "SOLO@" + muc, Key: "kf_one"}, code: 403, cond: "service-unavailable"},
		{name: "1023-byte local part", req: simulate.Request{Room: long + "@" + muc, Key: "kf_alpha"}, join: true},
		{name: "1024-byte local part", req: simulate.Request{Room: long + "x@" + muc, Key: "kf_alpha"}, cond: "bad-request"},
		{name: "empty local part", req: simulate.Request{Room: "@" + muc, Key: "kf_alpha"}, cond: "bad-request"},
		{name: "domain only", req: simulate.Request{Room: muc, Key: "kf_alpha"}, cond: "bad-request"},
		{name: "with a resource", req: simulate.Request{Room: "r@" + muc + "/nick", Key: "kf_alpha"}, cond: "bad-request"},
		{name: "two @", req: simulate.Request{Room: "a@b@" + muc, Key: "kf_alpha"}, cond: "bad-request"},
		{name: "another MUC", req: simulate.Request{Room: "r@conference.evil.example", Key: "kf_alpha"}, cond: "bad-request"},
		// "=" games against the room-key separator.
		{name: "separator first: no key", req: simulate.Request{Room: "=standup@" + muc, NoExtras: true}, code: 401, cond: "service-unavailable"},
		{name: "separator only", req: simulate.Request{Room: "=@" + muc, NoExtras: true}, code: 401, cond: "service-unavailable"},
		{name: "key and empty name", req: simulate.Request{Room: "kf_alpha=@" + muc, NoExtras: true}, join: true},
		{name: "double separator", req: simulate.Request{Room: "kf_alpha==x@" + muc, NoExtras: true}, join: true},
		{name: "scoped key, name smuggled after a second separator", req: simulate.Request{Room: "kf_acme=board=evil@" + muc, NoExtras: true}, code: 403, cond: "service-unavailable"},
		{name: "scoped key, allowed name", req: simulate.Request{Room: "kf_acme=acme-1@" + muc, NoExtras: true}, join: true},
		{name: "scoped property key, room names another key", req: simulate.Request{Room: "kf_alpha=board@" + muc, Key: "kf_acme", NoExtras: true}, code: 403, cond: "service-unavailable"},
		{name: "wrong key in the prefix", req: simulate.Request{Room: "kf_nope=standup@" + muc, NoExtras: true}, code: 403, cond: "service-unavailable"},
		{name: "key upper-cased in the prefix", req: simulate.Request{Room: "KF_ALPHA=daily@" + muc, NoExtras: true}, join: true},
		{name: "expired key in the prefix", req: simulate.Request{Room: "kf_old=x@" + muc, NoExtras: true}, code: 403, cond: "service-unavailable"},
		{name: "separator in a property key", req: simulate.Request{Room: "plain@" + muc, Key: "kf_alpha=x", NoExtras: true}, code: 403, cond: "service-unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Focus = e.srv.Component
			p := e.dial()
			rep := e.request(p, tc.req)
			switch {
			case tc.cond == "":
				if !rep.Admitted() {
					t.Fatalf("refused: %+v", rep.Error)
				}
				if tc.join {
					ctx, cancel := context.WithTimeout(context.Background(), waitLong)
					defer cancel()
					if _, err := p.Join(ctx, tc.req.RoomJID(), "guest"); err != nil {
						t.Errorf("join after admission: %v", err)
					}
				}
			case rep.Error == nil:
				t.Fatalf("admitted, want %s %d", tc.cond, tc.code)
			default:
				if rep.Error.Condition != tc.cond || rep.Error.Code != tc.code {
					t.Errorf("refusal = %s code %d (%q), want %s code %d", rep.Error.Condition, rep.Error.Code, rep.Error.Text, tc.cond, tc.code)
				}
				if rep.Error.Text == "" {
					t.Errorf("refusal without a text for the user")
				}
			}
		})
	}
	// No key from a room name reached the log or the events.
	for _, k := range []string{"kf_alpha", "kf_acme", "kf_nope", "kf_old", "KF_ALPHA"} {
		if strings.Contains(e.logs.String(), k) {
			t.Errorf("key %s appears in the log", k)
		}
	}
	for _, r := range e.f.State().Rejected {
		if strings.Contains(r.Room, "kf_") || strings.Contains(strings.ToLower(r.Room), "kf_") {
			t.Errorf("rejection shows a key in its room: %q", r.Room)
		}
	}
	for _, r := range e.f.State().Rooms {
		if strings.Contains(strings.ToLower(r.Name), "kf_nope") || strings.Contains(r.Name, "evil") {
			t.Errorf("a refused request left a room behind: %q", r.Name)
		}
	}
	e.stillServing(member, "standup", "alice")
}
