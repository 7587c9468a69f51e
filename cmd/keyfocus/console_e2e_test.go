package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/prosody"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
	"github.com/keyfocus/keyfocus/focus/simulate"
	"github.com/keyfocus/keyfocus/keys"
)

// tmuxConsole is the real keyfocus binary running in a private tmux server.
type tmuxConsole struct {
	t    *testing.T
	sock string
}

// startTmuxConsole runs cmd in a detached tmux session of size WxH (e.g.
// "120x40") with env added, and waits until the console says it is
// connected. The session is killed when the test ends.
func startTmuxConsole(t *testing.T, dir, size string, env []string, cmd ...string) *tmuxConsole {
	t.Helper()
	w, h, _ := strings.Cut(size, "x")
	c := &tmuxConsole{t: t, sock: filepath.Join(dir, "tmux.sock")}
	args := []string{"-f", "/dev/null", "new-session", "-d", "-s", "kf", "-x", w, "-y", h, "-e", "TERM=xterm-256color"}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	c.tmux(append(args, cmd...)...)
	t.Cleanup(func() { exec.Command("tmux", "-S", c.sock, "kill-server").Run() })
	c.tmux("set-option", "-t", "kf", "remain-on-exit", "on")
	c.waitFor("● connected")
	return c
}

// admitAndJoin dials a participant that requests room with key, joins it
// as nick, and is closed when the test ends.
func admitAndJoin(ctx context.Context, t *testing.T, srv *prosody.Server, room, key, nick string) *simulate.Participant {
	t.Helper()
	p, err := simulate.Dial(ctx, simulate.Account{Addr: srv.C2SAddr, Domain: srv.Domain})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	reply, err := p.RequestConference(ctx, simulate.Request{Room: room, Key: key, Focus: srv.Component})
	if err != nil || !reply.Admitted() {
		t.Fatalf("conference request: %+v, %v", reply, err)
	}
	if _, err := p.Join(ctx, room, nick); err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *tmuxConsole) tmux(args ...string) string {
	c.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", c.sock}, args...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (c *tmuxConsole) screen() string { return c.tmux("capture-pane", "-p", "-t", "kf") }

// keys sends tmux key names ("Enter", "Escape", "3"); text:... types literally.
func (c *tmuxConsole) keys(keys ...string) {
	c.t.Helper()
	for _, k := range keys {
		if text, ok := strings.CutPrefix(k, "text:"); ok {
			c.tmux("send-keys", "-t", "kf", "-l", text)
			continue
		}
		c.tmux("send-keys", "-t", "kf", k)
	}
}

// waitScreen waits until cond holds for the screen (or fails after 30s).
func (c *tmuxConsole) waitScreen(what string, cond func(s string) bool) string {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := c.screen()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s; screen:\n%s", what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *tmuxConsole) waitFor(s string) string {
	c.t.Helper()
	return c.waitScreen(strings.TrimSpace(s), func(screen string) bool { return strings.Contains(screen, s) })
}

func buildKeyfocus(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "keyfocus")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestConsoleEndToEnd runs `keyfocus run` with its console in tmux against a
// real Prosody, with a simulated participant: it adds a key through the form
// and sees the file change, then revokes the participant's key and sees the
// member disappear from the Rooms view.
func TestConsoleEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end console test: skipped with -short")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("\n*** SKIPPED: tmux is not on PATH (apt-get install tmux); the console end-to-end test needs it ***")
	}
	srv := prosodytest.Start(t)
	bin := buildKeyfocus(t)
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "keys.properties")
	if err := os.WriteFile(keyPath, []byte("# e2e\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := keys.Open(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	acmeKey, acme, err := store.Add(keys.Spec{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "run.log")
	// The secret goes in a file, as in production: tmux's own arguments
	// (which ps shows) carry only its path.
	secretPath := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretPath, []byte(srv.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c := startTmuxConsole(t, dir, "120x40", []string{"KEYFOCUS_SECRET_FILE=" + secretPath},
		bin, "run", "--xmpp-addr", srv.ComponentAddr, "--component", srv.Component, "--muc", srv.MUC,
		"--keys", keyPath, "--log-file", logPath, "--http", "127.0.0.1:0")

	// A participant with the Acme key joins a room.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	room := "e2e@" + srv.MUC
	p := admitAndJoin(ctx, t, srv, room, acmeKey, "alice")
	c.waitScreen("alice in the Rooms view", func(s string) bool {
		return strings.Contains(s, "MEMBERS of e2e (1)") && regexp.MustCompile(`alice\s+Acme\s+`+acme.Fingerprint).MatchString(s)
	})

	// Add a key through the form: the file changes.
	c.keys("3", "a", "text:Hooli", "Enter", "text:hooli-*", "Enter", "Enter", "text:4", "Enter")
	s := c.waitFor("New key for Hooli")
	newKey := regexp.MustCompile(`kf_[a-z2-7]{32}`).FindString(s)
	if newKey == "" {
		t.Fatalf("no key on screen:\n%s", s)
	}
	data, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("sha256:"+keys.HashKey(newKey)+"=Hooli; rooms=hooli-*; max-participants=4")) || bytes.Contains(data, []byte(newKey)) {
		t.Fatalf("key file after the add:\n%s", data)
	}
	c.keys("Enter")
	c.waitScreen("the key closed", func(s string) bool { return !strings.Contains(s, newKey) && strings.Contains(s, "Hooli") })

	// Revoke Acme: the confirmation names alice; the focus removes her.
	c.keys("g", "d")
	c.waitFor("alice in e2e")
	c.keys("y")
	if _, err := p.WaitRemoved(ctx, room); err != nil {
		t.Fatalf("alice was not removed: %v", err)
	}
	c.keys("1")
	c.waitScreen("alice gone from the Rooms view", func(s string) bool {
		return strings.Contains(s, "[1 Rooms]") && !strings.Contains(s, "alice")
	})
	data, _ = os.ReadFile(keyPath)
	if bytes.Contains(data, []byte(acme.ID)) {
		t.Errorf("Acme still in the key file:\n%s", data)
	}

	// Quit asks first (it stops the focus), then ends the process.
	c.keys("q")
	c.waitFor("Quit keyfocus?")
	c.keys("y")
	c.waitScreen("the process to exit", func(string) bool {
		return strings.TrimSpace(c.tmux("display-message", "-p", "-t", "kf", "#{pane_dead}")) == "1"
	})
	logs, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(logs, []byte(acmeKey)) || bytes.Contains(logs, []byte(newKey)) {
		t.Error("a key reached the log file")
	}
	if !bytes.Contains(logs, []byte("operator quit")) {
		t.Errorf("log file lacks the quit:\n%s", logs)
	}
}

// TestAttachEndToEnd runs `keyfocus run --headless --socket` and attaches a
// console to it in tmux: the console shows the member, ends the room over
// the socket, and quitting the console leaves the focus running.
func TestAttachEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end console test: skipped with -short")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("\n*** SKIPPED: tmux is not on PATH (apt-get install tmux); the console end-to-end test needs it ***")
	}
	srv := prosodytest.Start(t)
	bin := buildKeyfocus(t)
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "keys.properties")
	store, err := keys.Open(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := store.Add(keys.Spec{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "focus.sock")
	focusCmd := exec.Command(bin, "run", "--headless", "--xmpp-addr", srv.ComponentAddr, "--component", srv.Component,
		"--muc", srv.MUC, "--keys", keyPath, "--socket", sock, "--http", "")
	focusCmd.Env = append(os.Environ(), "KEYFOCUS_SECRET="+srv.Secret)
	var focusLog bytes.Buffer
	focusCmd.Stderr = &focusLog
	if err := focusCmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- focusCmd.Wait() }()
	t.Cleanup(func() {
		focusCmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if fi, err := os.Stat(sock); err == nil {
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("control socket mode %v, want 0600", fi.Mode().Perm())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control socket after 30s; focus log:\n%s", focusLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	c := startTmuxConsole(t, dir, "100x30", nil,
		bin, "attach", "--socket", sock, "--log-file", filepath.Join(dir, "attach.log"))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	room := "attached@" + srv.MUC
	p := admitAndJoin(ctx, t, srv, room, key, "bob")
	c.waitFor("MEMBERS of attached (1)")

	// End the room from the attached console: the focus does it.
	c.keys("X")
	c.waitFor("End room attached?")
	c.keys("y")
	if _, err := p.WaitRemoved(ctx, room); err != nil {
		t.Fatalf("bob was not removed: %v", err)
	}
	c.waitScreen("the room gone", func(s string) bool { return strings.Contains(s, "rooms 0") })

	// q quits an attached console at once; the focus keeps running.
	c.keys("q")
	c.waitScreen("the console to exit", func(string) bool {
		return strings.TrimSpace(c.tmux("display-message", "-p", "-t", "kf", "#{pane_dead}")) == "1"
	})
	select {
	case err := <-exited:
		t.Fatalf("the focus stopped with the console: %v\n%s", err, focusLog.String())
	default:
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("control socket gone after the console quit: %v", err)
	}
}

// TestConsoleStopsOnSignal: when the terminal goes away (hangup) or the
// process is told to stop, `keyfocus run` with its console exits instead of
// living on without a terminal.
func TestConsoleStopsOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end console test: skipped with -short")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("\n*** SKIPPED: tmux is not on PATH (apt-get install tmux); the console end-to-end test needs it ***")
	}
	bin := buildKeyfocus(t)
	// A port nobody listens on: the focus keeps redialling, the console runs.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, how := range []string{"hangup", "sigterm"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			c := &tmuxConsole{t: t, sock: filepath.Join(dir, "tmux.sock")}
			c.tmux("-f", "/dev/null", "new-session", "-d", "-s", "kf", "-x", "80", "-y", "24",
				"-e", "KEYFOCUS_SECRET=x", "-e", "TERM=xterm-256color",
				bin, "run", "--xmpp-addr", addr, "--keys", filepath.Join(dir, "keys.properties"),
				"--log-file", filepath.Join(dir, "run.log"), "--http", "")
			t.Cleanup(func() { exec.Command("tmux", "-S", c.sock, "kill-server").Run() })
			c.tmux("set-option", "-t", "kf", "remain-on-exit", "on")
			c.waitFor("reconnecting")
			pid, err := strconv.Atoi(strings.TrimSpace(c.tmux("display-message", "-p", "-t", "kf", "#{pane_pid}")))
			if err != nil {
				t.Fatal(err)
			}
			if how == "hangup" {
				c.tmux("kill-server")
			} else if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for processRunning(pid) {
				if time.Now().After(deadline) {
					syscall.Kill(pid, syscall.SIGKILL)
					logs, _ := os.ReadFile(filepath.Join(dir, "run.log"))
					t.Fatalf("keyfocus run still running 20s after the %s; log:\n%s", how, logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// processRunning reports whether pid is still running. A process that has
// exited but that its parent (tmux, with remain-on-exit) has not reaped yet is
// a zombie: kill(pid, 0) still succeeds for it, but it is not running.
func processRunning(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc: trust kill(pid, 0)
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}
