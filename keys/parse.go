package keys

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The key file is a Java properties file (java.util.Properties.load syntax):
//
//   - natural lines end with \n, \r or \r\n;
//   - a line whose first non-blank character is '#' or '!' is a comment;
//   - a line ending in an odd number of backslashes continues on the next
//     line, whose leading blanks are skipped (a continuation line is never a
//     comment);
//   - the key ends at the first unescaped '=', ':' or blank; blanks around
//     the separator are skipped;
//   - escapes: \t \n \r \f, \uXXXX, and a backslash before any other
//     character stands for that character.
//
// One deliberate difference: a key that starts with "sha256:" keeps that
// colon (DESIGN.md writes hashed keys as "sha256:<hex>=name" unescaped).
//
// The value is "client name; attr=value; ...", see parseValue.

// hashedPrefix marks a key stored as the SHA-256 of the key.
const hashedPrefix = "sha256:"

// Known attribute names.
const (
	attrRooms   = "rooms"
	attrExpires = "expires"
	attrMax     = "max-participants"
)

// ParseError is a problem in the key file that stops it from loading.
type ParseError struct {
	File string
	Line int
	Msg  string
	// More is how many further errors the file has (see keyfocus keys check).
	More int
}

func (e *ParseError) Error() string {
	s := fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	if e.More > 0 {
		s += fmt.Sprintf(" (and %d more; run 'keyfocus keys check %s')", e.More, e.File)
	}
	return s
}

type recKind uint8

const (
	recBlank recKind = iota
	recComment
	recEntry
)

// segment maps a piece of a logical line back to the raw bytes.
type segment struct {
	raw     int // offset of the piece in the file
	logical int // offset of the piece in the logical line
	n       int // length
}

// record is one logical line of the file: a blank line, a comment or an
// entry, with the exact bytes it occupies so that saves can keep every
// untouched record byte-for-byte.
type record struct {
	kind       recKind
	start, end int // byte range in the file, including the line terminator(s)
	contentEnd int // end of the last line's content (before its terminator)
	line       int // 1-based line where the record starts
	keyRaw     int // offset in the file where the key begins (entries)
	valueRaw   int // offset in the file where the value begins (entries)
	key        string
	value      string
	entry      *Entry // nil if the record has errors
}

// document is a parsed key file.
type document struct {
	path     string
	data     []byte
	recs     []record
	entries  []*Entry
	warnings []string
	warns    []*ParseError // the warnings, structured
	errs     []*ParseError
	newline  string    // the file's line terminator, "\n" unless it uses another
	snap     *Snapshot // the entries indexed (built by check)

	lastExpires   string // see expires
	lastExpiresAt time.Time
}

func (d *document) errorf(line int, format string, a ...any) {
	d.errs = append(d.errs, &ParseError{File: d.path, Line: line, Msg: fmt.Sprintf(format, a...)})
}

func (d *document) warnf(line int, format string, a ...any) {
	w := &ParseError{File: d.path, Line: line, Msg: fmt.Sprintf(format, a...)}
	d.warns = append(d.warns, w)
	d.warnings = append(d.warnings, w.Error())
}

// snapshot returns the snapshot of a document without errors. Call it once:
// the snapshot is published by the caller and immutable from then on.
func (d *document) snapshot(now time.Time) *Snapshot {
	s := d.snap
	s.LoadedAt = now
	s.Warnings = d.warnings
	return s
}

// err returns the document's first error (with the count of the others), or nil.
func (d *document) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	e := *d.errs[0]
	e.More = len(d.errs) - 1
	return &e
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\f' }

// lineEnd returns the end of the content of the natural line starting at i,
// and the start of the next line.
func lineEnd(data []byte, i int) (contentEnd, next int) {
	for j := i; j < len(data); j++ {
		switch data[j] {
		case '\n':
			return j, j + 1
		case '\r':
			if j+1 < len(data) && data[j+1] == '\n' {
				return j, j + 2
			}
			return j, j + 1
		}
	}
	return len(data), len(data)
}

// parse reads a key file. It never fails as a whole: problems are collected
// in d.errs (fatal for loading) and d.warnings.
func parse(file string, data []byte) *document {
	d := &document{path: file, data: data, newline: "\n"}
	if !utf8.Valid(data) {
		// Find the line to point at.
		line := 1
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				d.errorf(line, "the file is not valid UTF-8; save it as UTF-8")
				return d
			}
			if data[i] == '\n' {
				line++
			}
			i += size
		}
	}
	for i := 0; i < len(data); i++ {
		if data[i] == '\r' {
			if i+1 < len(data) && data[i+1] == '\n' {
				d.newline = "\r\n"
			} else {
				d.newline = "\r"
			}
			break
		}
		if data[i] == '\n' {
			break
		}
	}
	d.recs = make([]record, 0, bytes.Count(data, []byte{'\n'})+1)
	pos, line := 0, 1
	if strings.HasPrefix(string(data[:min(3, len(data))]), "\uFEFF") {
		pos = 3 // a byte order mark: kept on save, never part of a key
	}
	for pos < len(data) {
		start := pos
		if len(d.recs) == 0 {
			start = 0 // the first record owns the byte order mark
		}
		startLine := line
		cEnd, next := lineEnd(data, pos)
		i := pos
		for i < cEnd && isBlank(data[i]) {
			i++
		}
		if i == cEnd || data[i] == '#' || data[i] == '!' {
			kind := recBlank
			if i < cEnd {
				kind = recComment
			}
			d.recs = append(d.recs, record{kind: kind, start: start, end: next, contentEnd: cEnd, line: startLine})
			pos, line = next, line+1
			continue
		}
		// An entry: gather the logical line.
		var logical []byte
		var segBuf [4]segment
		segs := segBuf[:0]
		contentEnd := cEnd
		for {
			seg := data[i:cEnd]
			bs := 0
			for k := len(seg) - 1; k >= 0 && seg[k] == '\\'; k-- {
				bs++
			}
			cont := bs%2 == 1
			if cont {
				seg = seg[:len(seg)-1]
			}
			segs = append(segs, segment{raw: i, logical: len(logical), n: len(seg)})
			if len(segs) == 1 && !cont {
				logical = seg // the common case: one line, no copy
			} else {
				logical = append(logical, seg...)
			}
			contentEnd = cEnd
			pos, line = next, line+1
			if !cont {
				break
			}
			if pos >= len(data) {
				d.warnf(startLine, "the last line ends in a backslash (a line continuation with no next line); the backslash is ignored")
				break
			}
			cEnd, next = lineEnd(data, pos)
			i = pos
			for i < cEnd && isBlank(data[i]) {
				i++
			}
		}
		rec := record{kind: recEntry, start: start, end: pos, contentEnd: contentEnd, line: startLine}
		d.parseEntry(&rec, logical, segs)
		d.recs = append(d.recs, rec)
	}
	d.check()
	return d
}

// toRaw maps an offset in the logical line to an offset in the file.
func toRaw(segs []segment, off int, contentEnd int) int {
	for _, s := range segs {
		if off < s.logical+s.n {
			return s.raw + off - s.logical
		}
	}
	return contentEnd
}

func (d *document) parseEntry(rec *record, logical []byte, segs []segment) {
	limit := len(logical)
	keyLen, valueStart := 0, limit
	hasSep, escaped := false, false
	if bytes.HasPrefix(logical, []byte(hashedPrefix)) {
		keyLen = len(hashedPrefix)
	}
	for ; keyLen < limit; keyLen++ {
		c := logical[keyLen]
		if !escaped && (c == '=' || c == ':') {
			valueStart, hasSep = keyLen+1, true
			break
		}
		if !escaped && isBlank(c) {
			valueStart = keyLen + 1
			break
		}
		if c == '\\' {
			escaped = !escaped
		} else {
			escaped = false
		}
	}
	for valueStart < limit {
		c := logical[valueStart]
		if !isBlank(c) {
			if !hasSep && (c == '=' || c == ':') {
				hasSep = true
			} else {
				break
			}
		}
		valueStart++
	}
	key, err := unescape(logical[:keyLen])
	if err != nil {
		// Never quote the key: error messages end up in logs.
		d.errorf(rec.line, `the key has a malformed \uXXXX escape (\u needs 4 hex digits; write a backslash as \\)`)
		return
	}
	value, err := unescape(logical[valueStart:])
	if err != nil {
		d.errorf(rec.line, "value: %v", err)
		return
	}
	rec.key, rec.value = key, value
	rec.keyRaw = segs[0].raw
	rec.valueRaw = toRaw(segs, valueStart, rec.contentEnd)
	var buf [8]string
	rec.entry = d.parseValue(rec.line, key, splitValueInto(buf[:0], value))
}

// unescape applies the properties escapes.
func unescape(b []byte) (string, error) {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b), nil
	}
	var sb strings.Builder
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			sb.WriteByte(c)
			continue
		}
		i++
		if i >= len(b) {
			break // a lone trailing backslash (continuation at end of file)
		}
		switch c = b[i]; c {
		case 't':
			sb.WriteByte('\t')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 'f':
			sb.WriteByte('\f')
		case 'u':
			if i+4 >= len(b) {
				return "", fmt.Errorf(`malformed \uXXXX escape: need 4 hex digits`)
			}
			v, err := strconv.ParseUint(string(b[i+1:i+5]), 16, 16)
			if err != nil {
				return "", fmt.Errorf(`malformed \uXXXX escape %q: need 4 hex digits`, `\u`+string(b[i+1:i+5]))
			}
			r := rune(v)
			i += 4
			// A surrogate pair written as two escapes.
			if r >= 0xD800 && r < 0xDC00 && i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
				if lo, err := strconv.ParseUint(string(b[i+3:i+7]), 16, 16); err == nil && lo >= 0xDC00 && lo < 0xE000 {
					r = (r-0xD800)<<10 + (rune(lo) - 0xDC00) + 0x10000
					i += 6
				}
			}
			if !utf8.ValidRune(r) {
				return "", fmt.Errorf(`\u escape %04X is not a character`, v)
			}
			sb.WriteRune(r)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String(), nil
}

// splitValue splits a value at ';' and trims each part. Empty attribute
// parts (a trailing ';') are dropped.
func splitValue(v string) []string {
	return splitValueInto(make([]string, 0, strings.Count(v, ";")+1), v)
}

// splitValueInto is splitValue appending to parts.
func splitValueInto(parts []string, v string) []string {
	for i := 0; ; i++ {
		p, rest, more := strings.Cut(v, ";")
		if p = strings.TrimSpace(p); i == 0 || p != "" {
			parts = append(parts, p)
		}
		if !more {
			return parts
		}
		v = rest
	}
}

// parseValue builds the entry of one line; errors go to d.
func (d *document) parseValue(line int, key string, parts []string) *Entry {
	e := &Entry{Line: line}
	switch {
	case key == "":
		d.errorf(line, "empty key")
		return nil
	case strings.HasPrefix(key, hashedPrefix):
		h := key[len(hashedPrefix):]
		isHex, upper := hexCase(h)
		if len(h) != 64 || !isHex {
			d.errorf(line, "%s must be followed by the 64 hex digits of the key's SHA-256", hashedPrefix)
			return nil
		}
		if upper {
			h = strings.ToLower(h)
		}
		e.ID, e.Hashed = h, true
	default:
		e.ID, e.foldID = HashKey(key), HashKey(strings.ToLower(key))
	}
	e.Fingerprint = e.ID[:8]
	ok := true
	e.Name = parts[0]
	if e.Name == "" {
		d.errorf(line, "key %s has no client name (want KEY=client name; attr=value ...)", e.Fingerprint)
		ok = false
	}
	var seenBuf [4]string
	seen := seenBuf[:0] // attribute names so far (lower case)
	for _, p := range parts[1:] {
		name, val, found := strings.Cut(p, "=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		if !found || name == "" {
			d.errorf(line, "%q is not an attribute (want attr=value, e.g. rooms=team-*)", p)
			ok = false
			continue
		}
		lname := knownAttr(name)
		if slices.Contains(seen, lname) {
			d.errorf(line, "attribute %q given twice", name)
			ok = false
			continue
		}
		seen = append(seen, lname)
		switch lname {
		case attrRooms:
			rooms, err := ParseRooms(val)
			if err != nil {
				d.errorf(line, "rooms: %v", err)
				ok = false
			}
			e.Rooms = rooms
		case attrExpires:
			t, err := d.expires(val)
			if err != nil {
				d.errorf(line, "expires: %v", err)
				ok = false
			}
			e.Expires = t
		case attrMax:
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				d.errorf(line, "max-participants: %q is not a whole number >= 0 (0 means no limit)", val)
				ok = false
			}
			e.MaxParticipants = n
		default:
			e.Unknown = append(e.Unknown, Attr{Name: name, Value: val})
			d.warnf(line, "unknown attribute %q (kept, not enforced)", name)
		}
	}
	if !ok {
		return nil
	}
	return e
}

// expires is ParseExpires with a memory of the last value: files often give
// many keys the same expiry.
func (d *document) expires(val string) (time.Time, error) {
	if val == d.lastExpires && val != "" {
		return d.lastExpiresAt, nil
	}
	t, err := ParseExpires(val)
	if err == nil {
		d.lastExpires, d.lastExpiresAt = val, t
	}
	return t, err
}

// knownAttr returns the canonical name of a known attribute, else name
// in lower case.
func knownAttr(name string) string {
	for _, k := range [...]string{attrRooms, attrExpires, attrMax} {
		if strings.EqualFold(name, k) {
			return k
		}
	}
	return strings.ToLower(name)
}

// check collects the entries, indexes them (the snapshot's maps) and
// reports duplicates.
func (d *document) check() {
	d.entries = make([]*Entry, 0, len(d.recs))
	for i := range d.recs {
		if e := d.recs[i].entry; e != nil {
			d.entries = append(d.entries, e)
		}
	}
	d.snap = NewSnapshot(d.path, d.entries, time.Time{})
	if len(d.snap.byID) == len(d.entries) && len(d.snap.byFold) == len(d.entries) {
		return // no two entries share a key, even ignoring case
	}
	for _, e := range d.entries {
		if first := d.snap.byID[e.ID]; first != e {
			d.warnf(e.Line, "duplicate key %s (first on line %d, which wins; remove one)", e.Fingerprint, first.Line)
			continue
		}
		fold := e.foldID
		if fold == "" {
			fold = e.ID
		}
		if first := d.snap.byFold[fold]; first != e {
			d.warnf(e.Line, "key %s differs from the key on line %d only in case; where keys match ignoring case (room-name form) line %d wins", e.Fingerprint, first.Line, first.Line)
		}
	}
}

// CheckResult is what Check finds in a key file.
type CheckResult struct {
	Keys     int           // entries that parse
	Errors   []*ParseError // each stops the file from loading
	Warnings []*ParseError // non-fatal: unknown attributes, duplicates
}

// Check parses the key file at path without opening a store (nothing is
// created or watched). A missing or unreadable file is an error.
func Check(path string) (*CheckResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	d := parse(path, data)
	return &CheckResult{Keys: len(d.entries), Errors: d.errs, Warnings: d.warns}, nil
}

// hexDigit marks the hex digits: 1 for 0-9a-f, 2 for A-F.
var hexDigit = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] = 1
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = 1
	}
	for c := 'A'; c <= 'F'; c++ {
		t[c] = 2
	}
	return t
}()

func isHex(s string) bool {
	ok, _ := hexCase(s)
	return ok
}

// hexCase reports whether s is all hex digits, and whether any is upper case.
func hexCase(s string) (ok, upper bool) {
	var or uint8
	for i := 0; i < len(s); i++ {
		v := hexDigit[s[i]]
		if v == 0 {
			return false, false
		}
		or |= v
	}
	return true, or&2 != 0
}

// ParseRooms parses the rooms attribute: comma-separated glob patterns
// (path.Match syntax, matched case-insensitively against the room's local
// part). An empty list is an error: leave the attribute out to allow every room.
func ParseRooms(s string) ([]string, error) {
	rooms := make([]string, 0, strings.Count(s, ",")+1)
	for rest, more := s, true; more; {
		var p string
		p, rest, more = strings.Cut(rest, ",")
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		bad, glob := patternChars(p)
		if bad {
			return nil, fmt.Errorf("room pattern %q may not contain ';', '@' or blanks (use the room's name, e.g. team-*)", p)
		}
		if glob { // only '[' and '\\' can make a pattern malformed
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("room pattern %q is not a valid glob (use * and ? and [a-z])", p)
			}
		}
		rooms = append(rooms, p)
	}
	if len(rooms) == 0 {
		return nil, fmt.Errorf("no room given; leave the attribute out to allow every room")
	}
	return rooms, nil
}

// patternChars reports whether a room pattern has a character it may not
// (';', blank, '@'), and whether it has one that makes it a pattern that can
// be malformed ('[' or '\\').
func patternChars(p string) (bad, glob bool) {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case ';', ' ', '\t', '@':
			bad = true
		case '[', '\\':
			glob = true
		}
	}
	return bad, glob
}

// ParseExpires parses an expiry: a date (YYYY-MM-DD, meaning the end of that
// day UTC) or an RFC 3339 time.
func ParseExpires(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	t, err := time.Parse(time.DateOnly, s)
	if err == nil {
		t = t.AddDate(0, 0, 1)
	} else {
		t, err = time.Parse(time.RFC3339, s)
	}
	if err == nil {
		if u := t.UTC(); u.Year() < 1 || u.IsZero() {
			return time.Time{}, fmt.Errorf("%q is too far in the past to be an expiry", s)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a date (2027-03-01, meaning the end of that day UTC) nor an RFC 3339 time (2027-03-01T17:00:00Z)", s)
}

// FormatExpires is the inverse of ParseExpires: midnight UTC is written as
// the date of the day that ends then.
func FormatExpires(t time.Time) string {
	u := t.UTC()
	if u.Hour() == 0 && u.Minute() == 0 && u.Second() == 0 && u.Nanosecond() == 0 {
		if day := u.AddDate(0, 0, -1); day.Year() >= 1 && day.Year() <= 9999 {
			return day.Format(time.DateOnly)
		}
	}
	return t.Format(time.RFC3339Nano) // fractions of a second only when there are some
}
