package focus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/simulate"
	"github.com/keyfocus/keyfocus/keys"
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
	watcher, names := e.watchRooms(ctx, rooms)
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
	start := time.Now()
	e.startFocus(func(c *Config) { c.StatePath = statePath })

	victim := e.room("victim")
	rejoined := map[string]bool{}
	removedAfter := -1 // rooms re-joined before bob's removal
	var removedAt, rejoinedAt time.Duration
	for removedAfter < 0 || len(rejoined) < len(names) {
		select {
		case ev := <-watcher.Events():
			switch {
			case ev.Kind == simulate.EvOccupantJoined && ev.Occupant.Nick == Nick:
				rejoined[ev.Room] = true
				rejoinedAt = time.Since(start)
			case ev.Kind == simulate.EvOccupantLeft && ev.Room == victim && ev.Occupant.Nick == "bob":
				if !slices.Contains(ev.Status, 321) {
					t.Errorf("bob left %s with status %v, want 321 (membership removed)", victim, ev.Status)
				}
				removedAfter = len(rejoined)
				removedAt = time.Since(start)
			}
		case <-ctx.Done():
			t.Fatalf("bob removed after %d re-joins; %d of %d rooms re-joined; log:\n%s", removedAfter, len(rejoined), len(names), e.logs.String())
		}
	}
	if removedAfter != 0 {
		t.Errorf("the revocation reached Prosody after the focus had re-joined %d of %d rooms; want it ahead of every re-join", removedAfter, len(names))
	} else {
		// For the record, not asserted: timings depend on the machine.
		t.Logf("bob removed before any of the %d rooms was re-joined: removed %v after the focus started, every room re-joined after %v",
			len(names), removedAt.Round(time.Millisecond), rejoinedAt.Round(time.Millisecond))
	}
	// The focus never saw bob on this run, so what it reports is the
	// membership it withdrew, with the key that had granted it.
	ev := e.waitEvent("membership_revoked for bob", func(ev Event) bool { return ev.Kind == EvMembershipRevoked })
	if m := ev.Member; ev.Room != victim || m == nil || m.JID != bareOf(bob.JID()) || m.Fingerprint != keys.Fingerprint("kf_bravo") ||
		m.Client != "Bravo" || m.Nick != "" || ev.Reason == "" || ev.Actor != "revocation" {
		t.Errorf("membership_revoked event: %+v, member %+v", ev, ev.Member)
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
// the focus has removed, even when Prosody still lists them (the removal on
// its way, or lost with the connection it was written on): the removal is
// sent again and takes them out. A member the focus knows nothing about is
// still taken in as an unknown-key admission.
func TestResyncNeverTakesBackRevoked(t *testing.T) {
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
			bob, bare := e.aliceAndBob("list")

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
			if tc.revoked {
				// Prosody still held bob's membership: the removal went out again.
				if rm := waitRemoved(t, bob, e.room("list")); rm.Status != 321 {
					t.Errorf("bob removed with status %d, want 321", rm.Status)
				}
				if se := joinErr(t, bob, e.room("list"), "bob"); se.Condition != "registration-required" {
					t.Errorf("bob joins again after the removal: %s", se.Condition)
				}
			}
		})
	}
}

// A removal Prosody has not confirmed survives a restart of the focus in the
// state file: the focus that starts next sends it again when Prosody still
// lists the person as a member, instead of taking them back as a member with
// an unknown key.
func TestUnconfirmedRemovalSurvivesRestart(t *testing.T) {
	e := newEnv(t, baseKeys+"kf_bravo=Bravo\n")
	statePath := filepath.Join(t.TempDir(), "state.json")
	f := e.startFocus(func(c *Config) { c.StatePath = statePath })
	bob, bare := e.aliceAndBob("lost")

	// The removal is written and lost: the focus has dropped the admission,
	// Prosody never saw the change.
	f.mu.Lock()
	r := f.rooms[e.room("lost")]
	delete(r.admitted, bare)
	r.noteRevoked(bare, f.now())
	f.markDirty()
	f.mu.Unlock()
	eventually(t, "the pending removal in the state file", func() bool {
		b, _ := os.ReadFile(statePath)
		return strings.Contains(string(b), `"removing"`) && strings.Contains(string(b), bare)
	})
	e.stopFocus()

	e.startFocus(func(c *Config) { c.StatePath = statePath })
	if rm := waitRemoved(t, bob, e.room("lost")); rm.Status != 321 {
		t.Errorf("bob removed with status %d, want 321", rm.Status)
	}
	if se := joinErr(t, bob, e.room("lost"), "bob"); se.Condition != "registration-required" {
		t.Errorf("bob joins again: %s", se.Condition)
	}
	if strings.Contains(e.logs.String(), "has members keyfocus has no admission") {
		t.Error("bob was taken back as an unknown-key member")
	}
	// Once Prosody confirmed it, the state file no longer lists it.
	eventually(t, "the confirmed removal out of the state file", func() bool {
		b, _ := os.ReadFile(statePath)
		return !strings.Contains(string(b), `"removing"`)
	})
}

// A revocation that ends its room (the revoked person was the last member)
// written on a connection that has just died: the room is forgotten at once,
// but its removal and its end are not. Both are sent again after the
// reconnect, so the person is out, the room is gone, and nobody comes back.
func TestLostRemovalOfAnEndedRoom(t *testing.T) {
	e := newEnv(t, baseKeys+"kf_bravo=Bravo\n")
	f := e.startFocus(nil)
	bob := e.dial()
	e.admitJoin(bob, "solo", "kf_bravo", "bob")
	revoked := snapshotOf(t, baseKeys)

	// Under one hold of the lock: the connection dies, then the key is
	// revoked, so the removal is written on the dead connection.
	f.mu.Lock()
	_ = f.conn.netConn.Close()
	f.snap = revoked
	f.enforceLocked("revocation")
	_, still := f.rooms[e.room("solo")]
	f.mu.Unlock()
	if still {
		t.Fatal("the room did not end with its last member's revocation")
	}
	if rm := waitRemoved(t, bob, e.room("solo")); rm.Status != 321 && !rm.Destroyed {
		t.Errorf("bob removed with status %d, want 321 or the room destroyed", rm.Status)
	}
	// The room's end, lost too, is sent again: the room is gone, and only
	// the focus may open it again.
	eventually(t, "the removal and the room's end confirmed", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.endedRemovals) == 0 && len(f.endedDestroys) == 0
	})
	if se := joinErr(t, bob, e.room("solo"), "bob"); se.Condition != "not-allowed" {
		t.Errorf("bob joins again: %s, want not-allowed (no such room, and only the focus creates rooms)", se.Condition)
	}
}

// A person whose removal is still pending asks again with a valid key. The
// removal that resync sends again may reach Prosody after the new grant; its
// answer then grants the membership once more, so whoever is told "ready"
// is a member.
func TestReadmittedDuringPendingRemovalKeepsMembership(t *testing.T) {
	e := newEnv(t, baseKeys+"kf_bravo=Bravo\nkf_charlie=Charlie\n")
	f := e.startFocus(nil)
	bob, bare := e.aliceAndBob("race")
	room := e.room("race")
	for i := range 12 {
		f.mu.Lock()
		r := f.rooms[room]
		c := f.conn
		delete(r.admitted, bare)
		r.noteRevoked(bare, f.now()) // written and lost
		// Hold the lock so that the resync and bob's request both wait for
		// it and then run in either order.
		done := make(chan struct{})
		go func() { f.resync(c, r); close(done) }()
		repc := make(chan *simulate.Reply, 1)
		go func() {
			key := []string{"kf_charlie", "kf_bravo"}[i%2]
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			rep, _ := bob.RequestConference(ctx, simulate.Request{Focus: e.srv.Component, Room: room, Key: key})
			repc <- rep
		}()
		time.Sleep(50 * time.Millisecond)
		f.mu.Unlock()
		if rep := <-repc; rep == nil || !rep.Admitted() {
			t.Fatalf("round %d: not admitted: %+v", i, rep)
		}
		<-done
		// Every answer is in once a ping comes back (Prosody answers in order).
		eventually(t, "bob a member again", func() bool { return memberList(t, f, room)[bare] })
	}
}

// watchRooms puts a watcher (kf_alpha) in "victim" and in rooms other rooms
// ("busy000", ...), and returns it and the rooms' names.
func (e *testEnv) watchRooms(ctx context.Context, rooms int) (*simulate.Participant, []string) {
	e.t.Helper()
	watcher, err := simulate.Dial(ctx, simulate.Account{Addr: e.srv.C2SAddr, Domain: e.srv.Domain, EventBuffer: 8 * rooms})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = watcher.Close() })
	names := []string{"victim"}
	for i := range rooms {
		names = append(names, fmt.Sprintf("busy%03d", i))
	}
	for _, n := range names {
		e.admitJoin(watcher, n, "kf_alpha", "watcher")
	}
	return watcher, names
}

// aliceAndBob admits and joins alice (kf_alpha) and bob (kf_bravo) to room,
// and returns bob and his bare JID.
func (e *testEnv) aliceAndBob(room string) (*simulate.Participant, string) {
	e.t.Helper()
	e.admitJoin(e.dial(), room, "kf_alpha", "alice")
	bob := e.dial()
	e.admitJoin(bob, room, "kf_bravo", "bob")
	return bob, strings.ToLower(bob.Bare())
}

// snapshotOf returns the snapshot of a key file with content.
func snapshotOf(t *testing.T, content string) *keys.Snapshot {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys.properties")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := keys.OpenWith(p, keys.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return st.Snapshot()
}

// A grant written around a revocation reaches Prosody after the removal,
// whose answer has confirmed it already. The grant's answer sends the
// removal again; that removal is pending in turn, so when it is lost with
// the connection and keyfocus restarts, the next focus sends it again
// rather than taking the revoked person back as an unknown-key member.
func TestRemovalAfterLateGrantIsPendingToo(t *testing.T) {
	e := newEnv(t, baseKeys+"kf_bravo=Bravo\n")
	statePath := filepath.Join(t.TempDir(), "state.json")
	slow := func(c *Config) {
		c.StatePath = statePath
		c.BackoffMin = 5 * time.Second
		c.BackoffMax = 5 * time.Second
	}
	f := e.startFocus(slow)
	bob, bare := e.aliceAndBob("rr")
	roomJID := e.room("rr")

	f.mu.Lock()
	adm := f.rooms[roomJID].admitted[bare]
	f.mu.Unlock()
	e.writeKeys(baseKeys) // kf_bravo revoked
	waitRemoved(t, bob, roomJID)
	eventually(t, "the removal confirmed", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		tm, ok := f.rooms[roomJID].revoked[bare]
		return ok && !tm.IsZero()
	})
	// The late grant reaches Prosody after the confirmed removal.
	f.mu.Lock()
	c := f.conn
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := c.iq(ctx, f.affiliationIQ(&room{jid: roomJID}, bare, "member", "")); err != nil {
		t.Fatal(err)
	}
	// Its answer builds the removal again; the connection dies before the
	// removal is written.
	f.mu.Lock()
	_ = c.netConn.Close()
	again := f.reRevokeLocked(c, f.rooms[roomJID], map[string]*admission{bare: adm})
	f.mu.Unlock()
	if len(again) != 1 {
		t.Fatalf("reRevokeLocked built %d removals, want 1", len(again))
	}
	_ = c.send(context.Background(), again...)
	eventually(t, "the pending removal in the state file", func() bool {
		b, _ := os.ReadFile(statePath)
		return strings.Contains(string(b), `"removing"`) && strings.Contains(string(b), bare)
	})
	e.stopFocus()
	e.reopenStore()
	f = e.startFocus(func(c *Config) { c.StatePath = statePath })
	eventually(t, "bob no longer a member", func() bool { return !memberList(t, f, roomJID)[bare] })
	if strings.Contains(e.logs.String(), "has members keyfocus has no admission") {
		t.Error("revoked bob was taken back as an unknown-key member")
	}
}

// memberList reads the room's member list from Prosody.
func memberList(t *testing.T, f *Focus, room string) map[string]bool {
	t.Helper()
	f.mu.Lock()
	c := f.conn
	f.mu.Unlock()
	q := newEl("", "iq", "type", "get", "from", f.cfg.Component+"/"+Nick, "to", room).Add(
		newEl(nsMUCAdmin, "query").Add(newEl("", "item", "affiliation", "member")))
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	res, err := c.iq(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, it := range res.Child(nsMUCAdmin, "query").All("", "item") {
		m[strings.ToLower(it.Get("jid"))] = true
	}
	return m
}

// BenchmarkRevokedWhileDown restarts the focus with a key revoked while it
// was down and rooms to re-join, and reports how long after the focus
// started the revoked member was out of the room (as a watcher in every
// room saw it) and how long the re-join of every room took.
func BenchmarkRevokedWhileDown(b *testing.B) {
	for _, rooms := range []int{50, 200} {
		b.Run(fmt.Sprintf("rooms=%d", rooms), func(b *testing.B) {
			e := newEnv(b, baseKeys)
			statePath := filepath.Join(b.TempDir(), "state.json")
			withState := func(c *Config) { c.StatePath = statePath }
			e.startFocus(withState)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			watcher, names := e.watchRooms(ctx, rooms)
			victim := e.room("victim")
			var removed, rejoined time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				key := fmt.Sprintf("kf_victim%d", i)
				e.writeKeys(baseKeys + key + "=Victim\n")
				eventually(b, "the new key loaded", func() bool { return e.f.State().Store.Keys == 5 })
				p := e.dial()
				nick := fmt.Sprintf("victim%d", i)
				e.admitJoin(p, "victim", key, nick)
				e.stopFocus()
				for drained := false; !drained; {
					select {
					case <-watcher.Events():
					default:
						drained = true
					}
				}
				e.writeKeys(baseKeys)
				e.reopenStore()
				b.StartTimer()
				start := time.Now()
				e.startFocus(withState)
				seen := map[string]bool{}
				gone := false
				for !gone || len(seen) < len(names) {
					select {
					case ev := <-watcher.Events():
						switch {
						case ev.Kind == simulate.EvOccupantJoined && ev.Occupant.Nick == Nick && !seen[ev.Room]:
							seen[ev.Room] = true
							if len(seen) == len(names) {
								rejoined += time.Since(start)
							}
						case ev.Kind == simulate.EvOccupantLeft && ev.Room == victim && ev.Occupant.Nick == nick:
							gone = true
							removed += time.Since(start)
						}
					case <-ctx.Done():
						b.Fatalf("removed: %v, rooms re-joined %d of %d", gone, len(seen), len(names))
					}
				}
				b.StopTimer()
				_ = p.Close()
			}
			b.ReportMetric(float64(removed.Microseconds())/1000/float64(b.N), "removed-ms")
			b.ReportMetric(float64(rejoined.Microseconds())/1000/float64(b.N), "rejoined-ms")
		})
	}
}
