// Package audit is keyfocus's audit trail: an append-only file of JSON lines,
// one Record per line, fsync'd before a write returns. It holds who changed
// which key, who was admitted or refused, who was removed and why, operator
// actions and ssh console sessions. It never holds key material: keys appear
// only as fingerprints.
//
// Several processes append to the same file: the focus (admissions, refusals,
// removals, changes it sees through the key store's watch), and the tools that
// edit keys (keyfocus keys, the console). Every write is one write(2) on a
// file opened with O_APPEND, so lines from different processes never mix.
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"sync"
	"time"
)

// Record kinds (the "event" field). Add kinds, never change one's meaning.
const (
	KeyAdded      = "key_added"
	KeyEdited     = "key_edited"
	KeyRevoked    = "key_revoked"
	Admitted      = "admitted"
	Refused       = "refused"
	MemberRemoved = "member_removed"
	// MembershipRevoked: a room membership withdrawn for someone keyfocus did
	// not see in the room (they had left, or were in it while keyfocus was
	// down: Prosody then takes them out).
	MembershipRevoked = "membership_revoked"
	RoomEnded         = "room_ended"
	OperatorAction    = "operator_action"
	SSHSessionStart   = "ssh_session_start"
	SSHSessionEnd     = "ssh_session_end"
	StoreLoaded       = "store_loaded"
	EventsDropped     = "events_dropped"
	// RefusalsSuppressed counts refusals not written one by one (a flood).
	RefusalsSuppressed = "refusals_suppressed"
)

// Via values: where a key change was made.
const (
	ViaCLI     = "cli"     // keyfocus keys ...
	ViaConsole = "console" // the console in keyfocus run / attach
	ViaSSH     = "ssh"     // the ssh console
	ViaWatch   = "watch"   // seen only through the key store's watch
)

// Outside is the actor of a key change that no keyfocus tool claimed: an
// operator edited the key file by hand, or a tool without --audit did.
const Outside = "changed outside keyfocus"

// Record is one line of the audit log. Only the fields that apply are set.
type Record struct {
	Time  time.Time `json:"time"`
	Event string    `json:"event"`
	// Actor is who did it: "user:NAME" for a local user, "ssh:SHA256:..." for
	// an ssh console session's key, Outside, or the focus's own reasons
	// ("revocation", "expiry", "operator") for removals it made.
	Actor string `json:"actor,omitempty"`
	Via   string `json:"via,omitempty"`
	// Keys is the key file a key change was made to (absolute path).
	Keys        string   `json:"keys,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"` // of the key; never the key
	Client      string   `json:"client,omitempty"`      // client name of the key
	Changed     []string `json:"changed,omitempty"`     // attributes an edit changed
	Room        string   `json:"room,omitempty"`
	Requester   string   `json:"requester,omitempty"` // full JID
	Nick        string   `json:"nick,omitempty"`
	Action      string   `json:"action,omitempty"` // operator action: remove_member, end_room
	Reason      string   `json:"reason,omitempty"`
	Code        int      `json:"code,omitempty"`
	LatencyMS   float64  `json:"latency_ms,omitempty"`
	Count       int      `json:"count,omitempty"`
	Session     string   `json:"session,omitempty"` // ssh session id
	Remote      string   `json:"remote,omitempty"`  // ssh client address
	Error       string   `json:"error,omitempty"`   // an operator action that failed
	PID         int      `json:"pid,omitempty"`
}

// Log is an open audit file. It is safe for concurrent use.
type Log struct {
	path string
	mu   sync.Mutex
	f    *os.File
	pid  int
	buf  bytes.Buffer
}

// Open opens (creating it 0600 if missing) the audit file at path for
// appending. An existing file readable by others is tightened to 0600.
func Open(path string) (*Log, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	return &Log{path: path, f: f, pid: os.Getpid()}, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w (check --audit and that the folder exists and is writable by this user)", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open audit log: %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit log %s is readable by others (%v) and cannot be made 0600: %w", path, fi.Mode().Perm(), err)
		}
	}
	return f, nil
}

// Path is the file this log appends to.
func (l *Log) Path() string { return l.path }

// Write appends records and fsyncs the file before returning. All records go
// in one write, so they land together and never interleave with another
// process's lines. Records with a zero Time get the current time.
func (l *Log) Write(rs ...Record) error {
	if len(rs) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("audit log is closed")
	}
	l.buf.Reset()
	now := time.Now().UTC()
	enc := json.NewEncoder(&l.buf)
	enc.SetEscapeHTML(false)
	for _, r := range rs {
		if r.Time.IsZero() {
			r.Time = now
		}
		if r.PID == 0 {
			r.PID = l.pid
		}
		if err := enc.Encode(&r); err != nil { // Encode adds the newline
			return fmt.Errorf("audit record: %w", err)
		}
	}
	if _, err := l.f.Write(l.buf.Bytes()); err != nil {
		return fmt.Errorf("write audit log %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("fsync audit log %s: %w", l.path, err)
	}
	return nil
}

// Reopen closes the file and opens path again: after logrotate moved it away,
// writes go to a fresh file. Called on SIGHUP.
func (l *Log) Reopen() error {
	f, err := openFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Close closes the file. Writes after Close fail.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Append opens path, appends rs with fsync, and closes it: what a short-lived
// tool (keyfocus keys add) uses.
func Append(path string, rs ...Record) error {
	l, err := Open(path)
	if err != nil {
		return err
	}
	werr := l.Write(rs...)
	cerr := l.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// LocalActor names the local user running this process, "user:NAME". Under
// sudo it names the user who ran sudo: "user:alice (sudo as keyfocus)".
func LocalActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	} else if v := os.Getenv("USER"); v != "" {
		name = v
	}
	if su := os.Getenv("SUDO_USER"); su != "" && su != name {
		return "user:" + su + " (sudo as " + name + ")"
	}
	return "user:" + name
}

// maxLine bounds one audit line when reading; longer lines are skipped.
const maxLine = 64 << 10

// Tail returns the last n records of the audit file at path, oldest first.
// Lines that do not parse (a torn last line, another tool's junk) are
// skipped. A missing file gives no records and no error.
func Tail(path string, n int) ([]Record, error) {
	if n <= 0 {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	// Read backwards in chunks until n complete lines are in hand.
	size := fi.Size()
	chunk := int64(16 << 10)
	var data []byte
	for off := size; ; {
		start := max(off-chunk, 0)
		b := make([]byte, off-start)
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		data = append(b, data...)
		off = start
		if off == 0 || bytes.Count(data, []byte{'\n'}) > n || int64(len(data)) > int64(n+1)*maxLine {
			if off > 0 { // drop the partial first line
				if i := bytes.IndexByte(data, '\n'); i >= 0 {
					data = data[i+1:]
				}
			}
			break
		}
		chunk *= 2
	}
	return parseLast(data, n), nil
}

// parseLast parses lines from the end of data until it has n records (lines
// that do not parse are skipped), and returns them oldest first.
func parseLast(data []byte, n int) []Record {
	recs := make([]Record, 0, n)
	for end := len(data); end > 0 && len(recs) < n; {
		start := bytes.LastIndexByte(data[:end], '\n') + 1
		if start == end { // an empty line (or the file's final newline)
			end--
			continue
		}
		line := data[start:end]
		end = start - 1
		var r Record
		if len(line) <= maxLine && json.Unmarshal(line, &r) == nil && r.Event != "" {
			recs = append(recs, r)
		}
	}
	slices.Reverse(recs)
	return recs
}

func parseLines(data []byte) []Record { return parseLinesWith(data, nil) }

// parseLinesWith parses only the lines that contain only (all lines if nil):
// a cheap filter before the JSON decoding.
func parseLinesWith(data, only []byte) []Record {
	var recs []Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 || only != nil && !bytes.Contains(line, only) {
			continue
		}
		var r Record
		if json.Unmarshal(line, &r) == nil && r.Event != "" {
			recs = append(recs, r)
		}
	}
	return recs
}

// follower reads the records other writers appended since its last read.
type follower struct {
	path string
	off  int64
	// only, if set, limits the records returned to lines containing it.
	only []byte
}

// startFollowing returns a follower positioned at the current end of path.
func startFollowing(path string) *follower {
	fw := &follower{path: path}
	if fi, err := os.Stat(path); err == nil {
		fw.off = fi.Size()
	}
	return fw
}

// next returns the complete lines appended since the last call. A file that
// shrank (rotated, truncated) is read from its start.
func (fw *follower) next() ([]Record, error) {
	f, err := os.Open(fw.path)
	if errors.Is(err, os.ErrNotExist) {
		fw.off = 0
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < fw.off {
		fw.off = 0
	}
	if fi.Size() == fw.off {
		return nil, nil
	}
	b := make([]byte, fi.Size()-fw.off)
	n, err := f.ReadAt(b, fw.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	b = b[:n]
	// Only complete lines: a line being written stays for the next call.
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		return nil, nil
	}
	fw.off += int64(end + 1)
	return parseLinesWith(b[:end+1], fw.only), nil
}
