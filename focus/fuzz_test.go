package focus

import (
	"bytes"
	"encoding/xml"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"

	"github.com/keyfocus/keyfocus/focus/xmppx"
	"github.com/keyfocus/keyfocus/keys"
)

// fuzzKeys are the keys of the fuzz targets' key file. The fuzzer may find
// them (they are in the seeds): admissions are part of what is fuzzed.
const fuzzKeys = `kf_alpha=Alpha
kf_acme=Acme; rooms=acme-*,board
kf_old=Old; expires=2001-01-01
kf_one=Solo; max-participants=1
`

// fuzzFocus is a focus that is not connected: requests for new rooms are
// answered as during a shutdown (no room setup can start), and one room,
// standup, is ready with one member, so admissions to an existing room, the
// limits and presence handling all run. Its conn is closed: nothing is sent.
func fuzzFocus(t testing.TB, store *keys.Store, logs io.Writer) (*Focus, *conn) {
	f, err := New(Config{
		Addr: "127.0.0.1:1", Component: "focus.meet.example", MUC: "conference.meet.example", Secret: "s",
		Store: store, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		EmptyRoomGrace: time.Hour, Now: func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{pending: map[string]func(*xmppEl, error){}, closed: true, self: "focus.meet.example"}
	f.draining = true
	r := newRoom("standup@conference.meet.example", "standup", f.now())
	r.ready, r.joined = true, true
	e := store.Snapshot().Lookup("kf_one")
	r.admitted["solo@meet.example"] = &admission{JID: "solo@meet.example", KeyID: e.ID, Fingerprint: e.Fingerprint, Client: e.Name, Scope: "standup", joined: true}
	r.members["solo"] = &Member{Nick: "solo", JID: "solo@meet.example/r1", Role: "participant", KeyID: e.ID, Fingerprint: e.Fingerprint, Client: e.Name}
	f.rooms[r.jid] = r
	f.conn = c
	return f, c
}

// decodeStanza reads the first stanza of data as the focus's read loop does:
// inside a jabber:component:accept stream, decoded whole, marked malformed
// when it is too complex (conn.serve does the same).
func decodeStanza(data []byte) *xmppEl {
	stream := `<stream:stream xmlns='` + component.NSAccept + `' xmlns:stream='http://etherx.jabber.org/streams'>`
	d := xml.NewDecoder(io.MultiReader(strings.NewReader(stream), bytes.NewReader(data), strings.NewReader(`</stream:stream>`)))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return nil
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				depth++
				continue
			}
			el, err := xmppx.Decode(t.Copy(), d)
			if err != nil || el == nil {
				el = &xmppx.Element{Name: t.Name, Attr: t.Attr}
				el.SetAttr("kf-malformed", "1")
			}
			return el
		case xml.EndElement:
			return nil
		}
	}
}

// FuzzStanza sends one stanza, as Prosody would route it to the component,
// through the focus's IQ and presence handling.
func FuzzStanza(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzStanza (requests of 2016 and 2025 clients,
	// every key form and refusal, disco, ping, unknown and doubled payloads,
	// nesting, occupant and self presence).
	dir := f.TempDir()
	path := filepath.Join(dir, "keys.properties")
	if err := os.WriteFile(path, []byte(fuzzKeys), 0o600); err != nil {
		f.Fatal(err)
	}
	store, err := keys.OpenWith(path, keys.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		el := decodeStanza(data)
		if el == nil || (el.Name.Space != component.NSAccept && el.Name.Space != "") {
			return // not a stanza of this stream: the read loop skips it too
		}
		if from := el.Get("from"); from != "" {
			if _, err := jid.Parse(from); err != nil {
				return // Prosody never routes a stanza from an invalid address
			}
		}
		var logs bytes.Buffer
		foc, c := fuzzFocus(t, store, &logs)
		switch el.Name.Local {
		case "iq":
			out := foc.handleIQ(c, el)
			typ := el.Get("type")
			if (typ == "get" || typ == "set") && el.Get("id") != "" && el.Get("from") != "" {
				if len(out) == 0 {
					t.Fatalf("an IQ %s got no answer:\n%s", typ, data)
				}
				last := out[len(out)-1]
				if last.Name.Local != "iq" || last.Get("id") != el.Get("id") || last.Get("to") != el.Get("from") ||
					(last.Get("type") != "result" && last.Get("type") != "error") {
					t.Fatalf("answer does not answer the IQ: %s\nto:\n%s", last, data)
				}
				if last.Get("type") == "result" {
					checkAdmission(t, foc, el, last)
				}
			} else if len(out) > 0 {
				t.Fatalf("an IQ that cannot be answered got an answer: %s", out[0])
			}
		case "presence":
			if el.Get("from") == "" {
				return // Prosody stamps every presence with its sender
			}
			foc.handlePresence(c, el)
		}
		st := foc.State()
		for _, r := range st.Rooms {
			for _, m := range r.Members {
				if m.Nick == "" {
					t.Fatalf("member without a nick in %s", r.Name)
				}
			}
		}
		if len(st.Rejected) > maxRejected {
			t.Fatalf("%d rejections kept", len(st.Rejected))
		}
		// No client key reaches the log, unless the sender put it where it is
		// not a key (its own address, or the room name outside the prefix).
		for _, k := range []string{"kf_alpha", "kf_acme", "kf_old", "kf_one"} {
			if !bytes.Contains(bytes.ToLower(logs.Bytes()), []byte(k)) {
				continue
			}
			room := el.Child(nsFocus, "conference").Get("room")
			if strings.Contains(strings.ToLower(el.Get("from")), k) ||
				strings.Contains(strings.ToLower(foc.logRoom(strings.ToLower(room))), k) ||
				strings.Contains(strings.ToLower(foc.logRoom(room)), k) ||
				strings.Contains(strings.ToLower(el.Get("to")), k) {
				continue
			}
			if el.Name.Local == "presence" {
				continue // presence of occupants is logged with its room, never parsed for keys
			}
			t.Fatalf("key %s reached the log:\n%s\nfrom:\n%s", k, logs.String(), data)
		}
	})
}

// checkAdmission: a result to a conference request means a valid key for
// that room, and the requester is now admitted there.
func checkAdmission(t *testing.T, foc *Focus, iq, res *xmppEl) {
	t.Helper()
	conf := iq.First()
	if conf == nil || conf.Name.Space != nsFocus || conf.Name.Local != "conference" {
		return // ping, disco
	}
	rc := res.Child(nsFocus, "conference")
	if rc.Get("ready") != "true" || rc.Get("focusjid") != "focus.meet.example" {
		t.Fatalf("admission reply without ready/focusjid: %s", res)
	}
	foc.mu.Lock()
	defer foc.mu.Unlock()
	r := foc.rooms[rc.Get("room")]
	if r == nil {
		t.Fatalf("admitted to %q, which the focus does not manage", rc.Get("room"))
	}
	bare := bareOf(iq.Get("from"))
	a := r.admitted[bare]
	if a == nil {
		t.Fatalf("admitted %s without recording the admission", bare)
	}
	e := foc.snap.ByID(a.KeyID)
	if e == nil || e.Expired(foc.now()) || !e.AllowsRoom(a.Scope) {
		t.Fatalf("admitted %s with key %+v to scope %q: not valid", bare, e, a.Scope)
	}
}
