package soak

import (
	"context"
	"sync"
	"time"

	"github.com/keyfocus/keyfocus/focus/simulate"
)

// observer is a client with its own valid key that sits in every room the
// soak uses. The rooms are non-anonymous (whois=anyone), so Prosody tells it
// every occupant's real JID as they come and go: the checker's view of who is
// really in a room, independent of the focus's own bookkeeping. It logs in
// again after Prosody restarts and rejoins any room it is not in.
type observer struct {
	acc   simulate.Account
	focus string
	key   string

	mu    sync.Mutex
	p     *simulate.Participant
	rooms []string
	known map[string]bool
}

func (o *observer) addRooms(rooms ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.known == nil {
		o.known = map[string]bool{}
	}
	for _, r := range rooms {
		if !o.known[r] {
			o.known[r] = true
			o.rooms = append(o.rooms, r)
		}
	}
}

// dropRooms leaves rooms the soak is done with (their load ended a round
// ago), so Prosody's room count stays steady over a long run.
func (o *observer) dropRooms(ctx context.Context, rooms ...string) {
	o.mu.Lock()
	drop := map[string]bool{}
	for _, r := range rooms {
		drop[r] = true
		delete(o.known, r)
	}
	kept := o.rooms[:0]
	for _, r := range o.rooms {
		if !drop[r] {
			kept = append(kept, r)
		}
	}
	o.rooms = kept
	o.mu.Unlock()
	if p := o.live(); p != nil {
		for _, r := range rooms {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_ = p.Leave(lctx, r)
			cancel()
		}
	}
}

// live returns the participant if its stream is up.
func (o *observer) live() *simulate.Participant {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.p == nil {
		return nil
	}
	select {
	case <-o.p.Done():
		return nil
	default:
		return o.p
	}
}

// occupants is who is in room now as Prosody told the observer; ok is false
// when the observer is not in the room (then it cannot tell).
func (o *observer) occupants(room string) ([]simulate.Occupant, bool) {
	p := o.live()
	if p == nil || !p.InRoom(room) {
		return nil, false
	}
	occ := p.Occupants(room)
	return occ, occ != nil
}

func (o *observer) inAll() bool {
	p := o.live()
	if p == nil {
		return false
	}
	o.mu.Lock()
	rooms := append([]string(nil), o.rooms...)
	o.mu.Unlock()
	for _, r := range rooms {
		if !p.InRoom(r) {
			return false
		}
	}
	return true
}

// run keeps the observer logged in and in every room until ctx ends.
func (o *observer) run(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		o.tend(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (o *observer) tend(ctx context.Context) {
	p := o.live()
	if p == nil {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		np, err := simulate.Dial(dctx, o.acc)
		cancel()
		if err != nil {
			return // Prosody is restarting: try again on the next tick
		}
		o.mu.Lock()
		old := o.p
		o.p = np
		o.mu.Unlock()
		if old != nil {
			_ = old.Close()
		}
		p = np
	}
	o.mu.Lock()
	rooms := append([]string(nil), o.rooms...)
	o.mu.Unlock()
	for _, room := range rooms {
		if ctx.Err() != nil || p.InRoom(room) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rep, err := p.RequestConference(rctx, simulate.Request{Room: room, Key: o.key, Focus: o.focus, NoExtras: true})
		if err == nil && rep.Admitted() {
			_, _ = p.Join(rctx, room, observerNick)
		}
		cancel()
	}
}

func (o *observer) close() {
	o.mu.Lock()
	p := o.p
	o.p = nil
	o.mu.Unlock()
	if p != nil {
		_ = p.Close()
	}
}
