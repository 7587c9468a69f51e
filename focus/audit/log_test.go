package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Fatalf("mode = %v, want 0600", got)
	}
}

func TestOpenTightensExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, []byte(`{"event":"admitted"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Append(path, Record{Event: Refused}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Fatalf("mode = %v, want 0600", got)
	}
	recs, err := Tail(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Event != Admitted || recs[1].Event != Refused {
		t.Fatalf("existing lines not kept: %+v", recs)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
	}{
		{"missing folder", filepath.Join(dir, "nope", "audit.jsonl")},
		{"a folder", dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if l, err := Open(tt.path); err == nil {
				l.Close()
				t.Fatalf("Open(%s) succeeded", tt.path)
			}
		})
	}
}

func TestWriteAfterClose(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := l.Write(Record{Event: Admitted}); err == nil {
		t.Fatal("write after close succeeded")
	}
}

// Several writers (as separate processes would) append at once: every line
// stays whole and nothing is lost.
func TestConcurrentWritersKeepLinesWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	const writers, each = 4, 200
	var wg sync.WaitGroup
	for w := range writers {
		l, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Batches of 3 records in one write.
				rs := []Record{
					{Event: Admitted, Client: fmt.Sprintf("w%d", w), Count: i, Room: strings.Repeat("r", 300)},
					{Event: Refused, Client: fmt.Sprintf("w%d", w), Count: i},
					{Event: MemberRemoved, Client: fmt.Sprintf("w%d", w), Count: i},
				}
				if err := l.Write(rs...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != writers*each*3 {
		t.Fatalf("%d lines, want %d", len(lines), writers*each*3)
	}
	next := map[string]int{}
	for i, line := range lines {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %d torn: %v", i+1, err)
		}
		if r.PID != os.Getpid() || r.Time.IsZero() {
			t.Fatalf("line %d lacks pid/time: %s", i+1, line)
		}
		if r.Event == Admitted {
			// A batch lands whole: the next two lines are the same writer's.
			if i+2 >= len(lines) || !strings.Contains(lines[i+1], `"client":"`+r.Client+`"`) || !strings.Contains(lines[i+2], `"client":"`+r.Client+`"`) {
				t.Fatalf("batch of %s split at line %d", r.Client, i+1)
			}
			if r.Count != next[r.Client] {
				t.Fatalf("%s: batch %d, want %d", r.Client, r.Count, next[r.Client])
			}
			next[r.Client]++
		}
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Enough data to cross several read chunks.
	for i := range 500 {
		if err := l.Write(Record{Event: Admitted, Count: i, Room: strings.Repeat("x", 200)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		n, want, first int
	}{
		{0, 0, 0},
		{1, 1, 499},
		{10, 10, 490},
		{300, 300, 200},
		{500, 500, 0},
		{1000, 500, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			recs, err := Tail(path, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != tt.want {
				t.Fatalf("got %d records, want %d", len(recs), tt.want)
			}
			for i, r := range recs {
				if r.Count != tt.first+i {
					t.Fatalf("record %d has count %d, want %d", i, r.Count, tt.first+i)
				}
			}
		})
	}
}

func TestTailSkipsJunkAndTornLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	data := `{"event":"admitted","count":1}` + "\n" +
		"not json\n" +
		"\n" +
		`{"no_event":true}` + "\n" +
		`{"event":"refused","count":2}` + "\n" +
		`{"event":"admit` // torn: a writer was cut off
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := Tail(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Count != 1 || recs[1].Count != 2 {
		t.Fatalf("got %+v", recs)
	}
}

func TestTailMissingFile(t *testing.T) {
	recs, err := Tail(filepath.Join(t.TempDir(), "none"), 5)
	if err != nil || len(recs) != 0 {
		t.Fatalf("Tail of a missing file = %v, %v", recs, err)
	}
}

func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Write(Record{Event: Admitted}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(Record{Event: Refused}); err != nil {
		t.Fatal(err)
	}
	old, _ := Tail(path+".1", 10)
	cur, _ := Tail(path, 10)
	if len(old) != 1 || old[0].Event != Admitted || len(cur) != 1 || cur[0].Event != Refused {
		t.Fatalf("rotated = %+v, current = %+v", old, cur)
	}
}

func TestFollowerReadsOnlyCompleteNewLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := Append(path, Record{Event: Admitted, Count: 1}); err != nil {
		t.Fatal(err)
	}
	fw := startFollowing(path)
	if recs, _ := fw.next(); len(recs) != 0 {
		t.Fatalf("old lines returned: %+v", recs)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(`{"event":"refused","count":2}` + "\n" + `{"event":"key_a`)
	recs, _ := fw.next()
	if len(recs) != 1 || recs[0].Count != 2 {
		t.Fatalf("got %+v", recs)
	}
	f.WriteString(`dded","count":3}` + "\n")
	recs, _ = fw.next()
	if len(recs) != 1 || recs[0].Event != KeyAdded || recs[0].Count != 3 {
		t.Fatalf("got %+v", recs)
	}
	// Truncated (rotated by copytruncate): read from the start again.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"event":"key_revoked","count":4}` + "\n")
	recs, _ = fw.next()
	if len(recs) != 1 || recs[0].Count != 4 {
		t.Fatalf("after truncate got %+v", recs)
	}
}

// A follower with only set returns just the lines that contain it (the
// Auditor follows the file for key changes among its own records).
func TestFollowerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fw := startFollowing(path)
	fw.only = []byte(`"key_`)
	if err := Append(path,
		Record{Event: Admitted, Room: "r@conference.meet.example", Count: 1},
		Record{Event: KeyAdded, Fingerprint: "1a2b3c4d", Count: 2},
		Record{Event: Refused, Nick: "key_", Count: 3}, // matches, not a key event: the caller filters by Event
		Record{Event: KeyRevoked, Fingerprint: "1a2b3c4d", Count: 4},
	); err != nil {
		t.Fatal(err)
	}
	recs, err := fw.next()
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, r := range recs {
		got = append(got, r.Count)
	}
	if !slices.Equal(got, []int{2, 3, 4}) {
		t.Fatalf("records %v, want counts [2 3 4]", got)
	}
	if recs, _ := fw.next(); len(recs) != 0 {
		t.Fatalf("read again: %+v", recs)
	}
}
