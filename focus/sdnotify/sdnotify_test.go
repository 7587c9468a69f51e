package sdnotify

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen makes a real NOTIFY_SOCKET datagram socket, as systemd does.
func listen(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestMessages(t *testing.T) {
	c, path := listen(t)
	n := New(env(map[string]string{"NOTIFY_SOCKET": path}))
	if !n.Enabled() {
		t.Fatal("not enabled with NOTIFY_SOCKET set")
	}
	tests := []struct {
		name string
		send func() error
		want []string
	}{
		{"ready", func() error { return n.Ready("connected; 3 keys") }, []string{"READY=1", "STATUS=connected; 3 keys"}},
		{"reloading", func() error { return n.Reloading("reloading") }, []string{"RELOADING=1", "STATUS=reloading"}},
		{"stopping", func() error { return n.Stopping("bye") }, []string{"STOPPING=1", "STATUS=bye"}},
		{"status on one line", func() error { return n.Status("a\nb") }, []string{"STATUS=a b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.send(); err != nil {
				t.Fatal(err)
			}
			got := strings.Split(recv(t, c), "\n")
			for _, w := range tt.want {
				found := false
				for _, g := range got {
					found = found || g == w
				}
				if !found {
					t.Fatalf("got %q, want a line %q", got, w)
				}
			}
		})
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	c, path := listen(t)
	n := New(env(map[string]string{"NOTIFY_SOCKET": path}))
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	before := ts.Nano() / 1000
	if err := n.Reloading("x"); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(recv(t, c), "\n") {
		if v, ok := strings.CutPrefix(line, "MONOTONIC_USEC="); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil || us < before {
				t.Fatalf("MONOTONIC_USEC=%s, want >= %d", v, before)
			}
			return
		}
	}
	t.Fatal("no MONOTONIC_USEC")
}

func TestAbstractSocket(t *testing.T) {
	name := "keyfocus-test-" + strconv.Itoa(unix.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := New(env(map[string]string{"NOTIFY_SOCKET": "@" + name}))
	if err := n.Ready("up"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); !strings.HasPrefix(got, "READY=1\n") {
		t.Fatalf("got %q", got)
	}
}

func TestDisabledWithoutSocket(t *testing.T) {
	n := New(env(nil))
	if n.Enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := n.Ready("x"); err != nil {
		t.Fatalf("Ready without systemd: %v", err)
	}
	var nilN *Notifier
	if nilN.Enabled() || nilN.Send("READY=1") != nil {
		t.Fatal("nil Notifier must do nothing")
	}
}

func TestSendToMissingSocketFails(t *testing.T) {
	n := New(env(map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "gone.sock")}))
	if err := n.Ready("x"); err == nil {
		t.Fatal("Ready to a missing socket succeeded")
	}
}

func TestWatchdog(t *testing.T) {
	c, path := listen(t)
	tests := []struct {
		name string
		env  map[string]string
		want time.Duration
	}{
		{"ours", map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": strconv.Itoa(unix.Getpid())}, 20 * time.Millisecond},
		{"no pid given", map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}, 20 * time.Millisecond},
		{"another process's", map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": "1"}, 0},
		{"none", map[string]string{"NOTIFY_SOCKET": path}, 0},
		{"junk", map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "soon"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(env(tt.env)).WatchdogInterval(); got != tt.want {
				t.Fatalf("interval = %v, want %v", got, tt.want)
			}
		})
	}
	n := New(env(tests[0].env))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Watchdog(ctx, func() bool { return true }) }()
	if got := recv(t, c); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
