// Package prosody runs a real Prosody 0.12 on loopback with a generated
// configuration (PROTOCOL.md §1): for integration tests, benchmarks and the
// demo. It installs nothing; the prosody binary must be on PATH (or given).
package prosody

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure a Prosody instance. The zero value is usable: domain
// meet.example, free loopback ports, a temporary folder, a random secret.
type Options struct {
	// Binary is the prosody executable; default "prosody" looked up on PATH.
	Binary string
	// Dir holds the config, pidfile, data and log. Empty: a new temporary
	// folder that Stop removes. A given Dir is kept (and created if missing).
	Dir string
	// Host is the loopback address to listen on; default 127.0.0.1.
	Host string
	// C2SPort and ComponentPort are the listening ports; 0 picks free ones.
	C2SPort       int
	ComponentPort int
	// HTTPPort, if not 0, enables BOSH and websocket on that port (-1 picks a
	// free one). Off by default.
	HTTPPort int
	// Domain is the XMPP domain of the anonymous guests; default meet.example.
	Domain string
	// MUC is the conference component; default conference.<Domain>.
	MUC string
	// Component is the focus's component address (the MUC admin); default
	// focus.<Domain>.
	Component string
	// ExtraComponents are more external components with the same secret that
	// are NOT MUC admins (e.g. a bare component for benchmarks).
	ExtraComponents []string
	// Secret is the component secret; default 32 random hex characters.
	Secret string
	// OpenRoomCreation turns restrict_room_creation off so any client may
	// create rooms (harness tests without a focus). Off by default.
	OpenRoomCreation bool
	// LogLevel is Prosody's minimum log level: "debug" or "info" (default).
	// Readiness is read from the info lines, so nothing quieter is allowed.
	LogLevel string
	// StartTimeout bounds a start; default 15s.
	StartTimeout time.Duration
	// Logger receives keyfocus's own lines about the process; default discards.
	Logger *slog.Logger
}

// Server is a running (or stopped) Prosody.
type Server struct {
	// C2SAddr is where clients connect (host:port).
	C2SAddr string
	// ComponentAddr is where components connect (host:port).
	ComponentAddr string
	// HTTPAddr is the BOSH/websocket address, empty when HTTP is off.
	HTTPAddr  string
	Domain    string
	MUC       string
	Component string
	Secret    string
	// Dir holds ConfigPath, the pidfile, the data folder and LogPath.
	Dir        string
	ConfigPath string
	LogPath    string

	binary    string
	cfg       config
	removeDir bool
	timeout   time.Duration
	log       *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	waitErr error
	out     *os.File
}

// ErrNotFound is returned by Start when no prosody binary can be found.
var ErrNotFound = errors.New("prosody not found on PATH: install Prosody 0.12 (e.g. apt-get install prosody) or set Options.Binary")

// Start writes the configuration and runs `prosody --config FILE` in the
// foreground until the c2s and component ports accept connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin := opts.Binary
	if bin == "" {
		bin = "prosody"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("prosody: %w", err)
	}
	s := &Server{binary: path, timeout: opts.StartTimeout, log: opts.Logger}
	if s.timeout <= 0 {
		s.timeout = 15 * time.Second
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	c := config{
		Host:      opts.Host,
		Domain:    opts.Domain,
		MUC:       opts.MUC,
		Component: opts.Component,
		Secret:    opts.Secret,
		Extra:     opts.ExtraComponents,
		OpenRooms: opts.OpenRoomCreation,
		LogLevel:  opts.LogLevel,
		RunAsRoot: os.Geteuid() == 0,
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Domain == "" {
		c.Domain = "meet.example"
	}
	if c.MUC == "" {
		c.MUC = "conference." + c.Domain
	}
	if c.Component == "" {
		c.Component = "focus." + c.Domain
	}
	switch c.LogLevel {
	case "":
		c.LogLevel = "info"
	case "debug", "info":
	default:
		return nil, fmt.Errorf("prosody: log level %q not supported: use \"info\" or \"debug\"", c.LogLevel)
	}
	if c.Secret == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("prosody: secret: %w", err)
		}
		c.Secret = hex.EncodeToString(b[:])
	}
	dir := opts.Dir
	if dir == "" {
		dir, err = os.MkdirTemp("", "keyfocus-prosody-")
		if err != nil {
			return nil, fmt.Errorf("prosody: %w", err)
		}
		s.removeDir = true
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("prosody: %w", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "data"), filepath.Join(dir, "certs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			s.cleanupDir()
			return nil, fmt.Errorf("prosody: %w", err)
		}
	}
	c.Dir = dir
	c.LogPath = filepath.Join(dir, "prosody.log")
	c.PidPath = filepath.Join(dir, "prosody.pid")
	s.Dir, s.LogPath, s.ConfigPath = dir, c.LogPath, filepath.Join(dir, "prosody.cfg.lua")
	s.Domain, s.MUC, s.Component, s.Secret = c.Domain, c.MUC, c.Component, c.Secret

	// Ports we pick ourselves may be taken by someone else between the pick
	// and Prosody's bind: then try again with new ones.
	const attempts = 3
	for i := 1; ; i++ {
		c.C2SPort, c.ComponentPort, c.HTTPPort = opts.C2SPort, opts.ComponentPort, opts.HTTPPort
		if err := pickPorts(c.Host, &c.C2SPort, &c.ComponentPort, &c.HTTPPort); err != nil {
			s.cleanupDir()
			return nil, err
		}
		s.cfg = c
		s.C2SAddr = net.JoinHostPort(c.Host, strconv.Itoa(c.C2SPort))
		s.ComponentAddr = net.JoinHostPort(c.Host, strconv.Itoa(c.ComponentPort))
		s.HTTPAddr = ""
		if c.HTTPPort != 0 {
			s.HTTPAddr = net.JoinHostPort(c.Host, strconv.Itoa(c.HTTPPort))
		}
		if err := os.WriteFile(s.ConfigPath, []byte(c.render()), 0o600); err != nil {
			s.cleanupDir()
			return nil, fmt.Errorf("prosody: %w", err)
		}
		err := s.start(ctx)
		if err == nil {
			return s, nil
		}
		// Retry only when the port that was taken is one we picked.
		fp := failedPort(err)
		picked := (opts.C2SPort == 0 && fp == c.C2SPort) || (opts.ComponentPort == 0 && fp == c.ComponentPort) ||
			(opts.HTTPPort == -1 && fp == c.HTTPPort)
		if picked && i < attempts {
			s.log.Warn("prosody port taken, retrying with other ports", "port", fp)
			continue
		}
		s.cleanupDir()
		return nil, err
	}
}

func (s *Server) cleanupDir() {
	if s.removeDir && s.Dir != "" {
		os.RemoveAll(s.Dir)
	}
}

// pickPorts replaces each zero port (and -1 for *http) with a free loopback port.
func pickPorts(host string, c2s, comp, http *int) error {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, p := range []*int{c2s, comp, http} {
		if p == http && *p != -1 {
			continue
		}
		if *p != 0 && *p != -1 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return fmt.Errorf("prosody: find a free port on %s: %w", host, err)
		}
		ls = append(ls, l)
		*p = l.Addr().(*net.TCPAddr).Port
	}
	return nil
}

// failedPort is the port Prosody could not listen on, or -2.
func failedPort(err error) int {
	var pe *portError
	if errors.As(err, &pe) {
		return pe.port
	}
	return -2
}

type portError struct {
	port int
	line string
}

func (e *portError) Error() string { return "prosody could not listen: " + e.line }

var (
	activatedRE = regexp.MustCompile(`Activated service '([a-z0-9_]+)' on \[[^\]]*\]:(\d+)`)
	failedRE    = regexp.MustCompile(`Failed to open server port (\d+)[^\n]*`)
)

// start runs the process with the current config and waits for readiness.
func (s *Server) start(ctx context.Context) error {
	begin := time.Now()
	var logOffset int64
	if fi, err := os.Stat(s.LogPath); err == nil {
		logOffset = fi.Size()
	}
	out, err := os.OpenFile(filepath.Join(s.Dir, "prosody.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("prosody: %w", err)
	}
	// Not CommandContext: the process outlives ctx, which only bounds the start.
	cmd := exec.Command(s.binary, "--config", s.ConfigPath)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("prosody: start %s: %w", s.binary, err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done, s.out, s.waitErr = cmd, done, out, nil
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		out.Close()
		close(done)
	}()

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	want := map[string]int{"c2s": s.cfg.C2SPort, "component": s.cfg.ComponentPort}
	if s.cfg.HTTPPort != 0 {
		want["http"] = s.cfg.HTTPPort
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		logText := readFrom(s.LogPath, logOffset)
		if m := failedRE.FindStringSubmatch(logText); m != nil {
			port, _ := strconv.Atoi(m[1])
			s.kill()
			return &portError{port: port, line: m[0]}
		}
		ready := true
		for svc, port := range want {
			if !hasActivated(logText, svc, port) {
				ready = false
				break
			}
		}
		if ready && s.accepts(ctx) {
			s.log.Info("prosody started", "pid", cmd.Process.Pid, "c2s", s.C2SAddr, "component", s.ComponentAddr, "took", time.Since(begin).Round(time.Millisecond))
			return nil
		}
		select {
		case <-done:
			s.mu.Lock()
			werr := s.waitErr
			s.mu.Unlock()
			return fmt.Errorf("prosody exited during start (%v); config %s%s", werr, s.ConfigPath, s.tails(logOffset))
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("prosody not ready within %s (%v); config %s%s", s.timeout, ctx.Err(), s.ConfigPath, s.tails(logOffset))
		case <-tick.C:
		}
	}
}

func hasActivated(logText, svc string, port int) bool {
	for _, m := range activatedRE.FindAllStringSubmatch(logText, -1) {
		if m[1] == svc && m[2] == strconv.Itoa(port) {
			return true
		}
	}
	return false
}

func (s *Server) accepts(ctx context.Context) bool {
	var d net.Dialer
	for _, a := range []string{s.C2SAddr, s.ComponentAddr} {
		c, err := d.DialContext(ctx, "tcp", a)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

func readFrom(path string, off int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, 0); err != nil {
		return ""
	}
	var b bytes.Buffer
	b.ReadFrom(f)
	return b.String()
}

// tails is the end of the log (since off) and of Prosody's stdout/stderr, for
// error messages.
func (s *Server) tails(off int64) string {
	var b strings.Builder
	if t := tail(readFrom(s.LogPath, off), 20); t != "" {
		fmt.Fprintf(&b, "\n--- %s (last lines) ---\n%s", s.LogPath, t)
	}
	if t := tail(readFrom(filepath.Join(s.Dir, "prosody.out"), 0), 20); t != "" {
		fmt.Fprintf(&b, "\n--- prosody stdout/stderr (last lines) ---\n%s", t)
	}
	return b.String()
}

// LogTail returns the last n lines of Prosody's log.
func (s *Server) LogTail(n int) string { return tail(readFrom(s.LogPath, 0), n) }

func tail(text string, n int) string {
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return ""
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Pid is the process id of the running Prosody, or 0.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil || s.exited() {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the process is alive.
func (s *Server) Running() bool { return s.Pid() != 0 }

func (s *Server) exited() bool {
	if s.done == nil {
		return true
	}
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// signalAndWait sends sig and waits up to d for the process to exit; it
// reports whether it exited.
func (s *Server) signalAndWait(sig syscall.Signal, d time.Duration) bool {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	_ = cmd.Process.Signal(sig)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// stop ends the process: SIGTERM, then SIGKILL after grace.
func (s *Server) stop(grace time.Duration) {
	if !s.signalAndWait(syscall.SIGTERM, grace) {
		s.log.Warn("prosody did not stop on SIGTERM, killing", "grace", grace)
		s.kill()
	}
}

func (s *Server) kill() { s.signalAndWait(syscall.SIGKILL, time.Minute) }

// Stop ends Prosody (SIGTERM, wait for the pid, then SIGKILL) and removes
// the folder if Start created it (then Stop is final: no Restart after it).
// Safe to call more than once.
func (s *Server) Stop() {
	s.stop(5 * time.Second)
	s.cleanupDir()
}

// Kill ends Prosody abruptly (SIGKILL): connections drop without a closing
// stream, as in a crash. Restart brings it back on the same ports.
func (s *Server) Kill() { s.kill() }

// Restart stops Prosody (if it runs) and starts it again with the same
// configuration on the same ports. It waits for the old process to exit
// first: a second instance with the same pidfile would quit.
func (s *Server) Restart(ctx context.Context) error {
	s.stop(5 * time.Second)
	return s.start(ctx)
}
