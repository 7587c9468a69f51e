package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// The two readers of audit lines (Tail's from the end, the follower's from a
// point on) agree on any input, and never return a record without an event.
func FuzzParse(f *testing.F) {
	line, _ := json.Marshal(benchRecord)
	f.Add(append(line, '\n'), 3)
	f.Add([]byte("{\"event\":\"refused\"}\n\nnot json\n{\"event\":\"adm"), 5)
	f.Add([]byte("\n\n\n"), 1)
	f.Add([]byte("{\"event\":\"\"}\r\n{\"event\":\"x\",\"count\":1}\r\n"), 2)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		n = n%16 + 1
		if n < 1 {
			n = -n + 1
		}
		if bytes.Contains(data, []byte{0}) || len(data) > maxLine {
			return
		}
		last := parseLast(data, n)
		if len(last) > n {
			t.Fatalf("parseLast returned %d > %d records", len(last), n)
		}
		for _, r := range last {
			if r.Event == "" {
				t.Fatal("a record without an event")
			}
		}
		all := parseLines(data)
		if len(all) > n {
			all = all[len(all)-n:]
		}
		if len(all) == 0 && len(last) == 0 {
			return
		}
		if !reflect.DeepEqual(all, last) {
			t.Fatalf("readers disagree on %q:\n from the start %+v\n from the end   %+v", data, all, last)
		}
	})
}
