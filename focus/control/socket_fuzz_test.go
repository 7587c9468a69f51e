package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
)

// FuzzServerRequests feeds what a console writes to the control socket into a
// real server connection: whatever arrives, the server never panics or
// hangs, every line it sends back is a protocol message, and the focus is
// only asked for actions that name a room (and a nick, to remove a member).
func FuzzServerRequests(f *testing.F) {
	for _, s := range []string{
		`{"type":"remove_member","id":7,"room":"standup@conference.meet.example","nick":"alice","reason":"bye"}`,
		`{"type":"end_room","id":8,"room":"standup@conference.meet.example"}`,
		`{"type":"end_room","id":9}` + "\n" + `{"type":"remove_member","id":10,"room":"x"}`,
		`{"type":"frobnicate","id":1}`,
		`{"type":"remove_member","id":-1,"room":"` + strings.Repeat("r", 300) + `","nick":"\u0000"}`,
		`{"type":"end_room","id":18446744073709551615,"room":"a","reason":"` + strings.Repeat("why ", 100) + `"}`,
		"not json at all",
		`{"type":"end_room","id":1,"room":"standup@conference.meet.example"}` + "\r\n\r\n{}",
		strings.Repeat(`{"type":"end_room","id":2,"room":"nope"}`+"\n", 20),
		`[1,2,3]`,
		`{"type":null,"id":"7"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &recordingSource{source: newSource()}
		srv := &Server{Source: src, Logger: quietLogger(), WriteTimeout: 2 * time.Second, ActionTimeout: 2 * time.Second}
		server, client := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.serveConn(context.Background(), server)
		}()

		// Read everything the server says until it closes or answers the
		// sentinel request sent after the fuzz input.
		const sentinel = 1<<62 + 12345
		lines := make(chan []byte, 1)
		go func() {
			var out [][]byte
			rd := bufio.NewReaderSize(client, 1<<20)
			for {
				line, err := rd.ReadBytes('\n')
				if len(line) > 0 {
					out = append(out, line)
					var m message
					if json.Unmarshal(line, &m) == nil && m.Type == TypeReply && m.ID == sentinel {
						break
					}
				}
				if err != nil {
					break
				}
			}
			lines <- bytes.Join(out, nil)
		}()
		go func() {
			_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = client.Write(append(append([]byte(nil), data...), '\n'))
			_, _ = client.Write([]byte(`{"type":"end_room","id":4611686018427400249,"room":"sentinel@conference.meet.example"}` + "\n"))
		}()
		var got []byte
		select {
		case got = <-lines:
		case <-time.After(10 * time.Second):
			t.Fatalf("the server neither answered nor closed within 10s")
		}
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the server connection did not end after the console hung up")
		}

		sc := bufio.NewScanner(bytes.NewReader(got))
		sc.Buffer(nil, 1<<24)
		first := true
		for sc.Scan() {
			var m message
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("server sent a line that is not JSON: %q", sc.Bytes())
			}
			if first && (m.Type != TypeState || m.Proto != Proto || m.State == nil) {
				t.Fatalf("first message is not the state: %q", sc.Bytes())
			}
			first = false
			switch m.Type {
			case TypeState, TypeEvent, TypeReply:
			default:
				t.Fatalf("server sent an unknown message type %q", m.Type)
			}
		}
		src.mu.Lock()
		defer src.mu.Unlock()
		for _, c := range src.calls {
			if c.room == "" || (c.kind == TypeRemoveMember && c.nick == "") {
				t.Fatalf("%s reached the focus without a room or nick: %+v", c.kind, c)
			}
		}
	})
}

// recordingSource records the operator actions that reach the focus, with
// their arguments as given.
type recordingSource struct {
	*source
	mu    sync.Mutex
	calls []call
}

type call struct{ kind, room, nick string }

func (r *recordingSource) RemoveMember(ctx context.Context, room, nick, reason string) error {
	r.mu.Lock()
	r.calls = append(r.calls, call{TypeRemoveMember, room, nick})
	r.mu.Unlock()
	return r.source.RemoveMember(ctx, room, nick, reason)
}

func (r *recordingSource) EndRoom(ctx context.Context, room, reason string) error {
	r.mu.Lock()
	r.calls = append(r.calls, call{TypeEndRoom, room, ""})
	r.mu.Unlock()
	return r.source.EndRoom(ctx, room, reason)
}

// FuzzClientMessages feeds what a focus might send into the console side of
// the socket (the client's reader and its mirror of the state): it never
// panics, and the mirror stays consistent and bounded.
func FuzzClientMessages(f *testing.F) {
	st := newSource().state()
	stLine, _ := json.Marshal(message{Type: TypeState, Proto: Proto, State: &st})
	ev := func(e focus.Event) string {
		b, _ := json.Marshal(message{Type: TypeEvent, Event: &e})
		return string(b)
	}
	m := &focus.Member{Nick: "bob", JID: "b@meet.example/x", Role: "participant"}
	for _, s := range []string{
		string(stLine),
		string(stLine) + "\n" + ev(focus.Event{Kind: focus.EvMemberJoined, Room: "standup@conference.meet.example", Member: m}),
		ev(focus.Event{Kind: focus.EvMemberLeft, Room: "nowhere", Member: m}),
		ev(focus.Event{Kind: focus.EvRoomEnded, Room: "standup@conference.meet.example"}),
		ev(focus.Event{Kind: focus.EvRefused, Rejection: &focus.Rejection{Room: "r", Reason: focus.ReasonUnknownKey, Code: 403}}),
		ev(focus.Event{Kind: focus.EvMemberJoined, Room: "r"}),
		`{"type":"event","event":{"kind":"member_removed","member":null}}`,
		`{"type":"state","state":null}`,
		`{"type":"reply","id":3,"error":"boom"}`,
		`{"type":"state","proto":99,"state":{"rooms":[{"name":"a"},{"name":"a"}]}}`,
		"\x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Client{log: quietLogger(), pending: make(map[uint64]chan error), mirror: newMirror(focus.State{})}
		err := c.read(bufio.NewReader(bytes.NewReader(data)))
		if err == nil {
			t.Fatalf("read returned nil at the end of the input")
		}
		c.mu.Lock()
		got := c.mirror.state()
		c.mu.Unlock()
		if len(got.Rejected) > maxRejected {
			t.Fatalf("mirror keeps %d rejections, bound %d", len(got.Rejected), maxRejected)
		}
		if !sort.SliceIsSorted(got.Rooms, func(i, j int) bool { return got.Rooms[i].Name < got.Rooms[j].Name }) {
			t.Fatalf("rooms not sorted")
		}
		for i := 1; i < len(got.Rooms); i++ {
			if got.Rooms[i].Name == got.Rooms[i-1].Name {
				t.Fatalf("room %q twice in the state", got.Rooms[i].Name)
			}
		}
		// The state handed out is a copy: changing it changes nothing inside.
		for i := range got.Rooms {
			got.Rooms[i].Name = "changed"
			for j := range got.Rooms[i].Members {
				got.Rooms[i].Members[j].Nick = "changed"
			}
		}
		c.mu.Lock()
		again := c.mirror.state()
		c.mu.Unlock()
		for _, r := range again.Rooms {
			if r.Name == "changed" {
				t.Fatalf("state() shares memory with the mirror")
			}
		}
	})
}
