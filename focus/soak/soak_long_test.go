//go:build soak

package soak

import (
	"os"
	"testing"
	"time"
)

// The long form: KEYFOCUS_SOAK_DURATION of load (default 10m), more
// participants per cohort and more cohorts, and the fault schedule repeated
// in rounds of about 90 s. Run it with
//
//	KEYFOCUS_SOAK_DURATION=30m go test -tags soak -run TestSoak -timeout 2h -v ./focus/soak/
func init() {
	soakParams = func(t *testing.T) params {
		load := 10 * time.Minute
		if s := os.Getenv("KEYFOCUS_SOAK_DURATION"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 30*time.Second {
				t.Fatalf("KEYFOCUS_SOAK_DURATION=%q: want a Go duration of at least 30s, e.g. 30m", s)
			}
			load = d
		}
		return params{
			// One round of faults every 90 s or so, each with fresh keys:
			// restarts and revocations keep coming for the whole run.
			Load: load, Rounds: max(1, int(load/(90*time.Second))), Cohorts: 8, RoomsPerCohort: 4, Rate: 1, Concurrency: 12,
			Stay: 8 * time.Second, MaxLinger: time.Second, GoroutineSlack: 40, Sample: 50 * time.Millisecond,
		}
	}
}
