package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
)

// source is a focus.Source on a real focus.Bus: events are applied to its
// state and published under one lock, so Watch is atomic like the real focus.
type source struct {
	mu      sync.Mutex
	st      *mirror
	bus     focus.Bus
	watches int
	actions []string
}

func newSource() *source {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	return &source{st: newMirror(focus.State{
		Component: "focus.meet.example",
		Conn:      focus.ConnState{Connected: true, Since: t0},
		Store:     focus.StoreState{Path: "/etc/keyfocus/keys.properties", Keys: 2, LastReload: t0},
		Rooms: []focus.Room{{Name: "standup@conference.meet.example", Created: t0, Members: []focus.Member{
			{Nick: "alice", JID: "a@meet.example/r", Role: "participant", Joined: t0, Fingerprint: "0badf00d", Client: "Acme"},
		}}},
	})}
}

func (s *source) publish(ev focus.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.apply(ev)
	s.bus.Publish(ev)
}

func (s *source) Watch(buffer int) (focus.State, *focus.Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watches++
	return s.st.state(), s.bus.Subscribe(buffer)
}

func (s *source) state() focus.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.state()
}

func (s *source) RemoveMember(ctx context.Context, room, nick, reason string) error {
	s.mu.Lock()
	r := s.st.rooms[room]
	var m *focus.Member
	if r != nil {
		for i := range r.Members {
			if r.Members[i].Nick == nick {
				m = &r.Members[i]
			}
		}
	}
	s.actions = append(s.actions, "remove "+room+" "+nick+" "+reason)
	s.mu.Unlock()
	if m == nil {
		return fmt.Errorf("no member %q in room %q", nick, room)
	}
	s.publish(focus.Event{Kind: focus.EvMemberRemoved, Room: room, Member: m, Reason: reason, Actor: "operator"})
	return nil
}

func (s *source) EndRoom(ctx context.Context, room, reason string) error {
	s.mu.Lock()
	_, ok := s.st.rooms[room]
	s.actions = append(s.actions, "end "+room+" "+reason)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no room %q", room)
	}
	s.publish(focus.Event{Kind: focus.EvRoomEnded, Room: room, Reason: reason, Actor: "operator"})
	return nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve starts a Server for src on a fresh socket and returns its path.
func serve(t testing.TB, src focus.Source, srv *Server) (string, context.CancelFunc) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "focus.sock")
	ln, err := Listen(path, ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if srv == nil {
		srv = &Server{}
	}
	srv.Source = src
	if srv.Logger == nil {
		srv.Logger = quietLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(stop) })
	return path, func() { once.Do(stop) }
}

func dial(t testing.TB, path string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, path, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, sub *focus.Subscription) (focus.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-sub.C:
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return focus.Event{}, false
	}
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func member(nick, fp string) *focus.Member {
	return &focus.Member{Nick: nick, JID: nick + "@meet.example/x", Role: "participant",
		Joined: time.Date(2026, 3, 1, 10, 5, 0, 0, time.UTC), Fingerprint: fp, Client: "Acme"}
}

func TestStateThenEvents(t *testing.T) {
	src := newSource()
	path, _ := serve(t, src, nil)
	c := dial(t, path)

	st, sub := c.Watch(64)
	if !reflect.DeepEqual(st, src.state()) {
		t.Fatalf("client state differs from the focus's:\n got %+v\nwant %+v", st, src.state())
	}
	t1 := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	events := []focus.Event{
		{Kind: focus.EvRoomOpened, Time: t1, Room: "board@conference.meet.example"},
		{Kind: focus.EvMemberJoined, Time: t1, Room: "board@conference.meet.example", Member: member("bob", "12345678")},
		{Kind: focus.EvMemberJoined, Time: t1, Room: "standup@conference.meet.example", Member: member("carol", "12345678")},
		{Kind: focus.EvMemberLeft, Time: t1, Room: "standup@conference.meet.example", Member: member("alice", ""), Reason: "left"},
		{Kind: focus.EvRefused, Time: t1, Rejection: &focus.Rejection{Time: t1, Requester: "x@meet.example/1", Room: "board@conference.meet.example", Reason: focus.ReasonUnknownKey, Code: 403, Fingerprint: "deadbeef"}},
		{Kind: focus.EvAdmitted, Time: t1, Request: &focus.Admission{Time: t1, Requester: "bob@meet.example/x", Room: "board@conference.meet.example", Latency: 7 * time.Millisecond}},
		{Kind: focus.EvStoreFailed, Time: t1, Store: &focus.StoreState{Path: "/etc/keyfocus/keys.properties", Keys: 2, LastError: "/etc/keyfocus/keys.properties:3: bad expires"}},
		{Kind: focus.EvConnection, Time: t1, Conn: &focus.ConnState{Connected: false, Attempt: 2, Since: t1, LastError: "EOF"}},
		{Kind: focus.EvRoomEnded, Time: t1, Room: "standup@conference.meet.example", Reason: "empty"},
	}
	for _, ev := range events {
		src.publish(ev)
	}
	for i, want := range events {
		got, ok := recv(t, sub)
		if !ok {
			t.Fatalf("subscription closed at event %d", i)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	if sub.Dropped() != 0 {
		t.Errorf("dropped %d events", sub.Dropped())
	}
	st2, sub2 := c.Watch(1)
	defer sub2.Close()
	if !reflect.DeepEqual(st2, src.state()) {
		t.Errorf("state after events differs:\n got %+v\nwant %+v", st2, src.state())
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		name    string
		do      func(c *Client) error
		wantErr string
		action  string
	}{
		{"remove member", func(c *Client) error {
			return c.RemoveMember(context.Background(), "standup@conference.meet.example", "alice", "bye")
		}, "", "remove standup@conference.meet.example alice bye"},
		{"remove unknown member", func(c *Client) error {
			return c.RemoveMember(context.Background(), "standup@conference.meet.example", "zed", "")
		}, `no member "zed"`, "remove standup@conference.meet.example zed "},
		{"end room", func(c *Client) error {
			return c.EndRoom(context.Background(), "standup@conference.meet.example", "over")
		}, "", "end standup@conference.meet.example over"},
		{"end unknown room", func(c *Client) error {
			return c.EndRoom(context.Background(), "nope@conference.meet.example", "")
		}, `no room "nope@conference.meet.example"`, "end nope@conference.meet.example "},
		{"end a room-prefix room as the focus shows it", func(c *Client) error {
			return c.EndRoom(context.Background(), "[key 1a2b3c4d]=standup@conference.meet.example", "over")
		}, `no room "[key 1a2b3c4d]=standup@conference.meet.example"`, "end [key 1a2b3c4d]=standup@conference.meet.example over"},
		{"remove from a room-prefix room as the focus shows it", func(c *Client) error {
			return c.RemoveMember(context.Background(), "[key 1a2b3c4d]=standup@conference.meet.example", "alice", "")
		}, `no member "alice"`, "remove [key 1a2b3c4d]=standup@conference.meet.example alice "},
		{"end a room with a malformed key mark", func(c *Client) error {
			return c.EndRoom(context.Background(), "[key 1a2b]=standup@conference.meet.example", "")
		}, "is not a room", ""},
		{"end a room that is not a JID", func(c *Client) error {
			return c.EndRoom(context.Background(), " 0000", "")
		}, "is not a room", ""},
		{"end a room with a resource", func(c *Client) error {
			return c.EndRoom(context.Background(), "r@conference.meet.example/focus", "")
		}, "is not a room", ""},
		{"remove with a blank nick", func(c *Client) error {
			return c.RemoveMember(context.Background(), "standup@conference.meet.example", " ", "")
		}, "needs the member's nick", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource()
			path, _ := serve(t, src, nil)
			c := dial(t, path)
			err := tt.do(c)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			src.mu.Lock()
			got := src.actions
			src.mu.Unlock()
			if tt.action == "" && len(got) != 0 {
				t.Errorf("actions = %q, want none", got)
			}
			if tt.action != "" && (len(got) != 1 || got[0] != tt.action) {
				t.Errorf("actions = %q, want [%q]", got, tt.action)
			}
		})
	}
}

func TestActionRemovesMemberFromClientState(t *testing.T) {
	src := newSource()
	path, _ := serve(t, src, nil)
	c := dial(t, path)
	_, sub := c.Watch(16)
	if err := c.RemoveMember(context.Background(), "standup@conference.meet.example", "alice", "operator"); err != nil {
		t.Fatal(err)
	}
	ev, _ := recv(t, sub)
	if ev.Kind != focus.EvMemberRemoved || ev.Member.Nick != "alice" || ev.Actor != "operator" {
		t.Fatalf("event = %+v", ev)
	}
	st, _ := c.Watch(1)
	if n := len(st.Rooms[0].Members); n != 0 {
		t.Errorf("room still has %d members", n)
	}
}

// A console that connects and never reads must not slow the focus: Publish
// keeps going, and the server drops the console after the write timeout.
func TestHungConsoleIsDropped(t *testing.T) {
	src := newSource()
	logs := &logRecorder{}
	path, _ := serve(t, src, &Server{Buffer: 10000, WriteTimeout: 200 * time.Millisecond, Logger: slog.New(logs)})
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	eventually(t, "the server to watch", func() bool { src.mu.Lock(); defer src.mu.Unlock(); return src.watches == 1 })

	big := strings.Repeat("x", 4096)
	for i := 0; i < 5000; i++ { // ~20 MB: far more than a socket buffer
		src.publish(focus.Event{Kind: focus.EvRoomEnded, Room: "r" + strconv.Itoa(i), Reason: big})
	}
	eventually(t, "the hung console to be dropped", func() bool { return logs.has("console dropped") })
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Errorf("reading the dropped connection to its end: %v", err)
	}
}

// logRecorder is a slog.Handler that keeps messages.
type logRecorder struct {
	mu    sync.Mutex
	msgs  []string
	attrs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		l.attrs = append(l.attrs, a.Key+"="+a.Value.String())
		return true
	})
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }
func (l *logRecorder) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// A console that falls behind gets a fresh state marked resync, then events again.
func TestSlowConsoleIsResynced(t *testing.T) {
	src := newSource()
	path, _ := serve(t, src, &Server{Buffer: 2, WriteTimeout: time.Minute})
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReaderSize(conn, 1<<20)
	first, err := readMessage(rd)
	if err != nil || first.Type != TypeState || first.Proto != Proto || first.Resync {
		t.Fatalf("first message = %+v, %v", first, err)
	}
	big := strings.Repeat("y", 4096)
	for i := 0; i < 2000; i++ {
		src.publish(focus.Event{Kind: focus.EvRoomOpened, Room: fmt.Sprintf("r%04d@c", i), Reason: big})
	}
	src.publish(focus.Event{Kind: focus.EvRoomOpened, Room: "last@c"})
	var resync *message
	for {
		m, err := readMessage(rd)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == TypeState {
			if !m.Resync {
				t.Fatalf("second state without resync")
			}
			resync = &m
		}
		if m.Type == TypeEvent && m.Event.Room == "last@c" {
			break
		}
		if m.Type == TypeState && m.State != nil {
			if _, ok := newMirror(*m.State).rooms["last@c"]; ok {
				break
			}
		}
	}
	if resync == nil {
		t.Fatal("the server never resynchronised the slow console")
	}
}

func TestClientReconnects(t *testing.T) {
	src := newSource()
	path, stop := serve(t, src, nil)
	c := dial(t, path)
	_, sub := c.Watch(64)

	stop()
	// The client reports the lost socket as a connection event.
	ev, ok := recv(t, sub)
	if !ok || ev.Kind != focus.EvConnection || ev.Conn.Connected || ev.Conn.Attempt != 1 ||
		!strings.Contains(ev.Conn.LastError, "control socket") {
		t.Fatalf("after the server stopped: event %+v ok=%v", ev, ok)
	}
	if err := c.EndRoom(context.Background(), "standup@conference.meet.example", ""); !errors.Is(err, ErrDisconnected) {
		t.Errorf("EndRoom while disconnected: %v, want ErrDisconnected", err)
	}

	// A new focus on the same path: the client comes back and closes the old
	// subscription so the console re-watches.
	src2 := newSource()
	src2.publish(focus.Event{Kind: focus.EvRoomOpened, Room: "new@conference.meet.example", Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)})
	ln, err := Listen(path, ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Source: src2, Logger: quietLogger()}).Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	// Reconnect attempts come as events until the old subscription closes;
	// bounded, so a client that never comes back fails rather than hangs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, ok := recv(t, sub)
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the client did not reconnect to the new focus within 30s")
		}
	}
	st, sub2 := c.Watch(4)
	defer sub2.Close()
	if !reflect.DeepEqual(st, src2.state()) {
		t.Errorf("after reconnect:\n got %+v\nwant %+v", st, src2.state())
	}
}

func TestDialErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.sock")
	_, err := Dial(context.Background(), missing)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "keyfocus run --headless --socket") {
		t.Errorf("Dial(missing) = %v", err)
	}

	// Something that is not keyfocus on the other end.
	path := filepath.Join(dir, "other.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			json.NewEncoder(c).Encode(map[string]any{"type": "hello"})
			c.Close()
		}
	}()
	_, err = Dial(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "expected a state message") {
		t.Errorf("Dial(not keyfocus) = %v", err)
	}
}

// TestListen runs under umask 0: a socket bound at its path with the
// umask's mode would be 0777 until the chmod.
// Closing a listener never removes a socket another listener has made at
// the same path since (a focus started again in the same process, as
// TestClientReconnects does): it removes only its own file, and before it
// stops accepting, so whoever waits for Serve to return may listen again.
func TestCloseLeavesANewerSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "focus.sock")
	old, err := Listen(path, ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil { // as if replaced
		t.Fatal(err)
	}
	newer, err := Listen(path, ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer newer.Close()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("the newer socket is gone after the old listener closed: %v", err)
	}
	c.Close()
	if err := newer.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the socket file outlives its listener: %v", err)
	}
}

func TestListen(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0))
	tests := []struct {
		name     string
		prepare  func(t *testing.T, path string)
		cfg      ListenConfig
		wantMode os.FileMode
		wantErr  string
	}{
		{"fresh", nil, ListenConfig{}, 0o600, ""},
		{"own group", nil, ListenConfig{Group: strconv.Itoa(os.Getgid())}, 0o660, ""},
		{"unknown group", nil, ListenConfig{Group: "no-such-group-kf"}, 0, "unknown group"},
		{"stale socket", func(t *testing.T, path string) {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}, ListenConfig{}, 0o600, ""},
		{"socket in use", func(t *testing.T, path string) {
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}, ListenConfig{}, 0, "in use by a running keyfocus"},
		{"regular file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ListenConfig{}, 0, "is not a socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kf.sock")
			if tt.prepare != nil {
				tt.prepare(t, path)
			}
			ln, err := Listen(path, tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tt.wantMode {
				t.Errorf("mode = %v, want %v", got, tt.wantMode)
			}
			if ents, err := os.ReadDir(filepath.Dir(path)); err != nil || len(ents) != 1 {
				t.Errorf("folder holds %v (err %v), want only the socket", ents, err)
			}
			ln.Close()
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("socket left behind after Close: %v", err)
			}
		})
	}
}

// The console attaches from another folder: a relative key file path is
// made absolute by the server, which runs where the focus does.
func TestStorePathMadeAbsolute(t *testing.T) {
	src := newSource()
	src.st.store.Path = "keys.properties"
	path, _ := serve(t, src, nil)
	c := dial(t, path)
	st, sub := c.Watch(4)
	want, _ := filepath.Abs("keys.properties")
	if st.Store.Path != want {
		t.Errorf("state path %q, want %q", st.Store.Path, want)
	}
	src.publish(focus.Event{Kind: focus.EvStoreReloaded, Store: &focus.StoreState{Path: "keys.properties", Keys: 3}})
	ev, _ := recv(t, sub)
	if ev.Store.Path != want {
		t.Errorf("event path %q, want %q", ev.Store.Path, want)
	}
}

// An operator action on a room named in the room-prefix form never logs the key.
func TestActionLogsNoKey(t *testing.T) {
	src := newSource()
	logs := &logRecorder{}
	path, _ := serve(t, src, &Server{Logger: slog.New(logs)})
	c := dial(t, path)
	const room = "kf_secretkey=board@conference.meet.example"
	c.EndRoom(context.Background(), room, "")
	logs.mu.Lock()
	defer logs.mu.Unlock()
	found := false
	for _, a := range logs.attrs {
		if strings.Contains(a, "secretkey") {
			t.Errorf("log attribute holds the key: %q", a)
		}
		if a == "room=•••=board@conference.meet.example" {
			found = true
		}
	}
	if !found {
		t.Errorf("no masked room in the log: %q", logs.attrs)
	}
}
