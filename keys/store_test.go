package keys

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openTest opens a store on a file with content in a fresh folder.
func openTest(t *testing.T, content string) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.properties")
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	s, err := OpenWith(path, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOpenMissingCreatesEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.properties")
	s, err := OpenWith(path, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file not created: %v", err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != 0 {
		t.Errorf("created file mode %v size %d, want 0600 and empty", fi.Mode().Perm(), fi.Size())
	}
	if s.Snapshot() == nil || s.Snapshot().Len() != 0 {
		t.Errorf("snapshot %v, want empty", s.Snapshot())
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.properties")
	if err := os.WriteFile(bad, []byte("a=A\nb=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(bad)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 2 || !strings.HasPrefix(err.Error(), bad+":2: ") {
		t.Errorf("Open(bad) = %v, want a *ParseError at line 2", err)
	}
	if _, err := Open(filepath.Join(dir, "no", "such", "folder", "keys")); err == nil || !strings.Contains(err.Error(), "cannot be created") {
		t.Errorf("Open in a missing folder = %v, want a clear error", err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("Open(a folder) gave no error")
	}
}

func TestLookup(t *testing.T) {
	s := openTest(t, "Admin123=TTND\nsha256:"+HashKey("kf_abc")+"=Acme; rooms=acme-*; expires=2027-03-01\n")
	snap := s.Snapshot()
	tests := []struct {
		key, fold string // entry name expected from Lookup and LookupFold ("" = none)
		in        string
	}{
		{in: "Admin123", key: "TTND", fold: "TTND"},
		{in: "admin123", key: "", fold: "TTND"},
		{in: "ADMIN123", key: "", fold: "TTND"},
		{in: "kf_abc", key: "Acme", fold: "Acme"},
		{in: "KF_ABC", key: "", fold: "Acme"},
		{in: "kf_abd", key: "", fold: ""},
		{in: "", key: "", fold: ""},
	}
	name := func(e *Entry) string {
		if e == nil {
			return ""
		}
		return e.Name
	}
	for _, tt := range tests {
		if got := name(snap.Lookup(tt.in)); got != tt.key {
			t.Errorf("Lookup(%q) = %q, want %q", tt.in, got, tt.key)
		}
		if got := name(snap.LookupFold(tt.in)); got != tt.fold {
			t.Errorf("LookupFold(%q) = %q, want %q", tt.in, got, tt.fold)
		}
	}
	e := snap.Lookup("kf_abc")
	if !e.AllowsRoom("ACME-board") || e.AllowsRoom("other") {
		t.Error("rooms not enforced as globs")
	}
	if e.Expired(time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)) || !e.Expired(time.Date(2027, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Error("expiry is not the end of the day UTC")
	}
}

func TestAddEditRevoke(t *testing.T) {
	orig := "# keyfocus keys\n\nadmin123 = TTND\n! odd   spacing :  kept\nsha256:" + HashKey("kf_x") + "=X Corp; tier=gold ; rooms=x-*\n"
	s := openTest(t, orig)
	key, e, err := s.Add(Spec{Name: "Acme Corp", Rooms: []string{"acme-*", "board"}, Expires: mustExpires(t, "2027-03-01"), MaxParticipants: 25})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "kf_") || e == nil || e.ID != HashKey(key) || !e.Hashed || e.Line != 6 {
		t.Fatalf("Add = %q, %+v", key, e)
	}
	got := readFile(t, s.Path())
	wantAdded := orig + "sha256:" + e.ID + "=Acme Corp; rooms=acme-*,board; expires=2027-03-01; max-participants=25\n"
	if got != wantAdded {
		t.Fatalf("after Add:\n%s\nwant:\n%s", got, wantAdded)
	}
	if strings.Contains(got, key) {
		t.Fatal("the plaintext key is in the file")
	}
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after save %v, want 0640 kept", fi.Mode().Perm())
	}
	if s.Snapshot().Lookup(key) == nil {
		t.Fatal("new key not in the snapshot at once")
	}

	// Edit: change the rooms of X Corp, keep its unknown attribute and name text.
	x := s.Snapshot().Lookup("kf_x")
	sp := SpecOf(x)
	sp.Rooms = []string{"y"}
	sp.MaxParticipants = 4
	if _, err := s.Edit(x.ID, sp); err != nil {
		t.Fatal(err)
	}
	wantEdited := strings.Replace(wantAdded, "X Corp; tier=gold ; rooms=x-*", "X Corp; tier=gold; rooms=y; max-participants=4", 1)
	if got := readFile(t, s.Path()); got != wantEdited {
		t.Fatalf("after Edit:\n%s\nwant:\n%s", got, wantEdited)
	}
	// An edit that changes nothing writes nothing.
	if _, err := s.Edit(x.ID, SpecOf(s.Snapshot().ByID(x.ID))); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, s.Path()); got != wantEdited {
		t.Fatalf("no-op Edit changed the file:\n%s", got)
	}

	// Revoke the seed key.
	admin := s.Snapshot().Lookup("admin123")
	if _, err := s.Revoke(admin.ID); err != nil {
		t.Fatal(err)
	}
	wantRevoked := strings.Replace(wantEdited, "admin123 = TTND\n", "", 1)
	if got := readFile(t, s.Path()); got != wantRevoked {
		t.Fatalf("after Revoke:\n%s\nwant:\n%s", got, wantRevoked)
	}
	if s.Snapshot().Lookup("admin123") != nil {
		t.Fatal("revoked key still valid")
	}
	if _, err := s.Revoke(admin.ID); err == nil {
		t.Fatal("second Revoke gave no error")
	}
	if u := s.Reload(); u.Err != nil || u.Notice != "" || u.Snapshot != s.Snapshot() {
		t.Fatalf("Reload after own edits = %+v, want no change", u)
	}
}

func TestRevokeDuplicates(t *testing.T) {
	s := openTest(t, "k=A\nx=X\nk=B\n")
	if _, err := s.Revoke(HashKey("k")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, s.Path()); got != "x=X\n" {
		t.Fatalf("got %q, want every line of the key removed", got)
	}
}

func TestEditConflict(t *testing.T) {
	s := openTest(t, "a=A\n")
	if err := os.WriteFile(s.Path(), []byte("a=A\nb=B\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add(Spec{Name: "C"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("Add after an outside change = %v, want ErrConflict", err)
	}
	if got := readFile(t, s.Path()); got != "a=A\nb=B\n" {
		t.Fatalf("conflicting Add wrote the file: %q", got)
	}
	if u := s.Reload(); u.Err != nil || u.Snapshot.Len() != 2 {
		t.Fatalf("Reload = %+v", u)
	}
	if _, _, err := s.Add(Spec{Name: "C"}); err != nil {
		t.Fatalf("Add after Reload: %v", err)
	}
	// A broken file: edits refuse, the snapshot stays.
	if err := os.WriteFile(s.Path(), []byte("a=A\nb=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u := s.Reload()
	if u.Err == nil || u.Snapshot.Len() != 3 {
		t.Fatalf("Reload of a broken file = %+v, want an error and the 3 good keys", u)
	}
	if _, err := s.Revoke(HashKey("a")); err == nil || !strings.Contains(err.Error(), ":2: ") {
		t.Fatalf("Revoke on a broken file = %v, want the parse error", err)
	}
}

func TestSpecValidate(t *testing.T) {
	s := openTest(t, "")
	for _, sp := range []Spec{
		{},
		{Name: "  "},
		{Name: "a;b"},
		{Name: "a\nb"},
		{Name: "A", Rooms: []string{"a,b"}},
		{Name: "A", Rooms: []string{"[x"}},
		{Name: "A", Rooms: []string{""}},
		{Name: "A", MaxParticipants: -1},
		{Name: "A", Expires: time.Date(10000, 1, 2, 0, 0, 0, 0, time.UTC)},
		{Name: "A", Expires: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, _, err := s.Add(sp); err == nil {
			t.Errorf("Add(%+v) gave no error", sp)
		}
	}
	if got := readFile(t, s.Path()); got != "" {
		t.Errorf("invalid adds wrote %q", got)
	}
	// The last expiry a date can say: 9999-12-31, the end of that day.
	last := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, _, err := s.Add(Spec{Name: "A", Expires: last}); err != nil {
		t.Errorf("Add with expiry 9999-12-31: %v", err)
	}
}

func TestFind(t *testing.T) {
	h := HashKey("kf_x")
	s := openTest(t, "a=Acme\nb=acme\nc=Beta\nsha256:"+h+"=Gamma\nd=Beta\n")
	tests := []struct {
		q    string
		want []string
		err  string
	}{
		{q: "Acme", want: []string{"Acme"}},
		{q: "ACME", want: []string{"Acme", "acme"}},
		{q: "Beta", want: []string{"Beta", "Beta"}},
		{q: h[:4], want: []string{"Gamma"}},
		{q: "sha256:" + strings.ToUpper(h[:10]), want: []string{"Gamma"}},
		{q: h, want: []string{"Gamma"}},
		{q: h[:3], err: "no key has the client name"},
		{q: "nobody", err: "no key has the client name"},
		{q: " ", err: "give a client name"},
	}
	for _, tt := range tests {
		got, err := s.Find(tt.q)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Find(%q) error %v, want %q", tt.q, err, tt.err)
			}
			continue
		}
		var names []string
		for _, e := range got {
			names = append(names, e.Name)
		}
		if err != nil || strings.Join(names, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Find(%q) = %q, %v; want %q", tt.q, names, err, tt.want)
		}
	}
}

func mustExpires(t *testing.T, s string) time.Time {
	t.Helper()
	e, err := ParseExpires(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRevokeKeepsByteOrderMark(t *testing.T) {
	s := openTest(t, "\uFEFFfirst=First\nsecond=Second\n")
	if _, err := s.Revoke(HashKey("first")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, s.Path()); got != "\uFEFFsecond=Second\n" {
		t.Fatalf("got %q, want the byte order mark kept", got)
	}
}

func TestReadableWarning(t *testing.T) {
	tests := []struct {
		content string
		mode    os.FileMode
		warn    bool
	}{
		{"plain=Plain\n", 0o644, true},
		{"plain=Plain\n", 0o600, false},
		{"sha256:" + HashKey("k") + "=Hashed\n", 0o644, false},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "keys.properties")
		if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tt.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		var logs strings.Builder
		if _, err := OpenWith(path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "chmod 600"); got != tt.warn {
			t.Errorf("%q mode %v: warned %v, want %v (%s)", tt.content, tt.mode, got, tt.warn, logs.String())
		}
	}
}

func TestAuthorize(t *testing.T) {
	s := openTest(t, "Seed=Seed\nsha256:"+HashKey("kf_a")+"=A; rooms=team-*; expires=2027-03-01\n")
	snap := s.Snapshot()
	before := time.Date(2027, 3, 1, 23, 0, 0, 0, time.UTC)
	after := time.Date(2027, 3, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		key, room string
		now       time.Time
		fold      bool
		name      string
		verdict   Verdict
	}{
		{"kf_a", "team-x", before, false, "A", Valid},
		{"kf_a", "Team-X", before, false, "A", Valid},
		{"kf_a", "other", before, false, "A", RoomNotAllowed},
		{"kf_a", "team-x", after, false, "A", Expired},
		{"KF_A", "team-x", before, false, "", Unknown},
		{"KF_A", "team-x", before, true, "A", Valid},
		{"seed", "any", after, false, "", Unknown},
		{"seed", "any", after, true, "Seed", Valid},
		{"", "any", after, true, "", Unknown},
	}
	for _, tt := range tests {
		e, v := snap.Authorize(tt.key, tt.room, tt.now, tt.fold)
		name := ""
		if e != nil {
			name = e.Name
		}
		if v != tt.verdict || name != tt.name {
			t.Errorf("Authorize(%q, %q, %v, fold=%v) = %q, %v; want %q, %v", tt.key, tt.room, tt.now, tt.fold, name, v, tt.name, tt.verdict)
		}
	}
}

// Two stores on one file (two keyfocus processes: the console and a
// script) adding keys at the same time: no edit is lost.
func TestConcurrentEditors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.properties")
	if err := os.WriteFile(path, []byte("# shared\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stores []*Store
	for range 2 {
		s, err := OpenWith(path, Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	const perWorker = 15
	keysCh := make(chan string, 4*perWorker)
	errs := make(chan error, 4)
	for w := range 4 {
		s := stores[w%2]
		go func() {
			for i := range perWorker {
				for {
					key, _, err := s.Add(Spec{Name: fmt.Sprintf("worker %d key %d", w, i)})
					if errors.Is(err, ErrConflict) {
						if u := s.Reload(); u.Err != nil {
							errs <- u.Err
							return
						}
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					keysCh <- key
					break
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(keysCh)
	final, err := OpenWith(path, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for k := range keysCh {
		n++
		if final.Snapshot().Lookup(k) == nil {
			t.Errorf("key %s lost", Fingerprint(k))
		}
	}
	if n != 4*perWorker || final.Snapshot().Len() != n {
		t.Fatalf("%d keys added, %d in the file", n, final.Snapshot().Len())
	}
}

// Specs as a console form fills them: blanks around names and patterns, an
// expiry with fractions of a second (and a monotonic clock reading). They
// save, and read back as given.
func TestSpecNormalized(t *testing.T) {
	s := openTest(t, "")
	exp := time.Now().AddDate(3, 0, 0)
	_, e, err := s.Add(Spec{Name: "  Acme  ", Rooms: []string{" a-* ", "b"}, Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "Acme" || strings.Join(e.Rooms, ",") != "a-*,b" || !e.Expires.Equal(exp) {
		t.Fatalf("entry %+v", e)
	}
	sp := SpecOf(e)
	sp.Expires = exp.Add(time.Hour)
	if e, err = s.Edit(e.ID, sp); err != nil || !e.Expires.Equal(exp.Add(time.Hour)) {
		t.Fatalf("Edit = %+v, %v", e, err)
	}
}

// A file whose last line ends in a backslash: an added key must not become
// part of that line.
func TestAddAfterDanglingContinuation(t *testing.T) {
	for _, content := range []string{"k=A\\", "k=A\\\n", "k=A\\\r\n"} {
		s := openTest(t, content)
		key, e, err := s.Add(Spec{Name: "New"})
		if err != nil || e == nil {
			t.Fatalf("%q: Add = %v, %v", content, e, err)
		}
		snap := s.Snapshot()
		if snap.Len() != 2 || snap.Lookup("k").Name != "A" || snap.Lookup(key) == nil {
			t.Fatalf("%q: after Add: %q", content, readFile(t, s.Path()))
		}
	}
}

// A Reload of a file that is still broken says so every time (SIGHUP, the
// console's reload key), not only the first time the store reads it; once
// the file is fixed, or the console saves, the error is gone.
func TestReloadRepeatsLastingError(t *testing.T) {
	tests := []struct {
		name      string
		breakFile func(t *testing.T, path string)
		want      string
	}{
		{"parse error", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("a=A\nb=B; expires=soon\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, ":2: expires"},
		{"read error", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "is a folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, "a=A\n")
			tt.breakFile(t, s.Path())
			for i := range 3 {
				u := s.Reload()
				if u.Err == nil || !strings.Contains(u.Err.Error(), tt.want) {
					t.Fatalf("reload %d: err = %v, want %q", i+1, u.Err, tt.want)
				}
				if u.Snapshot.Len() != 1 {
					t.Fatalf("reload %d: %d keys in force, want the last good 1", i+1, u.Snapshot.Len())
				}
			}
			if err := os.RemoveAll(s.Path()); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.Path(), []byte("a=A\nb=B\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if u := s.Reload(); u.Err != nil || u.Snapshot.Len() != 2 {
					t.Fatalf("reload %d after the fix: err %v, %d keys", i+1, u.Err, u.Snapshot.Len())
				}
			}
		})
	}
}
