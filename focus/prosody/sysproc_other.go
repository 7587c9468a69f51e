//go:build !linux

package prosody

import "syscall"

// sysProcAttr puts Prosody in its own process group, so a Ctrl-C at the
// terminal reaches keyfocus, which then stops Prosody in order.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
