package tui

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/keys"
	"github.com/keyfocus/keyfocus/tui/live"
	"github.com/muesli/termenv"
)

// t0 is the tests' "now".
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testSource is a focus.Source on a real focus.Bus: events are applied to
// its state and published under one lock, like the real focus.
type testSource struct {
	mu      sync.Mutex
	st      focus.State
	live    *live.State
	bus     focus.Bus
	actions []string
	fail    error
}

func newTestSource(st focus.State) *testSource {
	return &testSource{st: st, live: live.New(st, "")}
}

func (s *testSource) Watch(buffer int) (focus.State, *focus.Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot(), s.bus.Subscribe(buffer)
}

// snapshot rebuilds a focus.State from the live copy.
func (s *testSource) snapshot() focus.State {
	st := focus.State{Component: s.st.Component, Conn: s.live.Conn, Store: s.live.Store}
	for _, r := range s.live.Rooms {
		st.Rooms = append(st.Rooms, focus.Room{Name: r.Name, Created: r.Created, Members: append([]focus.Member(nil), r.Members...)})
	}
	for i := 0; i < s.live.RejectedLen(); i++ {
		st.Rejected = append(st.Rejected, *s.live.Rejected(i))
	}
	return st
}

func (s *testSource) Publish(ev focus.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live.Apply(ev)
	s.bus.Publish(ev)
}

func (s *testSource) RemoveMember(ctx context.Context, room, nick, reason string) error {
	s.mu.Lock()
	s.actions = append(s.actions, fmt.Sprintf("remove %s %s", room, nick))
	fail := s.fail
	r := s.live.Rooms[room]
	s.mu.Unlock()
	if fail != nil {
		return fail
	}
	if r == nil {
		return fmt.Errorf("no room %s", room)
	}
	for _, m := range r.Members {
		if m.Nick == nick {
			m := m
			s.Publish(focus.Event{Kind: focus.EvMemberRemoved, Time: t0, Room: room, Member: &m, Reason: reason, Actor: "operator"})
			return nil
		}
	}
	return fmt.Errorf("no member %s in %s", nick, room)
}

func (s *testSource) EndRoom(ctx context.Context, room, reason string) error {
	s.mu.Lock()
	s.actions = append(s.actions, "end "+room)
	fail := s.fail
	s.mu.Unlock()
	if fail != nil {
		return fail
	}
	s.Publish(focus.Event{Kind: focus.EvRoomEnded, Time: t0, Room: room, Reason: reason, Actor: "operator"})
	return nil
}

func (s *testSource) Actions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.actions...)
}

const testKeyFile = `# demo keys
admin123=TTND
sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08=Acme Corp; rooms=acme-*,board; expires=2027-03-01; max-participants=25
sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752=Globex; expires=2026-01-31
`

// fixture is a console on a test source and a real key store in a temp dir.
type fixture struct {
	src   *testSource
	store *keys.Store
	path  string
	m     *Model
	// copied is what the console last put on the clipboard.
	copied string
}

func ttndFP() string { return keys.Fingerprint("admin123") }

func sampleState(path string) focus.State {
	acme := keys.HashKey("test")[:8] // the sha256 entry above is the hash of "test"
	ttnd := ttndFP()
	member := func(nick, client, fp string, joined time.Duration) focus.Member {
		return focus.Member{Nick: nick, JID: nick + "@meet.example/web", Role: "participant",
			Joined: t0.Add(-joined), Fingerprint: fp, Client: client}
	}
	return focus.State{
		Component: "focus.meet.example",
		Conn:      focus.ConnState{Connected: true, Since: t0.Add(-time.Hour)},
		Store:     focus.StoreState{Path: path, Keys: 3, LastReload: t0.Add(-10 * time.Minute)},
		Rooms: []focus.Room{
			{Name: "standup@conference.meet.example", Created: t0.Add(-25 * time.Minute), Members: []focus.Member{
				member("alice", "TTND", ttnd, 20*time.Minute),
				member("bob", "TTND", ttnd, 12*time.Minute),
				member("carol", "Acme Corp", acme, 3*time.Minute),
			}},
			{Name: "acme-weekly@conference.meet.example", Created: t0.Add(-2 * time.Hour), Members: []focus.Member{
				member("dave", "Acme Corp", acme, 90*time.Minute),
			}},
			{Name: "admin123=board@conference.meet.example", Created: t0.Add(-30 * time.Second), Members: []focus.Member{
				member("erin", "TTND", ttnd, 20*time.Second),
			}},
		},
		Rejected: []focus.Rejection{
			{Time: t0.Add(-1 * time.Minute), Requester: "guest-7@meet.example/web", Room: "standup@conference.meet.example", Reason: focus.ReasonUnknownKey, Code: 403, Fingerprint: "5e884898"},
			{Time: t0.Add(-2 * time.Minute), Requester: "guest-3@meet.example/web", Room: "board@conference.meet.example", Reason: focus.ReasonNoKey, Code: 401},
			{Time: t0.Add(-5 * time.Minute), Requester: "eve@meet.example/x", Room: "acme-weekly@conference.meet.example", Reason: focus.ReasonUnknownKey, Code: 403, Fingerprint: "deadbeef"},
		},
	}
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.properties")
	if err := os.WriteFile(path, []byte(testKeyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := keys.OpenWith(path, keys.Options{Logger: discardLogger(), Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	src := newTestSource(sampleState("/etc/keyfocus/keys.properties"))
	opts.Source = src
	if opts.Store == nil {
		opts.Store = store
	}
	if opts.Renderer == nil {
		opts.Renderer = asciiRenderer()
	}
	opts.Now = func() time.Time { return t0 }
	opts.Location = time.UTC
	if opts.Copy == nil {
		opts.Copy = func(string) error { return nil }
	}
	opts.Logger = discardLogger()
	return &fixture{src: src, store: store, path: path, m: New(opts)}
}

func asciiRenderer() *lipgloss.Renderer {
	r := lipgloss.NewRenderer(os.Stdout)
	r.SetColorProfile(termenv.Ascii)
	r.SetHasDarkBackground(true)
	return r
}

// start runs Init's watch synchronously and sizes the console.
func (f *fixture) start(t *testing.T, w, h int) {
	t.Helper()
	f.m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	st, sub := f.src.Watch(1024)
	f.m.Update(watchedMsg{st: st, sub: sub})
	t.Cleanup(sub.Close)
}
