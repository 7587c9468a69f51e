package focus

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/prosody"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
	"github.com/keyfocus/keyfocus/focus/simulate"
	"github.com/keyfocus/keyfocus/keys"
)

// testEnv is a real Prosody, a key file and (once started) a focus.
type testEnv struct {
	t        testing.TB
	srv      *prosody.Server
	keysPath string
	store    *keys.Store
	f        *Focus
	sub      *Subscription
	stop     context.CancelFunc
	done     chan error
	logs     *lockedBuffer
}

type lockedBuffer struct {
	b atomic.Pointer[strings.Builder]
	w chan struct{}
}

func newLockedBuffer() *lockedBuffer {
	l := &lockedBuffer{w: make(chan struct{}, 1)}
	l.b.Store(&strings.Builder{})
	l.w <- struct{}{}
	return l
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	<-l.w
	defer func() { l.w <- struct{}{} }()
	return l.b.Load().Write(p)
}

func (l *lockedBuffer) String() string {
	<-l.w
	defer func() { l.w <- struct{}{} }()
	return l.b.Load().String()
}

const waitLong = 10 * time.Second

func newEnv(t testing.TB, keyFile string) *testEnv {
	t.Helper()
	srv := prosodytest.Start(t)
	dir := t.TempDir()
	e := &testEnv{t: t, srv: srv, keysPath: filepath.Join(dir, "keys.properties"), logs: newLockedBuffer()}
	if err := os.WriteFile(e.keysPath, []byte(keyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	e.reopenStore()
	return e
}

// reopenStore opens the key file again, as a newly started keyfocus does.
func (e *testEnv) reopenStore() {
	e.t.Helper()
	st, err := keys.OpenWith(e.keysPath, keys.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	e.store = st
}

func (e *testEnv) config(mod func(*Config)) Config {
	cfg := Config{
		Addr: e.srv.ComponentAddr, Component: e.srv.Component, MUC: e.srv.MUC, Secret: e.srv.Secret,
		Store:          e.store,
		Logger:         slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		BackoffMin:     20 * time.Millisecond,
		BackoffMax:     200 * time.Millisecond,
		EmptyRoomGrace: time.Minute,
		DrainTimeout:   2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

// startFocus runs a focus and waits until it is ready.
func (e *testEnv) startFocus(mod func(*Config)) *Focus {
	e.t.Helper()
	f, err := New(e.config(mod))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.f, e.stop, e.done = f, cancel, make(chan error, 1)
	_, e.sub = f.Watch(4096)
	go func() { e.done <- f.Run(ctx) }()
	e.t.Cleanup(e.stopFocus)
	e.t.Cleanup(func() {
		if e.t.Failed() {
			e.t.Logf("focus log:\n%s", e.logs.String())
		}
	})
	select {
	case <-f.Ready():
	case err := <-e.done:
		e.t.Fatalf("focus ended before it was ready: %v", err)
	case <-time.After(waitLong):
		e.t.Fatalf("focus not ready after %v; log:\n%s", waitLong, e.logs.String())
	}
	return f
}

func (e *testEnv) stopFocus() {
	if e.stop == nil {
		return
	}
	e.stop()
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("focus Run: %v", err)
		}
	case <-time.After(waitLong):
		e.t.Errorf("focus did not stop within %v", waitLong)
	}
	e.stop = nil
	e.sub.Close()
	if key := os.Getenv("KEYFOCUS_TEST_DUMP_LOG"); key != "" {
		e.t.Log(e.logs.String())
	}
}

func (e *testEnv) dial() *simulate.Participant {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	p, err := simulate.Dial(ctx, simulate.Account{Addr: e.srv.C2SAddr, Domain: e.srv.Domain})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = p.Close() })
	return p
}

func (e *testEnv) room(name string) string { return name + "@" + e.srv.MUC }

func (e *testEnv) request(p *simulate.Participant, req simulate.Request) *simulate.Reply {
	e.t.Helper()
	if req.Focus == "" {
		req.Focus = e.srv.Component
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	rep, err := p.RequestConference(ctx, req)
	if err != nil {
		e.t.Fatalf("conference request: %v", err)
	}
	return rep
}

// admitJoin requests the room with key and joins it with nick.
func (e *testEnv) admitJoin(p *simulate.Participant, room, key, nick string) {
	e.t.Helper()
	rep := e.request(p, simulate.Request{Room: e.room(room), Key: key})
	if !rep.Admitted() {
		e.t.Fatalf("request for %s not admitted: %+v", room, rep.Error)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := p.Join(ctx, e.room(room), nick); err != nil {
		e.t.Fatalf("join %s after admission: %v", room, err)
	}
	// Wait until the focus has seen the presence too.
	if e.f != nil {
		eventually(e.t, nick+" in the focus's state", func() bool {
			for _, r := range e.f.State().Rooms {
				for _, m := range r.Members {
					if r.Name == e.room(room) && m.Nick == nick {
						return true
					}
				}
			}
			return false
		})
	}
}

// writeKeys replaces the key file the way vim does: write a new file, rename
// it over the old one.
func (e *testEnv) writeKeys(content string) {
	e.t.Helper()
	tmp := e.keysPath + ".swp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.keysPath); err != nil {
		e.t.Fatal(err)
	}
}

// waitEvent waits for an event of the focus that matches.
func (e *testEnv) waitEvent(what string, match func(Event) bool) Event {
	e.t.Helper()
	timeout := time.After(waitLong)
	for {
		select {
		case ev, ok := <-e.sub.C:
			if !ok {
				e.t.Fatalf("subscription closed while waiting for %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-timeout:
			e.t.Fatalf("no %s within %v; log:\n%s", what, waitLong, e.logs.String())
		}
	}
}

func waitRemoved(t testing.TB, p *simulate.Participant, room string) *simulate.Removal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	rm, err := p.WaitRemoved(ctx, room)
	if err != nil {
		t.Fatalf("not removed from %s: %v", room, err)
	}
	return rm
}

func joinErr(t testing.TB, p *simulate.Participant, room, nick string) *simulate.StanzaError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, err := p.Join(ctx, room, nick)
	var se *simulate.StanzaError
	if !errors.As(err, &se) {
		t.Fatalf("join %s: want a refusal, got %v", room, err)
	}
	return se
}

// eventually waits (polling, with a deadline) until cond holds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitLong)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: not within %v", what, waitLong)
		}
	}
}
