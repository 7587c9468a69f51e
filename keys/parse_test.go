package keys

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// want describes one expected entry; key is the plaintext key, or
// "sha256:<hex>" for hashed entries.
type want struct {
	key     string
	name    string
	line    int
	rooms   []string
	expires string // RFC 3339, "" for never
	max     int
	unknown []Attr
}

func TestParse(t *testing.T) {
	h := HashKey("kf_secret")
	tests := []struct {
		name     string
		in       string
		want     []want
		errs     []string // substrings the errors must contain ("k.properties:LINE: ..." elided to "LINE: ...")
		warnings []string // substrings the warnings must contain
	}{
		{name: "empty", in: ""},
		{name: "seed", in: "admin123=TTND\n", want: []want{{key: "admin123", name: "TTND", line: 1}}},
		{name: "no final newline", in: "a=A", want: []want{{key: "a", name: "A", line: 1}}},
		{name: "colon separator", in: "a: A\n", want: []want{{key: "a", name: "A", line: 1}}},
		{name: "blank separator", in: "a   A B\n", want: []want{{key: "a", name: "A B", line: 1}}},
		{name: "blank and equals", in: "  a \t = \f A\n", want: []want{{key: "a", name: "A", line: 1}}},
		{name: "equals in value", in: "a==A\n", want: []want{{key: "a", name: "=A", line: 1}}},
		{name: "comments and blanks", in: "# c\n! c\n\n   \n  # indented\na=A\n", want: []want{{key: "a", name: "A", line: 6}}},
		{name: "crlf", in: "# c\r\na=A\r\nb=B\r\n", want: []want{{key: "a", name: "A", line: 2}, {key: "b", name: "B", line: 3}}},
		{name: "cr only", in: "a=A\rb=B\r", want: []want{{key: "a", name: "A", line: 1}, {key: "b", name: "B", line: 2}}},
		{name: "escaped separators in key", in: `a\=b\:c\ d=N` + "\n", want: []want{{key: "a=b:c d", name: "N", line: 1}}},
		{name: "escapes in value", in: `k=A\tB\u00e9\\` + "\n", want: []want{{key: "k", name: "A\tBé\\", line: 1}}},
		{name: "surrogate pair", in: `k=\ud83d\ude00` + "\n", want: []want{{key: "k", name: "😀", line: 1}}},
		{name: "unknown escape is the char", in: `k=\q\#` + "\n", want: []want{{key: "k", name: "q#", line: 1}}},
		{name: "continuation", in: "k=Acme \\\n    Corp; rooms=a,\\\n  b\nx=X\n",
			want: []want{{key: "k", name: "Acme Corp", line: 1, rooms: []string{"a", "b"}}, {key: "x", name: "X", line: 4}}},
		{name: "continuation is not a comment", in: "k=A\\\n#B\n", want: []want{{key: "k", name: "A#B", line: 1}}},
		{name: "even backslashes do not continue", in: "k=A\\\\\nx=X\n", want: []want{{key: "k", name: `A\`, line: 1}, {key: "x", name: "X", line: 2}}},
		{name: "continuation at end of file", in: "k=A\\", want: []want{{key: "k", name: "A", line: 1}}, warnings: []string{"1: the last line ends in a backslash"}},
		{name: "bom", in: "\uFEFFa=A\n", want: []want{{key: "a", name: "A", line: 1}}},
		{name: "hashed", in: "sha256:" + strings.ToUpper(h) + "=Acme; rooms=acme-*,board; expires=2027-03-01; max-participants=25\n",
			want: []want{{key: "sha256:" + h, name: "Acme", line: 1, rooms: []string{"acme-*", "board"}, expires: "2027-03-02T00:00:00Z", max: 25}}},
		{name: "hashed escaped colon", in: "sha256\\:" + h + "=Acme\n", want: []want{{key: "sha256:" + h, name: "Acme", line: 1}}},
		{name: "rfc3339 expiry", in: "k=A; expires=2027-03-01T17:00:00+01:00\n", want: []want{{key: "k", name: "A", line: 1, expires: "2027-03-01T16:00:00Z"}}},
		{name: "attribute spacing and case", in: "k = A ;ROOMS = x ; Max-Participants= 3 ;\n", want: []want{{key: "k", name: "A", line: 1, rooms: []string{"x"}, max: 3}}},
		{name: "unknown attribute kept", in: "k=A; tier=gold\n", want: []want{{key: "k", name: "A", line: 1, unknown: []Attr{{"tier", "gold"}}}},
			warnings: []string{`1: unknown attribute "tier"`}},
		{name: "duplicate key", in: "k=A\nk=B\n", want: []want{{key: "k", name: "A", line: 1}, {key: "k", name: "B", line: 2}},
			warnings: []string{"2: duplicate key"}},
		{name: "plaintext and hashed duplicate", in: "kf_secret=A\nsha256:" + h + "=B\n",
			want: []want{{key: "kf_secret", name: "A", line: 1}, {key: "sha256:" + h, name: "B", line: 2}}, warnings: []string{"2: duplicate key"}},
		{name: "case duplicate", in: "Key=A\nkey=B\n", want: []want{{key: "Key", name: "A", line: 1}, {key: "key", name: "B", line: 2}},
			warnings: []string{"2: key", "only in case"}},

		{name: "no name", in: "k=\n", errs: []string{"1: key", "has no client name"}},
		{name: "only key", in: "# x\nk\n", errs: []string{"2: key"}},
		{name: "bad hash", in: "sha256:abc=A\n", errs: []string{"1: sha256: must be followed by the 64 hex digits"}},
		{name: "bad escape in key", in: "my\\u12zzsecret=A\n", errs: []string{"1: the key has a malformed"}},
		{name: "bad unicode escape", in: "k=\\u12x4\n", errs: []string{`1: value: malformed \uXXXX escape`}},
		{name: "short unicode escape", in: "k=\\u12", errs: []string{`1: value: malformed \uXXXX`}},
		{name: "bad expiry", in: "a=A\nk=B; expires=soon\n", errs: []string{`2: expires: "soon" is neither a date`}},
		{name: "bad max", in: "k=B; max-participants=-1\n", errs: []string{`1: max-participants: "-1"`}},
		{name: "bad glob", in: "k=B; rooms=[a\n", errs: []string{`1: rooms: room pattern "[a" is not a valid glob`}},
		{name: "glob with a trailing escape", in: "k=B; rooms=a\\\\\n", errs: []string{`1: rooms: room pattern "a\\" is not a valid glob`}},
		{name: "empty rooms", in: "k=B; rooms=\n", errs: []string{"1: rooms: no room given"}},
		{name: "not an attribute", in: "k=B; vip\n", errs: []string{`1: "vip" is not an attribute`}},
		{name: "attribute twice", in: "k=B; rooms=a; rooms=b\n", errs: []string{`1: attribute "rooms" given twice`}},
		{name: "several errors", in: "a=\nb=B\nc=C; x\n", errs: []string{"1: key", "3: \"x\""}},
		{name: "not utf-8", in: "a=A\nb=\xff\n", errs: []string{"2: the file is not valid UTF-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := parse("k.properties", []byte(tt.in))
			var errs []string
			for _, e := range d.errs {
				errs = append(errs, e.Error())
			}
			matchAll(t, "error", errs, tt.errs)
			if strings.Contains(strings.Join(errs, " "), "secret") {
				t.Errorf("an error quotes the key: %q", errs)
			}
			matchAll(t, "warning", d.warnings, tt.warnings)
			if len(tt.errs) > 0 {
				return
			}
			if len(d.entries) != len(tt.want) {
				t.Fatalf("got %d entries, want %d", len(d.entries), len(tt.want))
			}
			for i, w := range tt.want {
				checkEntry(t, d.entries[i], w)
			}
		})
	}
}

// matchAll checks that every wanted substring occurs in the messages got,
// and that there are no messages when none are wanted.
func matchAll(t *testing.T, what string, got, want []string) {
	t.Helper()
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("no %s containing %q in %q", what, w, got)
		}
	}
	if len(want) == 0 && len(got) > 0 {
		t.Errorf("unexpected %ss: %q", what, got)
	}
}

func checkEntry(t *testing.T, e *Entry, w want) {
	t.Helper()
	if strings.HasPrefix(w.key, "sha256:") {
		if !e.Hashed || e.ID != w.key[7:] || e.foldID != "" {
			t.Errorf("line %d: got hashed=%v id=%s, want hashed id %s", e.Line, e.Hashed, e.ID, w.key[7:])
		}
	} else if e.Hashed || e.ID != HashKey(w.key) || e.foldID != HashKey(strings.ToLower(w.key)) {
		t.Errorf("line %d: got hashed=%v id=%s, want plaintext key %q", e.Line, e.Hashed, e.ID, w.key)
	}
	if e.Fingerprint != e.ID[:8] {
		t.Errorf("fingerprint %q, want %q", e.Fingerprint, e.ID[:8])
	}
	if e.Name != w.name || e.Line != w.line || !slices.Equal(e.Rooms, w.rooms) || e.MaxParticipants != w.max || !slices.Equal(e.Unknown, w.unknown) {
		t.Errorf("got %q line %d rooms %q max %d unknown %v; want %q line %d rooms %q max %d unknown %v",
			e.Name, e.Line, e.Rooms, e.MaxParticipants, e.Unknown, w.name, w.line, w.rooms, w.max, w.unknown)
	}
	exp := ""
	if !e.Expires.IsZero() {
		exp = e.Expires.UTC().Format(time.RFC3339)
	}
	if exp != w.expires {
		t.Errorf("expires %q, want %q", exp, w.expires)
	}
}

func TestExpires(t *testing.T) {
	tests := []struct {
		in, want, format string
	}{
		{"2027-03-01", "2027-03-02T00:00:00Z", "2027-03-01"},
		{"2027-12-31", "2028-01-01T00:00:00Z", "2027-12-31"},
		{"2027-03-01T17:30:00Z", "2027-03-01T17:30:00Z", "2027-03-01T17:30:00Z"},
		{"2027-03-01T17:30:00+02:00", "2027-03-01T15:30:00Z", "2027-03-01T17:30:00+02:00"},
	}
	for _, tt := range tests {
		got, err := ParseExpires(tt.in)
		if err != nil {
			t.Fatalf("ParseExpires(%q): %v", tt.in, err)
		}
		if g := got.UTC().Format(time.RFC3339); g != tt.want {
			t.Errorf("ParseExpires(%q) = %s, want %s", tt.in, g, tt.want)
		}
		if f := FormatExpires(got); f != tt.format {
			t.Errorf("FormatExpires(%s) = %s, want %s", got, f, tt.format)
		}
	}
	for _, bad := range []string{"", "tomorrow", "2027-13-01", "01.03.2027"} {
		if _, err := ParseExpires(bad); err == nil {
			t.Errorf("ParseExpires(%q) gave no error", bad)
		}
	}
}

func TestExpiredBoundary(t *testing.T) {
	d := parse("k", []byte("k=A; expires=2027-03-01\n"))
	e := d.entries[0]
	if e.Expired(time.Date(2027, 3, 1, 23, 59, 59, 0, time.UTC)) {
		t.Error("expired during its last day")
	}
	if !e.Expired(time.Date(2027, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Error("not expired the day after")
	}
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if len(k) != 3+32 || !strings.HasPrefix(k, "kf_") || strings.ToLower(k) != k || strings.Contains(k, "=") {
			t.Fatalf("bad key shape %q", k)
		}
		if seen[k] {
			t.Fatalf("key %q generated twice", k)
		}
		seen[k] = true
	}
}
