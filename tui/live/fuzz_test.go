package live

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyfocus/keyfocus/focus"
)

// FuzzApply applies arbitrary event streams (JSON lines, as the control
// socket carries them) and checks the counters the header and the Keys view
// show against the rooms themselves.
func FuzzApply(f *testing.F) {
	f.Add(`{"kind":"member_joined","room":"r","member":{"nick":"a","fingerprint":"k"}}
{"kind":"member_joined","room":"r","member":{"nick":"a","fingerprint":"j"}}
{"kind":"member_left","room":"r","member":{"nick":"a"}}`)
	f.Add(`{"kind":"room_opened","room":"k=r@c"}
{"kind":"member_removed","room":"k=r@c","member":{"nick":"x"}}
{"kind":"room_ended","room":"k=r@c"}`)
	f.Add(`{"kind":"refused","rejection":{"reason":"no_key"}}`)
	f.Fuzz(func(t *testing.T, input string) {
		s := New(focus.State{}, "")
		for _, line := range strings.Split(input, "\n") {
			var ev focus.Event
			if json.Unmarshal([]byte(line), &ev) == nil {
				s.Apply(ev)
			}
		}
		members, byKey := 0, map[string]int{}
		for name, r := range s.Rooms {
			if r.Name != name {
				t.Fatalf("room %q filed under %q", r.Name, name)
			}
			members += len(r.Members)
			for _, m := range r.Members {
				if m.Fingerprint != "" {
					byKey[m.Fingerprint]++
				}
			}
		}
		if members != s.Members {
			t.Fatalf("Members = %d, rooms hold %d", s.Members, members)
		}
		if len(byKey) != len(s.ByKey) {
			t.Fatalf("ByKey = %v, rooms say %v", s.ByKey, byKey)
		}
		for k, n := range byKey {
			if s.ByKey[k] != n {
				t.Fatalf("ByKey[%s] = %d, rooms say %d", k, s.ByKey[k], n)
			}
		}
		if s.RejectedLen() > MaxRejected {
			t.Fatalf("%d rejected kept", s.RejectedLen())
		}
	})
}
