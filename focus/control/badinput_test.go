package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
)

// rawConsole is a console speaking the wire format by hand.
type rawConsole struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func rawDial(t *testing.T, path string) *rawConsole {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawConsole{t: t, c: c, rd: bufio.NewReaderSize(c, 1<<20)}
	if m, err := rc.read(); err != nil || m.Type != TypeState {
		t.Fatalf("first message: %+v, %v", m, err)
	}
	return rc
}

func (rc *rawConsole) read() (message, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := rc.rd.ReadBytes('\n')
	if err != nil {
		return message{}, err
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		rc.t.Fatalf("server sent a line that is not JSON: %q", line)
	}
	return m, nil
}

// closedByServer waits until the server hangs up on rc.
func (rc *rawConsole) closedByServer() {
	rc.t.Helper()
	for {
		_, err := rc.read()
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return
		}
		rc.t.Fatalf("want the server to close the connection, got %v", err)
	}
}

// Bad input on the control socket: the offending console is dropped with a
// log line, other consoles and the focus are not touched.
func TestControlSocketBadInput(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{"line past the request limit (64 KiB)", `{"type":"end_room","id":1,"room":"` + strings.Repeat("r", 1<<20) + `"}` + "\n"},
		{"not JSON", "hello focus\n"},
		{"JSON of the wrong shape", `{"type":["end_room"],"id":"one"}` + "\n"},
		{"binary", "\x00\x01\x02\xff\xfe\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource()
			path, _ := serve(t, src, nil)
			good := dial(t, path)
			_, sub := good.Watch(64)
			bad := rawDial(t, path)
			if _, err := bad.c.Write([]byte(tc.input)); err != nil && !errors.Is(err, net.ErrClosed) {
				t.Logf("write: %v (the server may hang up mid-line)", err)
			}
			bad.closedByServer()
			// The other console still gets events and can act.
			src.publish(focus.Event{Kind: focus.EvRoomOpened, Room: "after@conference.meet.example"})
			select {
			case ev := <-sub.C:
				if ev.Room != "after@conference.meet.example" {
					t.Errorf("event = %+v", ev)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the other console got no event after the bad input")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := good.EndRoom(ctx, "standup@conference.meet.example", "done"); err != nil {
				t.Errorf("the other console's action: %v", err)
			}
			src.mu.Lock()
			for _, a := range src.actions {
				if !strings.HasPrefix(a, "end standup@") {
					t.Errorf("the bad input reached the focus as %q", a)
				}
			}
			src.mu.Unlock()
		})
	}
}

// A console that sends a thousand actions at once gets an answer for each:
// done, or "too many actions in flight, try again"; never a hang.
func TestControlSocketActionFlood(t *testing.T) {
	src := newSource()
	path, _ := serve(t, src, nil)
	rc := rawDial(t, path)
	const n = 1000
	go func() {
		w := bufio.NewWriter(rc.c)
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, `{"type":"end_room","id":%d,"room":"nowhere-%d@conference.meet.example"}`+"\n", i, i)
		}
		_ = w.Flush()
	}()
	replies, busy := map[uint64]bool{}, 0
	for len(replies) < n {
		m, err := rc.read()
		if err != nil {
			t.Fatalf("after %d replies: %v", len(replies), err)
		}
		if m.Type != TypeReply {
			continue
		}
		if replies[m.ID] {
			t.Fatalf("two replies for id %d", m.ID)
		}
		replies[m.ID] = true
		if strings.Contains(m.Error, "too many actions in flight") {
			busy++
		} else if !strings.Contains(m.Error, "no room") {
			t.Errorf("reply %d: %q", m.ID, m.Error)
		}
	}
	t.Logf("%d actions: %d refused as too many in flight", n, busy)
}
