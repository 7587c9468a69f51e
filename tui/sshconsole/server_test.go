package sshconsole

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/focus/audit"
)

// fakeFocus is a focus.Source that records operator actions.
type fakeFocus struct {
	bus   focus.Bus
	mu    sync.Mutex
	calls []string
}

func (f *fakeFocus) Watch(n int) (focus.State, *focus.Subscription) {
	return focus.State{Component: "focus.meet.example"}, f.bus.Subscribe(n)
}

func (f *fakeFocus) RemoveMember(_ context.Context, room, nick, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "remove "+room+" "+nick)
	return nil
}

func (f *fakeFocus) EndRoom(_ context.Context, room, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "end "+room)
	return nil
}

// probeModel is a minimal console: it shows who it serves and, on "x",
// tries an operator action and shows the answer.
type probeModel struct {
	s      Session
	w, h   int
	result string
	n      int // operator actions answered
}

type resultMsg struct{ err error }

func (m probeModel) Init() tea.Cmd { return nil }

func (m probeModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.w, m.h = msg.Width, msg.Height
	case tea.KeyMsg:
		switch msg.String() {
		case "q":
			return m, tea.Quit
		case "x":
			src := m.s.Source
			return m, func() tea.Msg {
				return resultMsg{src.RemoveMember(context.Background(), "standup@conference.meet.example", "bob", "test")}
			}
		}
	case resultMsg:
		m.n++
		if msg.err != nil {
			m.result = "REFUSED: " + msg.err.Error()
		} else {
			m.result = "DONE " + itoa(m.n)
		}
	}
	return m, nil
}

func (m probeModel) View() string {
	mode := "full"
	if m.s.ReadOnly {
		mode = "readonly"
	}
	return "CONSOLE mode=" + mode + " size=" + itoa(m.w) + "x" + itoa(m.h) + "\n" + m.result
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

type keypair struct {
	signer gossh.Signer
	line   string
}

func newKey(t *testing.T, comment string) keypair {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(s.PublicKey())))
	if comment != "" {
		line += " " + comment
	}
	return keypair{signer: s, line: line}
}

type env struct {
	t        *testing.T
	addr     string
	hostKey  gossh.PublicKey
	focus    *fakeFocus
	srv      *Server
	audit    string
	admin    keypair
	viewer   keypair
	stranger keypair
}

func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, focus: &fakeFocus{}, audit: filepath.Join(dir, "audit.jsonl"),
		admin: newKey(t, "alice@laptop"), viewer: newKey(t, "viewer@desk"), stranger: newKey(t, "")}
	authz := filepath.Join(dir, "authorized_keys")
	viewers := filepath.Join(dir, "viewer_keys")
	os.WriteFile(authz, []byte("# operators\n\nnot a key line\n"+e.admin.line+"\n"), 0o600)
	os.WriteFile(viewers, []byte(e.viewer.line+"\n"), 0o600)
	al, err := audit.Open(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	hostKey := filepath.Join(dir, "host_key")
	srv, err := New(Config{
		Addr: "127.0.0.1:0", HostKeyPath: hostKey, AuthorizedKeys: authz, ViewerKeys: viewers,
		Source: e.focus, Audit: al,
		NewModel: func(s Session) tea.Model { return probeModel{s: s} },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	ln, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	data, err := os.ReadFile(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := gossh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	e.hostKey = hs.PublicKey()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func (e *env) dial(k keypair) (*gossh.Client, error) {
	return gossh.Dial("tcp", e.addr, &gossh.ClientConfig{
		User:            "operator",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(k.signer)},
		HostKeyCallback: gossh.FixedHostKey(e.hostKey),
		Timeout:         10 * time.Second,
	})
}

// screen is an interactive ssh session with a terminal.
type screen struct {
	t     *testing.T
	sess  *gossh.Session
	in    io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	ended chan struct{}
}

func (e *env) open(c *gossh.Client) *screen {
	e.t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := sess.RequestPty("xterm-256color", 24, 80, gossh.TerminalModes{gossh.ECHO: 0}); err != nil {
		e.t.Fatal(err)
	}
	sc := &screen{t: e.t, sess: sess, ended: make(chan struct{})}
	sc.in, _ = sess.StdinPipe()
	r, _ := sess.StdoutPipe()
	if err := sess.Shell(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		defer close(sc.ended)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			sc.mu.Lock()
			sc.out.Write(buf[:n])
			sc.mu.Unlock()
			// Answer the queries a terminal answers: background colour
			// and primary device attributes, as xterm does.
			chunk := string(buf[:n])
			if strings.Contains(chunk, "\x1b]11;?\a") {
				sc.in.Write([]byte("\x1b]11;rgb:0000/0000/0000\a"))
			}
			if strings.Contains(chunk, "\x1b[c") {
				sc.in.Write([]byte("\x1b[?62;22c"))
			}
			if err != nil {
				return
			}
		}
	}()
	return sc
}

func (sc *screen) waitFor(text string) {
	sc.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		sc.mu.Lock()
		got := sc.out.String()
		sc.mu.Unlock()
		if strings.Contains(got, text) {
			return
		}
		if time.Now().After(deadline) {
			sc.t.Fatalf("screen never showed %q; got %q", text, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) waitAudit(what string, cond func([]audit.Record) bool) []audit.Record {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		recs, err := audit.Tail(e.audit, 100)
		if err != nil {
			e.t.Fatal(err)
		}
		if cond(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("audit log never had %s: %+v", what, recs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func count(recs []audit.Record, event string) int {
	n := 0
	for _, r := range recs {
		if r.Event == event {
			n++
		}
	}
	return n
}

func TestAuthorizedKeySeesConsoleAndCanAct(t *testing.T) {
	e := start(t)
	c, err := e.dial(e.admin)
	if err != nil {
		t.Fatalf("authorized key refused: %v", err)
	}
	sc := e.open(c)
	sc.waitFor("CONSOLE mode=full size=80x24")
	sc.sess.WindowChange(40, 120)
	sc.waitFor("size=120x40")
	sc.in.Write([]byte("x"))
	sc.waitFor("DONE")
	fp := gossh.FingerprintSHA256(e.admin.signer.PublicKey())
	recs := e.waitAudit("the operator action", func(rs []audit.Record) bool { return count(rs, audit.OperatorAction) == 1 })
	for _, r := range recs {
		if r.Event == audit.OperatorAction && (r.Actor != "ssh:"+fp+" (alice@laptop)" || r.Via != audit.ViaSSH || r.Error != "") {
			t.Fatalf("operator action recorded as %+v", r)
		}
	}
	// The client goes away without quitting the console: the session ends.
	c.Close()
	recs = e.waitAudit("the session's end", func(rs []audit.Record) bool { return count(rs, audit.SSHSessionEnd) == 1 })
	if count(recs, audit.SSHSessionStart) != 1 {
		t.Fatalf("session start not recorded once: %+v", recs)
	}
	for _, r := range recs {
		if (r.Event == audit.SSHSessionStart || r.Event == audit.SSHSessionEnd) && r.Fingerprint != fp {
			t.Fatalf("session record without the key's fingerprint: %+v", r)
		}
	}
	e.focus.mu.Lock()
	defer e.focus.mu.Unlock()
	if len(e.focus.calls) != 1 {
		t.Fatalf("focus calls = %v", e.focus.calls)
	}
}

func TestViewerKeyCannotEdit(t *testing.T) {
	e := start(t)
	c, err := e.dial(e.viewer)
	if err != nil {
		t.Fatalf("viewer key refused: %v", err)
	}
	defer c.Close()
	sc := e.open(c)
	sc.waitFor("CONSOLE mode=readonly")
	sc.in.Write([]byte("x"))
	sc.waitFor("REFUSED: read-only console")
	recs := e.waitAudit("the refused action", func(rs []audit.Record) bool { return count(rs, audit.OperatorAction) == 1 })
	for _, r := range recs {
		if r.Event == audit.SSHSessionStart && r.Action != "read-only" {
			t.Fatalf("viewer session recorded as %q", r.Action)
		}
		if r.Event == audit.OperatorAction && r.Error == "" {
			t.Fatalf("refused action recorded as done: %+v", r)
		}
	}
	e.focus.mu.Lock()
	defer e.focus.mu.Unlock()
	if len(e.focus.calls) != 0 {
		t.Fatalf("a viewer reached the focus: %v", e.focus.calls)
	}
	// q quits the console and ends the session.
	sc.in.Write([]byte("q"))
	select {
	case <-sc.ended:
	case <-time.After(15 * time.Second):
		t.Fatal("session did not end after q")
	}
}

func TestUnknownKeyRefused(t *testing.T) {
	e := start(t)
	tests := []struct {
		name string
		auth []gossh.AuthMethod
	}{
		{"unknown key", []gossh.AuthMethod{gossh.PublicKeys(e.stranger.signer)}},
		{"password", []gossh.AuthMethod{gossh.Password("hunter2")}},
		{"keyboard-interactive", []gossh.AuthMethod{gossh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return []string{"x"}, nil })}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := gossh.Dial("tcp", e.addr, &gossh.ClientConfig{User: "operator", Auth: tt.auth, HostKeyCallback: gossh.FixedHostKey(e.hostKey), Timeout: 10 * time.Second})
			if err == nil {
				c.Close()
				t.Fatal("logged in")
			}
			if !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if recs, _ := audit.Tail(e.audit, 10); count(recs, audit.SSHSessionStart) != 0 {
		t.Fatalf("refused logins opened sessions: %+v", recs)
	}
}

// A client that offers an admin's public key it cannot sign with, then logs
// in with a viewer key, gets the viewer's access, not the admin's.
func TestOfferedKeyDoesNotGrantAccess(t *testing.T) {
	e := start(t)
	c, err := gossh.Dial("tcp", e.addr, &gossh.ClientConfig{
		User:            "operator",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(cannotSign{e.admin.signer}, e.viewer.signer)},
		HostKeyCallback: gossh.FixedHostKey(e.hostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		// Refusing the login outright is fine too.
		return
	}
	defer c.Close()
	sc := e.open(c)
	sc.waitFor("CONSOLE mode=")
	sc.waitFor("CONSOLE mode=readonly")
}

// cannotSign offers a public key but has no private key to prove it.
type cannotSign struct{ gossh.Signer }

func (cannotSign) Sign(io.Reader, []byte) (*gossh.Signature, error) {
	return nil, errors.New("no private key")
}

func TestAccessFilesReadOnEveryLogin(t *testing.T) {
	e := start(t)
	if _, err := e.dial(e.stranger); err == nil {
		t.Fatal("stranger logged in")
	}
	authz := e.srv.cfg.AuthorizedKeys
	f, _ := os.OpenFile(authz, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(e.stranger.line + "\n")
	f.Close()
	c, err := e.dial(e.stranger)
	if err != nil {
		t.Fatalf("key added to the file still refused: %v", err)
	}
	c.Close()
	// A key listed with options is refused: keyfocus does not enforce them.
	os.WriteFile(authz, []byte(`from="10.0.0.1" `+e.admin.line+"\n"), 0o600)
	if c, err := e.dial(e.admin); err == nil {
		c.Close()
		t.Fatal("key with options logged in")
	}
}

func TestNewChecksConfig(t *testing.T) {
	dir := t.TempDir()
	authz := filepath.Join(dir, "authorized_keys")
	os.WriteFile(authz, nil, 0o600)
	loose := filepath.Join(dir, "loose_host_key")
	os.WriteFile(loose, []byte("x"), 0o644)
	os.Chmod(loose, 0o644)
	model := func(Session) tea.Model { return nil }
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no keys files", Config{HostKeyPath: filepath.Join(dir, "h1"), Source: &fakeFocus{}, NewModel: model}, "--ssh-authorized-keys"},
		{"missing keys file", Config{HostKeyPath: filepath.Join(dir, "h2"), AuthorizedKeys: filepath.Join(dir, "nope"), Source: &fakeFocus{}, NewModel: model}, "no such file"},
		{"no host key", Config{AuthorizedKeys: authz, Source: &fakeFocus{}, NewModel: model}, "--ssh-host-key"},
		{"host key readable by others", Config{HostKeyPath: loose, AuthorizedKeys: authz, Source: &fakeFocus{}, NewModel: model}, "chmod 600"},
		{"host key folder missing", Config{HostKeyPath: filepath.Join(dir, "no", "h"), AuthorizedKeys: authz, Source: &fakeFocus{}, NewModel: model}, "create ssh host key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	// A generated host key is private, and kept across restarts.
	hk := filepath.Join(dir, "host_key")
	if _, err := New(Config{HostKeyPath: hk, AuthorizedKeys: authz, Source: &fakeFocus{}, NewModel: model}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(hk)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key: %v, mode %v", err, fi.Mode().Perm())
	}
	fp1, _ := HostKeyFingerprint(hk)
	if _, err := New(Config{HostKeyPath: hk, AuthorizedKeys: authz, Source: &fakeFocus{}, NewModel: model}); err != nil {
		t.Fatal(err)
	}
	fp2, _ := HostKeyFingerprint(hk)
	if fp1 == "" || fp1 != fp2 {
		t.Fatalf("host key changed across restarts: %q -> %q", fp1, fp2)
	}
}

// A connection that never logs in is cut off after the handshake timeout; a
// console session, once started, is not.
func TestHandshakeTimeout(t *testing.T) {
	dir := t.TempDir()
	admin := newKey(t, "")
	authz := filepath.Join(dir, "authorized_keys")
	os.WriteFile(authz, []byte(admin.line+"\n"), 0o600)
	srv, err := New(Config{
		Addr: "127.0.0.1:0", HostKeyPath: filepath.Join(dir, "host_key"), AuthorizedKeys: authz,
		Source: &fakeFocus{}, NewModel: func(s Session) tea.Model { return probeModel{s: s} },
		HandshakeTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	// A silent client: the server closes the connection.
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadAll(raw); err != nil {
		t.Fatalf("the server kept a silent connection open: %v", err)
	}

	// A console session lives on past the handshake timeout: it still
	// answers after a few multiples of it.
	c, err := gossh.Dial("tcp", ln.Addr().String(), &gossh.ClientConfig{User: "op", Auth: []gossh.AuthMethod{gossh.PublicKeys(admin.signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := &env{t: t}
	sc := e.open(c)
	sc.waitFor("CONSOLE mode=full")
	// Round trips until well past the handshake timeout.
	start := time.Now()
	for i := 1; i < 3 || time.Since(start) < time.Second; i++ {
		sc.in.Write([]byte("x"))
		sc.waitFor("DONE " + itoa(i))
	}
}

// With Config.ReadOnly (keyfocus run --readonly) even a full-access key gets
// the read-only console.
func TestServerReadOnlyForEveryone(t *testing.T) {
	dir := t.TempDir()
	admin := newKey(t, "")
	authz := filepath.Join(dir, "authorized_keys")
	os.WriteFile(authz, []byte(admin.line+"\n"), 0o600)
	ff := &fakeFocus{}
	srv, err := New(Config{
		Addr: "127.0.0.1:0", HostKeyPath: filepath.Join(dir, "host_key"), AuthorizedKeys: authz, ReadOnly: true,
		Source: ff, NewModel: func(s Session) tea.Model { return probeModel{s: s} },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	c, err := gossh.Dial("tcp", ln.Addr().String(), &gossh.ClientConfig{User: "op", Auth: []gossh.AuthMethod{gossh.PublicKeys(admin.signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := (&env{t: t}).open(c)
	sc.waitFor("CONSOLE mode=readonly")
	sc.in.Write([]byte("x"))
	sc.waitFor("REFUSED: read-only console")
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if len(ff.calls) != 0 {
		t.Fatalf("a read-only session reached the focus: %v", ff.calls)
	}
}
