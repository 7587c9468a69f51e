// Package sshconsole serves the keyfocus console over ssh (charmbracelet/wish
// v1): every ssh session gets its own console program on the running focus,
// with its own renderer (so colours suit that client's terminal) and size.
//
// Access is by public key only. A key in the authorized-keys file gets the
// full console; a key in the viewer-keys file gets the read-only console
// (every editing action hidden, and refused by the Source it is handed); any
// other key is refused. Both files use OpenSSH authorized_keys syntax and are
// read again on every login, so adding or removing a key needs no restart.
// Lines with options (from=, command=, ...) are refused with a warning: they
// would restrict access in OpenSSH, and keyfocus does not implement them.
//
// Every session's start and end is written to the audit log with the key's
// SHA256 fingerprint, as are the operator actions taken in it.
package sshconsole

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/ssh"
	"github.com/charmbracelet/wish"
	"github.com/charmbracelet/wish/activeterm"
	bm "github.com/charmbracelet/wish/bubbletea"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/focus/audit"
)

// Session is what a console started for one ssh session gets.
type Session struct {
	// Actor names the person for the audit log: "ssh:SHA256:... (comment)".
	Actor string
	// Fingerprint is the key's SHA256 fingerprint, as ssh-keygen -l shows it.
	Fingerprint string
	// User is the user name the client asked for (informational only).
	User string
	// ReadOnly is true for viewer keys: the console must hide and refuse
	// every editing action.
	ReadOnly bool
	// Renderer is this session's lipgloss renderer: build styles from it.
	Renderer *lipgloss.Renderer
	// Width and Height are the terminal's size at the start.
	Width, Height int
	// Source is the focus, wrapped: operator actions are audited with Actor,
	// and refused for read-only sessions.
	Source focus.Source
	// Context ends when the ssh session does.
	Context context.Context
}

// Config configures a Server.
type Config struct {
	// Addr is where to listen, host:port (port 0 picks a free one).
	Addr string
	// HostKeyPath is the server's private host key; an ed25519 key is
	// generated there (0600) if the file does not exist.
	HostKeyPath string
	// AuthorizedKeys lists the keys with full access; ViewerKeys the keys
	// with read-only access. At least one must be set.
	AuthorizedKeys string
	ViewerKeys     string
	// Source is the focus every console shows.
	Source focus.Source
	// NewModel builds the console for one session.
	NewModel func(Session) tea.Model
	// Audit receives session start/end and operator actions (optional).
	Audit  *audit.Log
	Logger *slog.Logger
	// ReadOnly makes every session read-only, whatever its key (keyfocus
	// run --readonly).
	ReadOnly bool
	// HandshakeTimeout bounds how long a connection may take to log in and
	// open its console (default 30s): a client that stalls is cut off.
	HandshakeTimeout time.Duration
}

// Server is the ssh console server.
type Server struct {
	cfg Config
	log *slog.Logger
	srv *ssh.Server

	mu       sync.Mutex
	sessions int
	wg       sync.WaitGroup // open sessions
}

type ctxKey struct{ name string }

var (
	accessKey = &ctxKey{"keyfocus-access"}
	connKey   = &ctxKey{"keyfocus-conn"}
)

type access struct {
	readOnly bool
	comment  string
}

// New checks cfg, makes the host key if it is missing, and returns a Server
// ready to Serve.
func New(cfg Config) (*Server, error) {
	if cfg.AuthorizedKeys == "" && cfg.ViewerKeys == "" {
		return nil, errors.New("ssh console: give --ssh-authorized-keys (full access) and/or --ssh-viewer-keys (read-only); without either nobody could log in")
	}
	for _, p := range []string{cfg.AuthorizedKeys, cfg.ViewerKeys} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("ssh console: keys file: %w (create it with one OpenSSH public key per line)", err)
		}
	}
	if cfg.Source == nil || cfg.NewModel == nil {
		return nil, errors.New("ssh console: no focus to show")
	}
	if cfg.HostKeyPath == "" {
		return nil, errors.New("ssh console: give --ssh-host-key (a private key file; generated if missing)")
	}
	if err := ensureHostKey(cfg.HostKeyPath); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	s := &Server{cfg: cfg, log: log.With("component", "ssh")}
	srv, err := wish.NewServer(
		wish.WithAddress(cfg.Addr),
		ssh.WrapConn(s.wrapConn),
		ssh.HostKeyFile(cfg.HostKeyPath),
		wish.WithPublicKeyAuth(s.authorize),
		ssh.EmulatePty(),
		// The last middleware runs first: check the key and audit the
		// session, then require a terminal, then run the console.
		wish.WithMiddleware(
			bm.Middleware(s.teaHandler),
			activeterm.Middleware(),
			s.auditMiddleware,
		),
	)
	if err != nil {
		return nil, fmt.Errorf("ssh console: %w", err)
	}
	s.srv = srv
	return s, nil
}

// ensureHostKey makes an ed25519 host key at path if there is none, and
// refuses one that others can read.
func ensureHostKey(path string) error {
	fi, err := os.Stat(path)
	if err == nil {
		if fi.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("ssh host key %s is readable by others (%v): chmod 600 it", path, fi.Mode().Perm())
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ssh host key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("ssh host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "keyfocus ssh console")
	if err != nil {
		return fmt.Errorf("ssh host key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create ssh host key: %w (check that %s exists and is writable)", err, filepath.Dir(path))
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write ssh host key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write ssh host key: %w", err)
	}
	return f.Close()
}

// lookup finds key in the keys file at path: found, and the line's comment.
func (s *Server) lookup(path string, key ssh.PublicKey) (bool, string) {
	if path == "" {
		return false, ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		s.log.Warn("ssh console: cannot read keys file; its keys cannot log in", "path", path, "err", err)
		return false, ""
	}
	want := key.Marshal()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		pk, comment, options, _, err := gossh.ParseAuthorizedKey(line)
		if err != nil {
			s.log.Warn("ssh console: skipping a line that is not a public key", "path", path, "line", n, "err", err)
			continue
		}
		if !bytes.Equal(pk.Marshal(), want) {
			continue
		}
		if len(options) > 0 {
			s.log.Warn("ssh console: refusing a key listed with options (from=, command=, ... are not supported)", "path", path, "line", n, "key", gossh.FingerprintSHA256(pk))
			return false, ""
		}
		return true, comment
	}
	return false, ""
}

// check says what access key has: full, read-only, or none.
func (s *Server) check(key ssh.PublicKey) (access, bool) {
	if ok, c := s.lookup(s.cfg.AuthorizedKeys, key); ok {
		return access{readOnly: s.cfg.ReadOnly, comment: c}, true
	}
	if ok, c := s.lookup(s.cfg.ViewerKeys, key); ok {
		return access{readOnly: true, comment: c}, true
	}
	return access{}, false
}

func (s *Server) authorize(ctx ssh.Context, key ssh.PublicKey) bool {
	if _, ok := s.check(key); ok {
		return true
	}
	s.log.Info("ssh console: key refused", "key", gossh.FingerprintSHA256(key), "remote", ctx.RemoteAddr().String(), "user", ctx.User())
	return false
}

// sessionAccess decides a session's access from the key that actually
// authenticated the connection (not from whichever key the client offered
// last), checked against the files again.
func (s *Server) sessionAccess(sess ssh.Session) (access, string, bool) {
	pk := sess.PublicKey()
	if pk == nil {
		return access{}, "", false
	}
	a, ok := s.check(pk)
	return a, gossh.FingerprintSHA256(pk), ok
}

func actorOf(fp, comment string) string {
	if comment != "" {
		return "ssh:" + fp + " (" + comment + ")"
	}
	return "ssh:" + fp
}

// auditMiddleware runs first: it checks the session's key, records the
// session's start and end, and hands the access on to the console.
func (s *Server) auditMiddleware(next ssh.Handler) ssh.Handler {
	return func(sess ssh.Session) {
		a, fp, ok := s.sessionAccess(sess)
		if !ok {
			wish.Fatalln(sess, "keyfocus: this key may not use the console")
			return
		}
		if hc, ok := sess.Context().Value(connKey).(*handshakeConn); ok {
			if _, _, pty := sess.Pty(); pty {
				hc.established() // a console starts: no deadline any more
			}
		}
		sess.Context().SetValue(accessKey, a)
		actor := actorOf(fp, a.comment)
		mode := "full"
		if a.readOnly {
			mode = "read-only"
		}
		id := sess.Context().SessionID()
		if len(id) > 16 {
			id = id[:16]
		}
		remote := sess.RemoteAddr().String()
		start := time.Now()
		s.wg.Add(1)
		defer s.wg.Done()
		s.mu.Lock()
		s.sessions++
		s.mu.Unlock()
		s.log.Info("ssh console session started", "key", fp, "access", mode, "remote", remote, "session", id)
		s.record(audit.Record{Event: audit.SSHSessionStart, Actor: actor, Via: audit.ViaSSH, Fingerprint: fp, Session: id, Remote: remote, Action: mode})
		defer func() {
			s.mu.Lock()
			s.sessions--
			s.mu.Unlock()
			d := time.Since(start).Round(time.Second)
			s.log.Info("ssh console session ended", "key", fp, "session", id, "duration", d.String())
			s.record(audit.Record{Event: audit.SSHSessionEnd, Actor: actor, Via: audit.ViaSSH, Fingerprint: fp, Session: id, Remote: remote,
				Reason: "after " + d.String()})
		}()
		next(sess)
	}
}

func (s *Server) record(r audit.Record) {
	if s.cfg.Audit == nil {
		return
	}
	if err := s.cfg.Audit.Write(r); err != nil {
		s.log.Error("audit log write failed", "event", r.Event, "err", err)
	}
}

func (s *Server) teaHandler(sess ssh.Session) (tea.Model, []tea.ProgramOption) {
	a, ok := sess.Context().Value(accessKey).(access)
	if !ok {
		return nil, nil
	}
	pty, _, _ := sess.Pty()
	fp := ""
	if pk := sess.PublicKey(); pk != nil {
		fp = gossh.FingerprintSHA256(pk)
	}
	actor := actorOf(fp, a.comment)
	var src focus.Source = s.cfg.Source
	if a.readOnly {
		src = readOnlySource{src}
	}
	if s.cfg.Audit != nil {
		src = audit.OperatorSource(src, s.cfg.Audit, actor, audit.ViaSSH)
	}
	m := s.cfg.NewModel(Session{
		Actor:       actor,
		Fingerprint: fp,
		User:        sess.User(),
		ReadOnly:    a.readOnly,
		Renderer:    bm.MakeRenderer(sess),
		Width:       pty.Window.Width,
		Height:      pty.Window.Height,
		Source:      src,
		Context:     sess.Context(),
	})
	if m == nil {
		return nil, nil
	}
	return m, []tea.ProgramOption{tea.WithAltScreen()}
}

// handshakeConn holds a connection to a deadline until its console session
// starts: the ssh library resets deadlines on every read and write, so the
// limit lives here.
type handshakeConn struct {
	net.Conn
	mu       sync.Mutex
	deadline time.Time
	done     bool
}

func (c *handshakeConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.done && (t.IsZero() || t.After(c.deadline)) {
		t = c.deadline
	}
	return c.Conn.SetDeadline(t)
}

// established lifts the deadline: the console session has started.
func (c *handshakeConn) established() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	_ = c.Conn.SetDeadline(time.Time{})
}

func (s *Server) wrapConn(ctx ssh.Context, conn net.Conn) net.Conn {
	hc := &handshakeConn{Conn: conn, deadline: time.Now().Add(s.cfg.HandshakeTimeout)}
	_ = conn.SetDeadline(hc.deadline)
	ctx.SetValue(connKey, hc)
	return hc
}

// ErrReadOnly is what a read-only session's Source answers to an edit.
var ErrReadOnly = errors.New("read-only console: this ssh key may look but not change anything")

type readOnlySource struct{ focus.Source }

func (readOnlySource) RemoveMember(context.Context, string, string, string) error { return ErrReadOnly }
func (readOnlySource) EndRoom(context.Context, string, string) error              { return ErrReadOnly }

// Sessions is the number of ssh console sessions open now.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// Listen opens the server's address.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("ssh console: listen on %s: %w (pick a free address with --ssh-addr)", s.cfg.Addr, err)
	}
	return ln, nil
}

// Serve accepts ssh connections on ln until ctx ends; then it closes the
// listener and every open session (their consoles quit).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, ssh.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("ssh console: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		// Sessions still open after the grace: cut them.
		s.srv.Close()
	}
	<-errc
	// Each session's console quits when its connection closes; wait for
	// them, so their end is on record before the audit log closes.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.log.Warn("ssh console: sessions still closing at shutdown", "sessions", s.Sessions())
	}
	return nil
}

// ListenAndServe is Listen then Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// HostKeyFingerprint is the SHA256 fingerprint of the server's host key, for
// operators to compare on first connect.
func HostKeyFingerprint(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	signer, err := gossh.ParsePrivateKey(data)
	if err != nil {
		return "", fmt.Errorf("ssh host key %s: %w", path, err)
	}
	return gossh.FingerprintSHA256(signer.PublicKey()), nil
}
