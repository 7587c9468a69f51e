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

// keepOwner gives the new file f the owner and group of the file it
// replaces (fi), so that root running `keyfocus keys add` on the service's
// key file does not leave a file the service can no longer read. Only root
// (or the owner, for the group) may do so; otherwise it is left as it is.
func keepOwner(f *os.File, fi os.FileInfo) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if uid == os.Getuid() && gid == os.Getgid() {
		return
	}
	_ = f.Chown(uid, gid)
}
