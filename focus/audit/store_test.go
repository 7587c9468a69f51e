package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/keys"
)

// A console edits keys through an AuditedStore on its own keys.Store, while
// the focus's keys.Store sees the changes through its watch: each change is
// on record exactly once, with the console's actor; a hand edit of the file
// is on record as made outside keyfocus. No key ever reaches the log.
func TestAuditedStoreAndFocusWatchRecordOnce(t *testing.T) {
	dir := t.TempDir()
	keysPath := filepath.Join(dir, "keys.properties")
	if err := os.WriteFile(keysPath, []byte("# keys\nadmin123=TTND\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	focusStore, err := keys.Open(keysPath)
	if err != nil {
		t.Fatal(err)
	}
	consoleStore, err := keys.Open(keysPath)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "audit.jsonl")
	l, err := Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	src := newBusSource()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The focus's side: its store's watch feeds reload events.
	updates := focusStore.Watch(ctx)
	go func() {
		for u := range updates {
			if u.Err == nil {
				src.bus.Publish(focus.Event{Kind: focus.EvStoreReloaded, Store: &focus.StoreState{Path: keysPath, Keys: u.Snapshot.Len()}})
			}
		}
	}()
	a := &Auditor{Log: l, KeysPath: keysPath, Snapshot: focusStore.Snapshot, Grace: 300 * time.Millisecond}
	actx, acancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(actx, src) }()
	<-src.watched

	ed := AuditedStore(consoleStore, l, "user:alice", ViaConsole)
	key, e, err := ed.Add(keys.Spec{Name: "Acme Corp"})
	if err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, focusStore, func(s *keys.Snapshot) bool { return s.ByID(e.ID) != nil })
	e2, err := ed.Edit(e.ID, keys.Spec{Name: "Acme Corp", Rooms: []string{"acme-*"}, MaxParticipants: 5})
	if err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, focusStore, func(s *keys.Snapshot) bool { x := s.ByID(e.ID); return x != nil && x.MaxParticipants == 5 })
	if _, err := ed.Revoke(e2.ID); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, focusStore, func(s *keys.Snapshot) bool { return s.ByID(e.ID) == nil })

	// A hand edit: nobody claims it.
	f, err := os.OpenFile(keysPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("kf_byhandbyhandbyhand=Manual Ltd\n")
	f.Close()
	manual := keys.Fingerprint("kf_byhandbyhandbyhand")
	deadline := time.Now().Add(15 * time.Second)
	for {
		recs, _ := Tail(logPath, 100)
		if hasRecord(recs, KeyAdded, manual, Outside) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hand edit never recorded: %+v", recs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	acancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	recs, err := Tail(logPath, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{KeyAdded, KeyEdited, KeyRevoked} {
		n := 0
		for _, r := range recs {
			if r.Event == kind && r.Fingerprint == e.Fingerprint {
				n++
				if r.Actor != "user:alice" || r.Via != ViaConsole || r.Client != "Acme Corp" {
					t.Errorf("%s recorded as %+v", kind, r)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s of the console's key recorded %d times, want 1: %+v", kind, n, recs)
		}
	}
	for _, r := range recs {
		if r.Event == KeyEdited && r.Fingerprint == e.Fingerprint && strings.Join(r.Changed, ",") != "rooms,max-participants" {
			t.Errorf("edit changed = %v", r.Changed)
		}
	}
	data, _ := os.ReadFile(logPath)
	for _, secret := range []string{key, "kf_byhandbyhandbyhand", "admin123"} {
		if strings.Contains(string(data), secret) {
			t.Fatalf("audit log holds a key: %s", data)
		}
	}
}

func hasRecord(recs []Record, event, fp, actor string) bool {
	for _, r := range recs {
		if r.Event == event && r.Fingerprint == fp && r.Actor == actor {
			return true
		}
	}
	return false
}

func waitSnapshot(t *testing.T, s *keys.Store, cond func(*keys.Snapshot) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond(s.Snapshot()) {
		if time.Now().After(deadline) {
			t.Fatal("the focus's store never saw the change")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadOnlyStoreRefusesEdits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.properties")
	s, err := keys.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ro := ReadOnlyStore(s)
	_, _, err1 := ro.Add(keys.Spec{Name: "x"})
	_, err2 := ro.Edit("id", keys.Spec{Name: "x"})
	_, err3 := ro.Revoke("id")
	for _, err := range []error{err1, err2, err3} {
		if !errors.Is(err, ErrReadOnly) {
			t.Fatalf("err = %v", err)
		}
	}
	if data, _ := os.ReadFile(path); len(data) != 0 {
		t.Fatalf("read-only store wrote the file: %q", data)
	}
	if ro.Path() != s.Path() {
		t.Fatal("reads not passed through")
	}
}

func TestLine(t *testing.T) {
	at := time.Date(2026, 12, 4, 20, 1, 2, 0, time.UTC)
	tests := []struct {
		r    Record
		want string
	}{
		{Record{Time: at, Event: KeyAdded, Client: "Acme", Fingerprint: "0123abcd", Actor: "user:alice", Via: ViaCLI}, `12-04 20:01:02  key added "Acme" [0123abcd] by user:alice`},
		{Record{Time: at, Event: KeyEdited, Client: "Acme", Fingerprint: "0123abcd", Changed: []string{"rooms"}, Actor: Outside}, `12-04 20:01:02  key edited "Acme" [0123abcd] (rooms) by changed outside keyfocus`},
		{Record{Time: at, Event: OperatorAction, Action: "end_room", Room: "r@c", Error: "no such room", Actor: "ssh:SHA256:x"}, `12-04 20:01:02  operator end_room r@c FAILED: no such room by ssh:SHA256:x`},
		{Record{Time: at, Event: SSHSessionStart, Fingerprint: "SHA256:abc", Action: "read-only", Actor: "ssh:SHA256:abc"}, `12-04 20:01:02  ssh login read-only by ssh:SHA256:abc`},
		{Record{Time: at, Event: "future_kind"}, `12-04 20:01:02  future_kind`},
		{Record{Time: at, Event: StoreLoaded, Count: 42, Reason: "focus started"}, `12-04 20:01:02  keys loaded — focus started (42 keys)`},
		{Record{Time: at, Event: StoreLoaded, Count: 1, Reason: "focus started"}, `12-04 20:01:02  keys loaded — focus started (1 key)`},
	}
	for _, tt := range tests {
		if got := Line(tt.r, time.UTC); got != tt.want {
			t.Errorf("Line() = %q\n want %q", got, tt.want)
		}
	}
}
