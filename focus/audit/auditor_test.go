package audit

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/keys"
)

// busSource is a focus.Source over a focus.Bus: the events come from the test.
type busSource struct {
	bus     focus.Bus
	once    sync.Once
	watched chan struct{}
	err     error
	calls   []string
}

func newBusSource() *busSource { return &busSource{watched: make(chan struct{})} }

func (s *busSource) Watch(n int) (focus.State, *focus.Subscription) {
	sub := s.bus.Subscribe(n)
	s.once.Do(func() { close(s.watched) })
	return focus.State{}, sub
}

func (s *busSource) RemoveMember(_ context.Context, room, nick, _ string) error {
	s.calls = append(s.calls, "remove "+room+" "+nick)
	return s.err
}

func (s *busSource) EndRoom(_ context.Context, room, _ string) error {
	s.calls = append(s.calls, "end "+room)
	return s.err
}

func entry(key, name string, rooms ...string) *keys.Entry {
	return &keys.Entry{ID: keys.HashKey(key), Fingerprint: keys.Fingerprint(key), Hashed: true, Name: name, Rooms: rooms}
}

func snap(es ...*keys.Entry) *keys.Snapshot {
	return keys.NewSnapshot("keys.properties", es, time.Now())
}

// harness runs an Auditor against a busSource until stop is called.
type harness struct {
	t        *testing.T
	src      *busSource
	log      *Log
	path     string
	keysPath string
	cur      atomic.Pointer[keys.Snapshot]
	cancel   context.CancelFunc
	done     chan error
}

func startAuditor(t *testing.T, initial *keys.Snapshot, grace time.Duration) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, src: newBusSource(), path: filepath.Join(dir, "audit.jsonl"), keysPath: filepath.Join(dir, "keys.properties"), done: make(chan error, 1)}
	var err error
	h.log, err = Open(h.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.log.Close() })
	h.cur.Store(initial)
	a := &Auditor{Log: h.log, KeysPath: h.keysPath, Snapshot: h.cur.Load, Grace: grace}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- a.Run(ctx, h.src) }()
	t.Cleanup(h.stop)
	<-h.src.watched
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

func (h *harness) reload(s *keys.Snapshot) {
	h.cur.Store(s)
	h.src.bus.Publish(focus.Event{Kind: focus.EvStoreReloaded, Store: &focus.StoreState{Path: h.keysPath, Keys: s.Len()}})
}

// waitFor polls the audit file until cond holds or the deadline passes.
func (h *harness) waitFor(what string, cond func([]Record) bool) []Record {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := Tail(h.path, 1000)
		if err != nil {
			h.t.Fatal(err)
		}
		if cond(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; audit log: %+v", what, recs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) records() []Record {
	recs, err := Tail(h.path, 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

func hasEvent(event string) func([]Record) bool {
	return func(rs []Record) bool {
		return slices.ContainsFunc(rs, func(r Record) bool { return r.Event == event })
	}
}

func TestAuditorRecordsFocusEvents(t *testing.T) {
	h := startAuditor(t, nil, time.Minute)
	m := &focus.Member{Nick: "n1", JID: "guest@meet.example/r1", Fingerprint: "0123abcd", Client: "Acme"}
	h.src.bus.Publish(focus.Event{Kind: focus.EvAdmitted, Request: &focus.Admission{Requester: "guest@meet.example/r1", Room: "standup@conference.meet.example", Fingerprint: "0123abcd", Client: "Acme", Latency: 7 * time.Millisecond}})
	h.src.bus.Publish(focus.Event{Kind: focus.EvRefused, Rejection: &focus.Rejection{Requester: "x@meet.example/r", Room: "standup@conference.meet.example", Reason: focus.ReasonUnknownKey, Code: 403, Fingerprint: "99999999"}})
	h.src.bus.Publish(focus.Event{Kind: focus.EvMemberJoined, Room: "standup@conference.meet.example", Member: m})
	h.src.bus.Publish(focus.Event{Kind: focus.EvMemberRemoved, Room: "standup@conference.meet.example", Member: m, Reason: "key revoked", Actor: "revocation"})
	h.src.bus.Publish(focus.Event{Kind: focus.EvMemberLeft, Room: "standup@conference.meet.example", Member: m, Reason: "left"})
	carol := &focus.Member{Nick: "carol", JID: "carol@meet.example/c", Fingerprint: "0123abcd", Client: "Acme"}
	h.src.bus.Publish(focus.Event{Kind: focus.EvMemberLeft, Room: "standup@conference.meet.example", Member: carol, Reason: "removed", Actor: "revocation"})
	dave := &focus.Member{JID: "dave@meet.example", Fingerprint: "0123abcd", Client: "Acme"}
	h.src.bus.Publish(focus.Event{Kind: focus.EvMembershipRevoked, Room: "standup@conference.meet.example", Member: dave, Reason: "Your client key was revoked", Actor: "revocation"})
	h.src.bus.Publish(focus.Event{Kind: focus.EvRoomEnded, Room: "standup@conference.meet.example", Reason: "ended by operator", Actor: "operator"})
	recs := h.waitFor("room_ended", hasEvent(RoomEnded))
	want := []Record{
		{Event: Admitted, Requester: "guest@meet.example/r1", Room: "standup@conference.meet.example", Fingerprint: "0123abcd", Client: "Acme", LatencyMS: 7},
		{Event: Refused, Requester: "x@meet.example/r", Room: "standup@conference.meet.example", Reason: focus.ReasonUnknownKey, Code: 403, Fingerprint: "99999999"},
		{Event: MemberRemoved, Room: "standup@conference.meet.example", Nick: "n1", Requester: "guest@meet.example/r1", Fingerprint: "0123abcd", Client: "Acme", Reason: "key revoked", Actor: "revocation"},
		{Event: MemberRemoved, Room: "standup@conference.meet.example", Nick: "carol", Requester: "carol@meet.example/c", Fingerprint: "0123abcd", Client: "Acme", Reason: "removed", Actor: "revocation"},
		{Event: MembershipRevoked, Room: "standup@conference.meet.example", Requester: "dave@meet.example", Fingerprint: "0123abcd", Client: "Acme", Reason: "Your client key was revoked", Actor: "revocation"},
		{Event: RoomEnded, Room: "standup@conference.meet.example", Reason: "ended by operator", Actor: "operator"},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(recs), len(want), recs)
	}
	for i := range want {
		got := recs[i]
		if got.Time.IsZero() || got.PID == 0 {
			t.Errorf("record %d lacks time or pid: %+v", i, got)
		}
		got.Time, got.PID = time.Time{}, 0
		if !recordEqual(got, want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
}

func recordEqual(a, b Record) bool {
	return slices.Equal(a.Changed, b.Changed) && func() bool { a.Changed, b.Changed = nil, nil; return a.Time.Equal(b.Time) }() &&
		a.Event == b.Event && a.Actor == b.Actor && a.Via == b.Via && a.Keys == b.Keys && a.Fingerprint == b.Fingerprint &&
		a.Client == b.Client && a.Room == b.Room && a.Requester == b.Requester && a.Nick == b.Nick && a.Action == b.Action &&
		a.Reason == b.Reason && a.Code == b.Code && a.LatencyMS == b.LatencyMS && a.Count == b.Count && a.Error == b.Error
}

// Each kind of key change, made by a tool that records itself, made by a tool
// whose record comes only after the focus saw the change, or made by hand.
func TestAuditorAttributesKeyChanges(t *testing.T) {
	acme := entry("kf_acme", "Acme")
	acme2 := entry("kf_acme", "Acme", "acme-*")
	beta := entry("kf_beta", "Beta")
	tests := []struct {
		name   string
		before *keys.Snapshot
		after  *keys.Snapshot
		kind   string
		e      *keys.Entry
		// claim: "before" = the tool's record lands before the reload, "after"
		// = after it, "" = nobody claims it, "other" = a claim for another file.
		claim   string
		changed []string
	}{
		{"added by cli, record first", snap(acme), snap(acme, beta), KeyAdded, beta, "before", nil},
		{"added by cli, record late", snap(acme), snap(acme, beta), KeyAdded, beta, "after", nil},
		{"added by hand", snap(acme), snap(acme, beta), KeyAdded, beta, "", nil},
		{"edited by console", snap(acme), snap(acme2), KeyEdited, acme2, "before", []string{"rooms"}},
		{"edited by hand", snap(acme), snap(acme2), KeyEdited, acme2, "", []string{"rooms"}},
		{"revoked by ssh", snap(acme, beta), snap(acme), KeyRevoked, beta, "after", nil},
		{"revoked by hand", snap(acme, beta), snap(acme), KeyRevoked, beta, "", nil},
		{"claim for another key file", snap(acme), snap(acme, beta), KeyAdded, beta, "other", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			grace := time.Minute // long: the claim must be what settles it
			if tt.claim == "" || tt.claim == "other" {
				grace = 20 * time.Millisecond
			}
			h := startAuditor(t, tt.before, grace)
			claim := KeyRecord(tt.kind, "user:alice", ViaCLI, h.keysPath, tt.e, tt.changed...)
			if tt.claim == "other" {
				claim.Keys = filepath.Join(t.TempDir(), "other.properties")
			}
			if tt.claim == "before" || tt.claim == "other" {
				if err := Append(h.path, claim); err != nil {
					t.Fatal(err)
				}
			}
			h.reload(tt.after)
			if tt.claim == "after" {
				if err := Append(h.path, claim); err != nil {
					t.Fatal(err)
				}
			}
			if tt.claim == "" || tt.claim == "other" {
				h.waitFor("the change recorded as outside keyfocus", func(rs []Record) bool {
					return slices.ContainsFunc(rs, func(r Record) bool { return r.Actor == Outside })
				})
			}
			h.stop() // settles whatever is pending
			var changes []Record
			for _, r := range h.records() {
				if r.Event == tt.kind && r.Fingerprint == tt.e.Fingerprint && r.Keys == CanonicalPath(h.keysPath) {
					changes = append(changes, r)
				}
			}
			if len(changes) != 1 {
				t.Fatalf("change recorded %d times, want once: %+v", len(changes), h.records())
			}
			r := changes[0]
			wantActor, wantVia := "user:alice", ViaCLI
			if tt.claim == "" || tt.claim == "other" {
				wantActor, wantVia = Outside, ViaWatch
			}
			if r.Actor != wantActor || r.Via != wantVia || r.Client != tt.e.Name || !slices.Equal(r.Changed, tt.changed) {
				t.Fatalf("got %+v, want actor %q via %q client %q changed %v", r, wantActor, wantVia, tt.e.Name, tt.changed)
			}
			if tt.claim == "" && r.Keys != CanonicalPath(h.keysPath) {
				t.Fatalf("keys = %q, want %q", r.Keys, CanonicalPath(h.keysPath))
			}
		})
	}
}

// Only the net change between reloads is recorded, and an unchanged reload
// records nothing.
func TestAuditorUnchangedReload(t *testing.T) {
	acme := entry("kf_acme", "Acme")
	h := startAuditor(t, snap(acme), 10*time.Millisecond)
	h.reload(snap(acme))
	h.src.bus.Publish(focus.Event{Kind: focus.EvRoomEnded, Room: "marker"})
	h.waitFor("marker", hasEvent(RoomEnded))
	h.stop()
	recs := h.records()
	if len(recs) != 2 || recs[0].Event != StoreLoaded || recs[0].Count != 1 || recs[1].Event != RoomEnded {
		t.Fatalf("want the start's store_loaded and the marker only: %+v", recs)
	}
}

func TestAuditorRecordsDroppedEvents(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	src := newBusSource()
	a := &Auditor{Log: l, Buffer: 1}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// A buffer of one: whatever Run does not take in time is dropped, and
	// each event is either recorded or counted as dropped.
	go func() { done <- a.Run(ctx, src) }()
	<-src.watched
	for range 50 {
		src.bus.Publish(focus.Event{Kind: focus.EvRefused, Rejection: &focus.Rejection{Reason: focus.ReasonNoKey, Code: 401}})
	}
	deadline := time.Now().Add(10 * time.Second)
	var total int
	for {
		recs, _ := Tail(l.Path(), 1000)
		total = 0
		for _, r := range recs {
			switch r.Event {
			case Refused:
				total++
			case EventsDropped:
				total += r.Count
			}
		}
		if total == 50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if total != 50 {
		t.Fatalf("refusals recorded + counted as dropped = %d, want 50", total)
	}
}

func TestOperatorSourceRecordsActions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	src := newBusSource()
	op := OperatorSource(src, l, "ssh:SHA256:abc", ViaSSH)
	ctx := context.Background()
	if err := op.RemoveMember(ctx, "r@conference.meet.example", "bob", "behave"); err != nil {
		t.Fatal(err)
	}
	src.err = errors.New("no such room")
	if err := op.EndRoom(ctx, "gone@conference.meet.example", "done"); err == nil {
		t.Fatal("EndRoom error was swallowed")
	}
	recs, _ := Tail(path, 10)
	want := []Record{
		{Event: OperatorAction, Action: "remove_member", Actor: "ssh:SHA256:abc", Via: ViaSSH, Room: "r@conference.meet.example", Nick: "bob", Reason: "behave"},
		{Event: OperatorAction, Action: "end_room", Actor: "ssh:SHA256:abc", Via: ViaSSH, Room: "gone@conference.meet.example", Reason: "done", Error: "no such room"},
	}
	if len(recs) != 2 {
		t.Fatalf("got %+v", recs)
	}
	for i := range want {
		recs[i].Time, recs[i].PID = time.Time{}, 0
		if !recordEqual(recs[i], want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, recs[i], want[i])
		}
	}
	if !slices.Equal(src.calls, []string{"remove r@conference.meet.example bob", "end gone@conference.meet.example"}) {
		t.Fatalf("calls = %v", src.calls)
	}
}

func TestLocalActor(t *testing.T) {
	t.Setenv("SUDO_USER", "")
	a := LocalActor()
	if len(a) <= len("user:") || a[:5] != "user:" {
		t.Fatalf("LocalActor() = %q", a)
	}
	t.Setenv("SUDO_USER", "alice-not-me")
	if got := LocalActor(); got == a || !strings.Contains(got, "alice-not-me") || !strings.Contains(got, "sudo") {
		t.Fatalf("under sudo LocalActor() = %q", got)
	}
}

// A flood of refusals is capped per second; the rest are counted in one
// refusals_suppressed record, so every refusal is accounted for.
func TestAuditorCapsRefusals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	src := newBusSource()
	a := &Auditor{Log: l, MaxRefusalsPerSecond: 5}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, src) }()
	<-src.watched
	at := time.Now().Add(-time.Minute) // all in one (past) second
	for range 50 {
		src.bus.Publish(focus.Event{Kind: focus.EvRefused, Time: at, Rejection: &focus.Rejection{Reason: focus.ReasonRateLimited, Code: 429}})
	}
	var recs []Record
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, _ = Tail(path, 100)
		if hasEvent(RefusalsSuppressed)(recs) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	itemised, counted := 0, 0
	for _, r := range recs {
		switch r.Event {
		case Refused:
			itemised++
		case RefusalsSuppressed:
			counted += r.Count
		}
	}
	if itemised != 5 || counted != 45 {
		t.Fatalf("itemised %d (want 5), counted %d (want 45): %+v", itemised, counted, recs)
	}
}
