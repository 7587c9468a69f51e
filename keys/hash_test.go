package keys

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHashPlaintext(t *testing.T) {
	hashed := "sha256:" + HashKey("kf_abc") + "=Acme\n"
	content := "\uFEFF# seed keys\n" +
		"admin123=TTND\n" +
		"  guest : Guests; rooms=lobby-*; expires=2027-03-01   \n" +
		"Mixed123=Board\n" +
		"long\\\n   key=Continued; max-participants=3\n" +
		hashed +
		"admin123 = TTND again\n"
	s := openTest(t, content)
	before := s.Snapshot()
	res, err := s.HashPlaintext(false)
	if err != nil {
		t.Fatal(err)
	}
	want := "\uFEFF# seed keys\n" +
		"sha256:" + HashKey("admin123") + "=TTND\n" +
		"  sha256:" + HashKey("guest") + "=Guests; rooms=lobby-*; expires=2027-03-01   \n" +
		"Mixed123=Board\n" +
		"sha256:" + HashKey("longkey") + "=Continued; max-participants=3\n" +
		hashed +
		"sha256:" + HashKey("admin123") + "=TTND again\n"
	if got := readFile(t, s.Path()); got != want {
		t.Fatalf("file after hashing:\n%q\nwant\n%q", got, want)
	}
	var names []string
	for _, e := range res.Hashed {
		names = append(names, e.Name)
		if !e.Hashed {
			t.Errorf("%s reported hashed but is not", e.Name)
		}
	}
	if strings.Join(names, ",") != "TTND,Guests,Continued,TTND again" {
		t.Errorf("hashed %v", names)
	}
	if len(res.MixedCase) != 1 || res.MixedCase[0].Name != "Board" || res.MixedCase[0].Hashed {
		t.Errorf("mixed case: %+v", res.MixedCase)
	}
	// Same keys, same IDs, same attributes; every way in still works.
	after := s.Snapshot()
	if after.Len() != before.Len() {
		t.Fatalf("%d entries after, %d before", after.Len(), before.Len())
	}
	for _, old := range before.Entries() {
		if before.ByID(old.ID) != old {
			continue // a later duplicate: the first line counts
		}
		e := after.ByID(old.ID)
		if e == nil || e.Name != old.Name || e.MaxParticipants != old.MaxParticipants ||
			strings.Join(e.Rooms, ",") != strings.Join(old.Rooms, ",") || !e.Expires.Equal(old.Expires) {
			t.Errorf("entry %s changed: %+v -> %+v", old.Fingerprint, old, e)
		}
	}
	for key, name := range map[string]string{"admin123": "TTND", "guest": "Guests", "longkey": "Continued", "Mixed123": "Board"} {
		if e := after.Lookup(key); e == nil || e.Name != name {
			t.Errorf("Lookup(%s) = %+v", key, e)
		}
		if e := after.LookupFold(strings.ToLower(key)); e == nil || e.Name != name {
			t.Errorf("LookupFold(%s) = %+v", strings.ToLower(key), e)
		}
	}
	if e, v := after.Authorize("guest", "lobby-1", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), false); e == nil || v != Valid {
		t.Errorf("guest in lobby-1: %v", v)
	}

	// Again: only the mixed-case key is left, and it stays unless asked.
	if _, err := s.HashPlaintext(false); !errors.Is(err, ErrNothingToHash) {
		t.Errorf("second run: %v, want ErrNothingToHash", err)
	}
	res, err = s.HashPlaintext(true)
	if err != nil || len(res.Hashed) != 1 || res.Hashed[0].Name != "Board" {
		t.Fatalf("with mixed case: %+v, %v", res, err)
	}
	if e := s.Snapshot().LookupFold("mixed123"); e != nil {
		t.Error("a hashed mixed-case key still matches case-insensitively")
	}
	if e := s.Snapshot().Lookup("Mixed123"); e == nil {
		t.Error("a hashed mixed-case key no longer matches exactly")
	}
}

// A key already hashed on an earlier line and in plaintext on a later one:
// the report names the line that was rewritten.
func TestHashPlaintextReportsTheRewrittenLine(t *testing.T) {
	s := openTest(t, "sha256:"+HashKey("abc")+"=Old; rooms=x\nabc=New\n")
	res, err := s.HashPlaintext(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hashed) != 1 || res.Hashed[0].Name != "New" || res.Hashed[0].Line != 2 {
		t.Errorf("reported %+v, want New on line 2", res.Hashed)
	}
	want := "sha256:" + HashKey("abc") + "=Old; rooms=x\nsha256:" + HashKey("abc") + "=New\n"
	if got := readFile(t, s.Path()); got != want {
		t.Errorf("file: %q", got)
	}
}

func TestHashPlaintextRefusesBrokenFile(t *testing.T) {
	s := openTest(t, "admin123=TTND\n")
	path := s.Path()
	writeFile(t, path, "admin123=TTND\nbroken=; expires=never\n")
	s.Reload()
	if _, err := s.HashPlaintext(false); err == nil {
		t.Fatal("hashed a file with errors")
	}
	if got := readFile(t, path); got != "admin123=TTND\nbroken=; expires=never\n" {
		t.Errorf("file changed: %q", got)
	}
}
