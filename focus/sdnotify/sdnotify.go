// Package sdnotify tells systemd about the service's state over the
// NOTIFY_SOCKET datagram socket (sd_notify(3)): READY=1 once the focus is
// connected and the key store is loaded, RELOADING=1 / READY=1 around a
// SIGHUP reload, STOPPING=1 on shutdown, STATUS= lines for systemctl status,
// and WATCHDOG=1 when the unit sets WatchdogSec=. Outside systemd (no
// NOTIFY_SOCKET) every call does nothing.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends state changes to systemd. The zero Notifier, or one made
// without NOTIFY_SOCKET, does nothing. Safe for concurrent use.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
}

// New reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID through getenv
// (os.Getenv in production) and returns a Notifier for them.
func New(getenv func(string) string) *Notifier {
	n := &Notifier{}
	sock := getenv("NOTIFY_SOCKET")
	if sock == "" {
		return n
	}
	if strings.HasPrefix(sock, "@") { // abstract socket
		sock = "\x00" + sock[1:]
	}
	n.addr = &net.UnixAddr{Name: sock, Net: "unixgram"}
	if us, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64); err == nil && us > 0 {
		pid := getenv("WATCHDOG_PID")
		if pid == "" || pid == strconv.Itoa(unix.Getpid()) {
			n.watchdog = time.Duration(us) * time.Microsecond
		}
	}
	return n
}

// Enabled reports whether there is a systemd to tell.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Send sends one notification: newline-separated VAR=value assignments.
func (n *Notifier) Send(state string) error {
	if !n.Enabled() {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Ready says the service is up, with a status line.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1\nSTATUS=" + oneLine(status))
}

// Reloading says a reload (SIGHUP) has started. MONOTONIC_USEC lets
// Type=notify-reload units match it to the reload they asked for.
func (n *Notifier) Reloading(status string) error {
	return n.Send("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10) + "\nSTATUS=" + oneLine(status))
}

// Stopping says the service is shutting down.
func (n *Notifier) Stopping(status string) error {
	return n.Send("STOPPING=1\nSTATUS=" + oneLine(status))
}

// Status sets the one-line status systemctl status shows.
func (n *Notifier) Status(status string) error {
	return n.Send("STATUS=" + oneLine(status))
}

// WatchdogInterval is the unit's WatchdogSec (zero when there is none).
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Watchdog pings systemd's watchdog at half its interval while alive()
// reports true, until ctx ends. Without WatchdogSec it returns at once.
// alive is how the service says it is still working (for keyfocus: the
// event loop answers); a hung service stops pinging and systemd restarts it.
func (n *Notifier) Watchdog(ctx context.Context, alive func() bool) error {
	if !n.Enabled() || n.watchdog <= 0 {
		return nil
	}
	t := time.NewTicker(n.watchdog / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if alive == nil || alive() {
				_ = n.Send("WATCHDOG=1")
			}
		}
	}
}

func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
