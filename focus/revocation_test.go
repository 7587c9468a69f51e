package focus

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/simulate"
)

// A key revoked while the focus is down is enforced as soon as the focus is
// connected again, ahead of the re-join of every room it manages: the
// removal does not queue behind the join, configuration and re-grants of
// dozens of rooms. The order is taken from Prosody's side: a watcher in
// every room sees, in the order Prosody handled them, the revoked member
// leave and the focus join each room again.
func TestRevocationWhileDownGoesAheadOfRejoin(t *testing.T) {
	const rooms = 50
	e := newEnv(t, baseKeys+"kf_bravo=Bravo\n")
	statePath := filepath.Join(t.TempDir(), "state.json")
	e.startFocus(func(c *Config) { c.StatePath = statePath })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watcher, err := simulate.Dial(ctx, simulate.Account{Addr: e.srv.C2SAddr, Domain: e.srv.Domain, EventBuffer: 8 * rooms})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watcher.Close() })
	names := []string{"victim"}
	for i := range rooms {
		names = append(names, fmt.Sprintf("busy%02d", i))
	}
	for _, n := range names {
		e.admitJoin(watcher, n, "kf_alpha", "watcher")
	}
	bob := e.dial()
	e.admitJoin(bob, "victim", "kf_bravo", "bob")
	e.stopFocus()

	// Forget what the watcher saw so far (the focus leaving every room).
	for drained := false; !drained; {
		select {
		case <-watcher.Events():
		default:
			drained = true
		}
	}
	e.writeKeys(baseKeys) // kf_bravo revoked while no focus runs
	e.reopenStore()
	e.startFocus(func(c *Config) { c.StatePath = statePath })

	victim := e.room("victim")
	rejoined := map[string]bool{}
	removedAfter := -1 // rooms re-joined before bob's removal
	for removedAfter < 0 || len(rejoined) < len(names) {
		select {
		case ev := <-watcher.Events():
			switch {
			case ev.Kind == simulate.EvOccupantJoined && ev.Occupant.Nick == Nick:
				rejoined[ev.Room] = true
			case ev.Kind == simulate.EvOccupantLeft && ev.Room == victim && ev.Occupant.Nick == "bob":
				if !slices.Contains(ev.Status, 321) {
					t.Errorf("bob left %s with status %v, want 321 (membership removed)", victim, ev.Status)
				}
				removedAfter = len(rejoined)
			}
		case <-ctx.Done():
			t.Fatalf("bob removed after %d re-joins; %d of %d rooms re-joined; log:\n%s", removedAfter, len(rejoined), len(names), e.logs.String())
		}
	}
	if removedAfter != 0 {
		t.Errorf("the revocation reached Prosody after the focus had re-joined %d of %d rooms; want it ahead of every re-join", removedAfter, len(names))
	} else {
		t.Logf("bob removed before any of the %d rooms was re-joined", len(names))
	}
	if se := joinErr(t, bob, victim, "bob"); se.Condition != "registration-required" {
		t.Errorf("rejoin after the revocation: %s", se.Condition)
	}
	if watcher.Dropped() > 0 {
		t.Fatalf("the watcher dropped %d events; the order above is incomplete", watcher.Dropped())
	}
	for _, n := range names {
		if !watcher.InRoom(e.room(n)) {
			t.Errorf("watcher (valid key) no longer in %s", n)
		}
	}
}

// The member list read after a re-join (resync) never brings back a member
// the focus has just removed, even while the removal has not reached
// Prosody yet; a member the focus knows nothing about is still taken in as
// an unknown-key admission.
func TestResyncSkipsJustRevoked(t *testing.T) {
	for _, tc := range []struct {
		name        string
		revoked     bool // the focus revoked the member (else: its record is lost)
		wantUnknown bool
	}{
		{"just revoked, removal in flight", true, false},
		{"unknown to the focus", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, baseKeys+"kf_bravo=Bravo\n")
			f := e.startFocus(nil)
			e.admitJoin(e.dial(), "list", "kf_alpha", "alice")
			bob := e.dial()
			e.admitJoin(bob, "list", "kf_bravo", "bob")
			bare := strings.ToLower(bob.Bare())

			// The focus drops bob's admission; Prosody still lists bob as
			// a member (for the revoked case: the removal is still queued).
			f.mu.Lock()
			r := f.rooms[e.room("list")]
			c := f.conn
			delete(r.admitted, bare)
			if tc.revoked {
				r.noteRevoked(bare, f.now())
			}
			f.mu.Unlock()

			f.resync(c, r)

			f.mu.Lock()
			a := r.admitted[bare]
			f.mu.Unlock()
			if got := a != nil; got != tc.wantUnknown {
				t.Errorf("bob recorded as an unknown-key admission: %v, want %v", got, tc.wantUnknown)
			}
			if a != nil && a.KeyID != "" {
				t.Errorf("bob's admission from the member list has key %q, want none", a.KeyID)
			}
			logged := strings.Contains(e.logs.String(), "has members keyfocus has no admission")
			if logged != tc.wantUnknown {
				t.Errorf("unknown-member warning logged: %v, want %v", logged, tc.wantUnknown)
			}
		})
	}
}
