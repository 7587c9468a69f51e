package keys

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the keys golden files")

// TestSaveRoundTrip edits each testdata/roundtrip/*.properties file through
// the store (edit "Edit Me", revoke "Revoke Me", add a key) and compares the
// saved file with its .golden: comments, spacing, escapes, continuation
// lines and line endings of every other line must survive byte-for-byte.
func TestSaveRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "roundtrip", "*.properties"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			orig, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "keys.properties")
			if err := os.WriteFile(path, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := OpenWith(path, Options{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			edit := only(t, s, "Edit Me")
			sp := SpecOf(edit)
			sp.Rooms = []string{"edited-*"}
			sp.MaxParticipants = 7
			if _, err := s.Edit(edit.ID, sp); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Revoke(only(t, s, "Revoke Me").ID); err != nil {
				t.Fatal(err)
			}
			exp := time.Date(2027, 3, 2, 0, 0, 0, 0, time.UTC)
			if _, err := s.add("kf_golden", Spec{Name: "Added", Rooms: []string{"a", "b"}, Expires: exp}); err != nil {
				t.Fatal(err)
			}
			got := []byte(readFile(t, path))
			golden := strings.TrimSuffix(in, ".properties") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("saved file differs from %s:\n%q\nwant:\n%q", golden, got, want)
			}
			// The result loads, with the edits in force and the rest as it was.
			d := parse(path, got)
			if len(d.errs) > 0 {
				t.Fatalf("saved file does not parse: %v", d.errs)
			}
			before := parse(in, orig)
			if len(d.entries) != len(before.entries) {
				t.Fatalf("%d entries after, %d before (one revoked, one added)", len(d.entries), len(before.entries))
			}
		})
	}
}

func only(t *testing.T, s *Store, name string) *Entry {
	t.Helper()
	es, err := s.Find(name)
	if err != nil || len(es) != 1 {
		t.Fatalf("Find(%q) = %v, %v", name, es, err)
	}
	return es[0]
}

// render writes the entries of d as a fresh file, one line each.
func render(d *document) []byte {
	var b bytes.Buffer
	for i := range d.recs {
		rec := &d.recs[i]
		e := rec.entry
		if e == nil {
			continue
		}
		if e.Hashed {
			b.WriteString(hashedPrefix + e.ID)
		} else {
			b.WriteString(escapeKey(rec.key))
		}
		parts := []string{SpecOf(e).value()}
		for _, a := range e.Unknown {
			parts = append(parts, a.Name+"="+a.Value)
		}
		b.WriteString("=" + escapeValue(strings.Join(parts, "; ")) + "\n")
	}
	return b.Bytes()
}

func sameEntry(a, b *Entry) bool {
	return a.ID == b.ID && a.foldID == b.foldID && a.Hashed == b.Hashed && a.Name == b.Name &&
		slices.Equal(a.Rooms, b.Rooms) && a.Expires.Equal(b.Expires) &&
		a.MaxParticipants == b.MaxParticipants && slices.Equal(a.Unknown, b.Unknown)
}

func FuzzParseSaveParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "roundtrip", "*.properties"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{"a=A\n", "k\\\n=v", "a\\u0041=b;rooms=x*", "sha256:" + HashKey("x") + ":N; max-participants=2", "#c\r\n a : b ; z=1\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := parse("f", data)
		lines := 1 + bytes.Count(data, []byte{'\n'}) + bytes.Count(data, []byte{'\r'})
		for _, e := range append(d.errs, d.warns...) {
			if e.Line < 1 || e.Line > lines || e.File != "f" {
				t.Fatalf("problem at line %d of a %d-line file: %v", e.Line, lines, e)
			}
		}
		if len(d.errs) > 0 {
			return
		}
		// 1. The entries written afresh read back the same.
		out := render(d)
		d2 := parse("f", out)
		if len(d2.errs) > 0 {
			t.Fatalf("rendered file does not parse: %v\n%q\nfrom %q", d2.errs[0], out, data)
		}
		if len(d2.entries) != len(d.entries) {
			t.Fatalf("%d entries, %d after render", len(d.entries), len(d2.entries))
		}
		for i := range d.entries {
			if !sameEntry(d.entries[i], d2.entries[i]) {
				t.Fatalf("entry %d: %+v became %+v\n%q", i, d.entries[i], d2.entries[i], out)
			}
		}
		// 2. Adding a key appends one entry and changes no other.
		added := parse("f", addDoc(d, HashKey("kf_fuzz"), Spec{Name: "Fuzz", Rooms: []string{"r-*"}}))
		if len(added.errs) > 0 || len(added.entries) != len(d.entries)+1 {
			t.Fatalf("after add: %v, %d entries, want %d", added.errs, len(added.entries), len(d.entries)+1)
		}
		if last := added.entries[len(d.entries)]; last.ID != HashKey("kf_fuzz") || last.Name != "Fuzz" || len(last.Rooms) != 1 {
			t.Fatalf("added entry %+v", last)
		}
		for i := range d.entries {
			if !sameEntry(d.entries[i], added.entries[i]) {
				t.Fatalf("entry %d changed by an add: %+v", i, added.entries[i])
			}
		}
		// 2b. Hashing the plaintext keys in place keeps every record, key,
		// name and attribute; only the rewritten entries change form.
		for _, mixedCase := range []bool{false, true} {
			out, hashed, _ := hashDoc(d, mixedCase)
			if h := parse("f", out); !hashedAsIntended(d, h, hashed) {
				t.Fatalf("hashing (mixed case %v) changed the file's meaning: %v\n%q\nfrom %q", mixedCase, h.errs, out, data)
			}
		}
		if len(d.entries) == 0 {
			return
		}
		// 3. Editing one entry changes that entry only.
		e := d.entries[0]
		if same, ok := editDoc(d, e.ID, SpecOf(e)); !ok || !bytes.Equal(same, data) {
			t.Fatalf("an edit that changes nothing changed the file:\n%q\nfrom %q", same, data)
		}
		sp := SpecOf(e)
		sp.Name = "Edited"
		sp.MaxParticipants++
		if len(data)%2 == 0 { // vary which attributes change
			sp.Rooms = []string{"z*", "y"}
			sp.Expires = time.Date(2031, 5, 6, 0, 0, 0, 0, time.UTC)
		}
		edited, ok := editDoc(d, e.ID, sp)
		if !ok {
			t.Fatal("editDoc found no entry")
		}
		d3 := parse("f", edited)
		if len(d3.errs) > 0 || len(d3.entries) != len(d.entries) {
			t.Fatalf("edited file: %v, %d entries\n%q", d3.errs, len(d3.entries), edited)
		}
		want := *e
		want.Name, want.MaxParticipants, want.Rooms, want.Expires = sp.Name, sp.MaxParticipants, sp.Rooms, sp.Expires
		if !sameEntry(d3.entries[0], &want) {
			t.Fatalf("edited entry %+v, want %+v\n%q", d3.entries[0], want, edited)
		}
		for i := 1; i < len(d.entries); i++ {
			if !sameEntry(d.entries[i], d3.entries[i]) {
				t.Fatalf("entry %d changed by an edit of entry 0: %+v", i, d3.entries[i])
			}
		}
		// 4. Revoking it removes every entry of that key and nothing else.
		revoked, gone := revokeDoc(d, e.ID)
		if gone == nil {
			t.Fatal("revokeDoc found no entry")
		}
		d4 := parse("f", revoked)
		if len(d4.errs) > 0 {
			t.Fatalf("file after revoke: %v", d4.errs)
		}
		var rest []*Entry
		for _, x := range d.entries {
			if x.ID != e.ID {
				rest = append(rest, x)
			}
		}
		if len(d4.entries) != len(rest) {
			t.Fatalf("%d entries after revoke, want %d", len(d4.entries), len(rest))
		}
		for i := range rest {
			if !sameEntry(rest[i], d4.entries[i]) {
				t.Fatalf("entry %d changed by a revoke: %+v", i, d4.entries[i])
			}
		}
	})
}
