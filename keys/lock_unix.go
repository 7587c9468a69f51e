//go:build unix

package keys

import (
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock (flock) on the folder dir, so
// that every keyfocus process editing a key file in it takes its turn: the
// read, the conflict check and the rename of one edit happen as one. A
// folder that cannot be locked is edited without the lock.
func lockDir(dir string) (unlock func()) {
	f, err := os.Open(dir)
	if err != nil {
		return func() {}
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return func() {}
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}
