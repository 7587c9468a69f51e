//go:build unix

package keys

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestSaveKeepsOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give the key file another owner")
	}
	s := openTest(t, "a=A\n")
	const nobody = 65534
	if err := os.Chown(s.Path(), nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add(Spec{Name: "B"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != nobody || st.Gid != nobody || fi.Mode().Perm() != 0o640 {
		t.Fatalf("after a save by root: owner %d:%d mode %v, want %d:%d and 0640 kept", st.Uid, st.Gid, fi.Mode().Perm(), nobody, nobody)
	}
}

// cpuTime is the CPU time (user and system, all threads) this process has
// used: benchmarks report it per operation beside the wall-clock ns/op,
// which on a busy machine also counts the time spent waiting for a CPU.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
