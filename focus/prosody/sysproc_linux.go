package prosody

import "syscall"

// sysProcAttr puts Prosody in its own process group (a Ctrl-C at the
// terminal reaches keyfocus, which then stops Prosody in order) and has the
// kernel end it if keyfocus dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
