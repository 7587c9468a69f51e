package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keyfocus/keyfocus/focus/audit"
	"github.com/keyfocus/keyfocus/focus/prosody"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
	"github.com/keyfocus/keyfocus/focus/simulate"
	"github.com/keyfocus/keyfocus/keys"
)

// opsRun is a `keyfocus run --headless` with every operations piece on:
// health and metrics, the audit log, the ssh console, and a real
// NOTIFY_SOCKET datagram socket made by the test, as systemd makes one.
type opsRun struct {
	t          *testing.T
	srv        *prosody.Server
	dir        string
	keysPath   string
	secretFile string
	auditPath  string
	stderr     *syncBuffer
	sig        chan<- os.Signal
	done       chan error
	stopped    bool
	runErr     error
	notes      chan string
	httpURL    string
	sshAddr    string
	admin      gossh.Signer
	viewer     gossh.Signer
}

func startOpsRun(t *testing.T) *opsRun {
	t.Helper()
	r := &opsRun{t: t, srv: prosodytest.Start(t), dir: t.TempDir(), stderr: &syncBuffer{}, done: make(chan error, 1), notes: make(chan string, 64)}
	r.keysPath = filepath.Join(r.dir, "keys.properties")
	if err := os.WriteFile(r.keysPath, []byte("# keys\nkf_opsopsopsops=Ops Ltd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.secretFile = filepath.Join(r.dir, "secret")
	if err := os.WriteFile(r.secretFile, []byte(r.srv.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.auditPath = filepath.Join(r.dir, "audit.jsonl")
	r.admin, r.viewer = newSSHKey(t), newSSHKey(t)
	authz := filepath.Join(r.dir, "ssh_authorized_keys")
	viewers := filepath.Join(r.dir, "ssh_viewer_keys")
	os.WriteFile(authz, gossh.MarshalAuthorizedKey(r.admin.PublicKey()), 0o600)
	os.WriteFile(viewers, gossh.MarshalAuthorizedKey(r.viewer.PublicKey()), 0o600)

	sock := filepath.Join(r.dir, "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				close(r.notes)
				return
			}
			r.notes <- string(buf[:n])
		}
	}()

	vars := map[string]string{
		"KEYFOCUS_XMPP_ADDR": r.srv.ComponentAddr, "KEYFOCUS_COMPONENT": r.srv.Component, "KEYFOCUS_MUC": r.srv.MUC,
		"KEYFOCUS_KEYS": r.keysPath, "KEYFOCUS_SECRET_FILE": r.secretFile, "KEYFOCUS_HEADLESS": "1",
		"KEYFOCUS_HTTP": "127.0.0.1:0", "KEYFOCUS_AUDIT": r.auditPath,
		"KEYFOCUS_SSH_ADDR": "127.0.0.1:0", "KEYFOCUS_SSH_HOST_KEY": filepath.Join(r.dir, "ssh_host_key"),
		"KEYFOCUS_SSH_AUTHORIZED_KEYS": authz, "KEYFOCUS_SSH_VIEWER_KEYS": viewers,
		"NOTIFY_SOCKET": sock,
	}
	e := env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: r.stderr, Getenv: func(k string) string { return vars[k] }}
	sigs := make(chan chan<- os.Signal, 1)
	c := newRunCommand(e).(*runCommand)
	c.signals = func(ch chan<- os.Signal) { sigs <- ch }
	c.forceExit = func(int) { t.Error("forced exit") }
	go func() { r.done <- c.Run(context.Background(), nil) }()
	select {
	case r.sig = <-sigs:
	case err := <-r.done:
		t.Fatalf("run ended at start: %v\n%s", err, r.stderr.String())
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Error(err)
		}
	})
	r.httpURL = "http://" + r.logField("health and metrics", "addr")
	r.sshAddr = r.logField("ssh console", "addr")
	return r
}

// stop sends SIGTERM (once) and waits for run to return its error.
func (r *opsRun) stop() error {
	if r.stopped {
		return r.runErr
	}
	r.stopped = true
	r.sig <- syscall.SIGTERM
	select {
	case r.runErr = <-r.done:
	case <-time.After(30 * time.Second):
		r.runErr = errors.New("run did not stop within 30s")
	}
	return r.runErr
}

func newSSHKey(t *testing.T) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logField waits for the JSON log line with msg and returns one of its fields.
func (r *opsRun) logField(msg, field string) string {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		sc := bufio.NewScanner(strings.NewReader(r.stderr.String()))
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
				if v, ok := m[field].(string); ok {
					return v
				}
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no log line %q with %s:\n%s", msg, field, r.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNote waits for a systemd notification with every one of the lines.
func (r *opsRun) waitNote(lines ...string) string {
	r.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case n, ok := <-r.notes:
			if !ok {
				r.t.Fatal("notify socket closed")
			}
			have := strings.Split(n, "\n")
			all := true
			for _, l := range lines {
				found := false
				for _, h := range have {
					found = found || h == l
				}
				all = all && found
			}
			if all {
				return n
			}
		case <-timeout:
			r.t.Fatalf("no notification with %q; log:\n%s", lines, r.stderr.String())
		}
	}
}

// waitNoteContaining waits for a systemd notification containing text.
func (r *opsRun) waitNoteContaining(text string) {
	r.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case n, ok := <-r.notes:
			if !ok {
				r.t.Fatal("notify socket closed")
			}
			if strings.Contains(n, text) {
				return
			}
		case <-timeout:
			r.t.Fatalf("no notification containing %q", text)
		}
	}
}

func (r *opsRun) get(path string) (int, string) {
	r.t.Helper()
	resp, err := http.Get(r.httpURL + path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *opsRun) waitHTTP(path string, code int, has string) {
	r.t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		got, body := r.get(path)
		if got == code && strings.Contains(body, has) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s = %d %q, want %d with %q", path, got, body, code, has)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *opsRun) metric(series string) float64 {
	r.t.Helper()
	_, body := r.get("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			if err == nil {
				return v
			}
		}
	}
	r.t.Fatalf("no series %s in /metrics", series)
	return 0
}

func (r *opsRun) waitMetric(series string, want float64) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.metric(series) != want {
		if time.Now().After(deadline) {
			r.t.Fatalf("%s = %v, want %v", series, r.metric(series), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *opsRun) waitAudit(what string, cond func(audit.Record) bool) audit.Record {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		recs, _ := audit.Tail(r.auditPath, 1000)
		for _, rec := range recs {
			if cond(rec) {
				return rec
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("audit log never had %s: %+v", what, recs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *opsRun) request(key, room string) *simulate.Reply {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p, err := simulate.Dial(ctx, simulate.Account{Addr: r.srv.C2SAddr, Domain: r.srv.Domain})
	if err != nil {
		r.t.Fatal(err)
	}
	defer p.Close()
	rep, err := p.RequestConference(ctx, simulate.Request{Room: room + "@" + r.srv.MUC, Key: key, Focus: r.srv.Component})
	if err != nil {
		r.t.Fatal(err)
	}
	return rep
}

// The daemon under systemd: READY=1 once connected with the keys loaded,
// health and metrics from the running focus, the audit trail of requests
// and key changes, SIGHUP with RELOADING=1/READY=1 and a new secret used at
// the next reconnect, and STOPPING=1 on SIGTERM.
func TestRunOperations(t *testing.T) {
	r := startOpsRun(t)
	r.waitNote("READY=1")
	r.waitHTTP("/about/health", 200, "ok")
	r.waitHTTP("/readyz", 200, "ok")
	r.waitHTTP("/livez", 200, "ok")
	if v := r.metric("keyfocus_component_connected"); v != 1 {
		t.Fatalf("keyfocus_component_connected = %v", v)
	}
	if v := r.metric("keyfocus_store_keys"); v != 1 {
		t.Fatalf("keyfocus_store_keys = %v", v)
	}

	if rep := r.request("kf_opsopsopsops", "standup"); !rep.Admitted() {
		t.Fatalf("valid key refused: %+v", rep.Error)
	}
	if rep := r.request("kf_wrongwrongwrong", "standup"); rep.Admitted() {
		t.Fatal("wrong key admitted")
	}
	r.waitMetric("keyfocus_admissions_total", 1)
	r.waitMetric(`keyfocus_conference_requests_total{reason="unknown_key",result="refused"}`, 1)
	if v := r.metric("keyfocus_conference_request_duration_seconds_count"); v != 1 {
		t.Fatalf("latency histogram count = %v", v)
	}
	// systemctl status shows the live state.
	r.waitNoteContaining("STATUS=" + r.srv.Component + " connected; 1 rooms, 0 members; 1 keys")
	fp := keys.Fingerprint("kf_opsopsopsops")
	r.waitAudit("the admission", func(a audit.Record) bool {
		return a.Event == audit.Admitted && a.Fingerprint == fp && a.Client == "Ops Ltd"
	})
	r.waitAudit("the refusal", func(a audit.Record) bool { return a.Event == audit.Refused && a.Reason == "unknown_key" })

	// A key added by hand: recorded as changed outside keyfocus, counted.
	f, _ := os.OpenFile(r.keysPath, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("kf_handhandhandhand=Hand Made\n")
	f.Close()
	hand := keys.Fingerprint("kf_handhandhandhand")
	r.waitAudit("the hand edit", func(a audit.Record) bool {
		return a.Event == audit.KeyAdded && a.Fingerprint == hand && a.Actor == audit.Outside
	})
	r.waitMetric(`keyfocus_key_changes_total{change="added"}`, 1)

	// SIGHUP with a new secret: reload is announced, and once Prosody comes
	// back with the new secret the focus connects with it.
	newSecret := "rotated-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.WriteFile(r.secretFile, []byte(newSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.sig <- syscall.SIGHUP
	r.waitNote("RELOADING=1")
	r.waitNote("READY=1")
	// The live status line replaces the reload's own STATUS.
	r.waitNoteContaining("STATUS=" + r.srv.Component + " connected; ")
	c2sPort, compPort := port(t, r.srv.C2SAddr), port(t, r.srv.ComponentAddr)
	r.srv.Stop()
	r.waitHTTP("/about/health", 503, "not connected to Prosody")
	r.waitHTTP("/readyz", 503, "not connected")
	srv2, err := prosody.Start(context.Background(), prosody.Options{
		Dir: t.TempDir(), C2SPort: c2sPort, ComponentPort: compPort, Secret: newSecret,
		Domain: r.srv.Domain, Component: r.srv.Component, MUC: r.srv.MUC,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Stop()
	r.waitHTTP("/about/health", 200, "ok")
	r.waitMetric("keyfocus_component_reconnects_total", 1)

	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.waitNote("STOPPING=1")
	if resp, err := http.Get(r.httpURL + "/livez"); err == nil {
		resp.Body.Close()
		t.Fatal("health and metrics still served after run returned")
	}
	data, _ := os.ReadFile(r.auditPath)
	logs := r.stderr.String()
	for _, secret := range []string{"kf_opsopsopsops", "kf_wrongwrongwrong", "kf_handhandhandhand", newSecret, r.srv.Secret} {
		if strings.Contains(string(data), secret) || strings.Contains(logs, secret) {
			t.Fatalf("%q reached the audit log or the logs", secret)
		}
	}
	if fi, err := os.Stat(r.auditPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit log mode: %v %v", fi.Mode(), err)
	}
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// sshScreen is an interactive ssh session on the console.
type sshScreen struct {
	t   *testing.T
	c   *gossh.Client
	s   *gossh.Session
	in  io.Writer
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *opsRun) ssh(signer gossh.Signer) (*sshScreen, error) {
	c, err := gossh.Dial("tcp", r.sshAddr, &gossh.ClientConfig{
		User: "operator", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	s, err := c.NewSession()
	if err != nil {
		c.Close()
		return nil, err
	}
	sc := &sshScreen{t: r.t, c: c, s: s}
	s.RequestPty("xterm-256color", 30, 100, gossh.TerminalModes{})
	in, _ := s.StdinPipe()
	sc.in = in
	out, _ := s.StdoutPipe()
	if err := s.Shell(); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		buf := make([]byte, 8192)
		for {
			n, err := out.Read(buf)
			chunk := string(buf[:n])
			sc.mu.Lock()
			sc.out.Write(buf[:n])
			sc.mu.Unlock()
			// Answer what a terminal answers (background colour, DA1).
			if strings.Contains(chunk, "\x1b]11;?\a") {
				in.Write([]byte("\x1b]11;rgb:0000/0000/0000\a"))
			}
			if strings.Contains(chunk, "\x1b[c") {
				in.Write([]byte("\x1b[?62;22c"))
			}
			if err != nil {
				return
			}
		}
	}()
	return sc, nil
}

func (sc *sshScreen) waitFor(text string) {
	sc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sc.mu.Lock()
		got := sc.out.String()
		sc.mu.Unlock()
		if strings.Contains(got, text) {
			return
		}
		if time.Now().After(deadline) {
			sc.t.Fatalf("ssh console never showed %q; screen bytes:\n%q", text, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (sc *sshScreen) send(keys ...string) {
	for _, k := range keys {
		sc.in.Write([]byte(k))
	}
}

// The ssh console on the running focus: an authorized key sees the console
// and its key edit is on record with its ssh fingerprint (and only once); a
// viewer key gets the read-only console and cannot edit; an unknown key is
// refused. Session start and end are audited.
func TestRunSSHConsole(t *testing.T) {
	r := startOpsRun(t)
	r.waitNote("READY=1")

	if _, err := r.ssh(newSSHKey(t)); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("unknown key: err = %v", err)
	}

	adminFP := gossh.FingerprintSHA256(r.admin.PublicKey())
	sc, err := r.ssh(r.admin)
	if err != nil {
		t.Fatalf("authorized key refused: %v", err)
	}
	sc.waitFor(r.srv.Component)
	sc.send("3")
	sc.waitFor("Ops Ltd")
	sc.send("a")
	sc.waitFor("Client name")
	sc.send("Ssh Made", "\x13") // ctrl+s saves
	rec := r.waitAudit("the ssh key edit", func(a audit.Record) bool { return a.Event == audit.KeyAdded && a.Client == "Ssh Made" })
	if rec.Actor != "ssh:"+adminFP || rec.Via != audit.ViaSSH {
		t.Fatalf("ssh key edit recorded as %+v", rec)
	}
	r.waitMetric(`keyfocus_key_changes_total{change="added"}`, 1) // the focus saw it
	// Close the new key's panel: the Keys view's audit pane shows the edit.
	sc.send("\r")
	sc.waitFor("AUDIT LOG")
	sc.waitFor(`key added "Ssh Made" [` + rec.Fingerprint + `] by ssh:SHA256:`)
	sc.c.Close()
	r.waitAudit("the admin session's end", func(a audit.Record) bool { return a.Event == audit.SSHSessionEnd && a.Fingerprint == adminFP })

	viewerFP := gossh.FingerprintSHA256(r.viewer.PublicKey())
	vc, err := r.ssh(r.viewer)
	if err != nil {
		t.Fatalf("viewer key refused: %v", err)
	}
	defer vc.c.Close()
	vc.waitFor("READ-ONLY")
	vc.send("3")
	vc.waitFor("Ssh Made")
	vc.send("a")
	vc.waitFor("read-only console")
	start := r.waitAudit("the viewer session's start", func(a audit.Record) bool { return a.Event == audit.SSHSessionStart && a.Fingerprint == viewerFP })
	if start.Action != "read-only" {
		t.Fatalf("viewer session recorded as %+v", start)
	}

	// Stop: the auditor settles what it holds. Every key change is then on
	// record exactly once.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	recs, _ := audit.Tail(r.auditPath, 1000)
	n := 0
	for _, a := range recs {
		if a.Event == audit.KeyAdded && a.Client == "Ssh Made" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("ssh key edit recorded %d times: %+v", n, recs)
	}
	data, _ := os.ReadFile(r.keysPath)
	if strings.Count(string(data), "Ssh Made") != 1 {
		t.Fatalf("key file after the viewer: %s", data)
	}
}

// `keyfocus keys` with --audit beside a running focus: each change is on
// record once, with the local user; a revocation removes the member who
// came in with the key, on record and in the metrics.
func TestKeysCLIAuditedWhileFocusRuns(t *testing.T) {
	r := startOpsRun(t)
	r.waitNote("READY=1")
	keysCLI := func(args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		e := env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
			return map[string]string{"KEYFOCUS_KEYS": r.keysPath, "KEYFOCUS_AUDIT": r.auditPath}[k]
		}}
		if code := Main(context.Background(), append([]string{"keys"}, args...), e); code != 0 {
			t.Fatalf("keys %v: exit %d\n%s", args, code, errb.String())
		}
		return out.String(), errb.String()
	}
	out, _ := keysCLI("add", "--name", "Cli Co")
	key := strings.TrimSpace(out)
	fp := keys.Fingerprint(key)
	r.waitMetric(`keyfocus_key_changes_total{change="added"}`, 1)
	keysCLI("edit", "Cli Co", "--max-participants", "3")
	r.waitMetric(`keyfocus_key_changes_total{change="edited"}`, 1)

	// Someone joins with the key, then the key is revoked.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := simulate.Dial(ctx, simulate.Account{Addr: r.srv.C2SAddr, Domain: r.srv.Domain})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	room := "cli-room@" + r.srv.MUC
	rep, err := p.RequestConference(ctx, simulate.Request{Room: room, Key: key, Focus: r.srv.Component})
	if err != nil || !rep.Admitted() {
		t.Fatalf("not admitted: %v %+v", err, rep)
	}
	if _, err := p.Join(ctx, room, "carol"); err != nil {
		t.Fatal(err)
	}
	r.waitMetric("keyfocus_members", 1)
	r.waitMetric("keyfocus_rooms", 1)
	keysCLI("revoke", fp)
	r.waitAudit("the member removed by the revocation", func(a audit.Record) bool {
		return a.Event == audit.MemberRemoved && a.Actor == "revocation" && a.Fingerprint == fp && a.Nick == "carol"
	})
	r.waitMetric(`keyfocus_members_removed_total{actor="revocation"}`, 1)
	r.waitMetric(`keyfocus_key_changes_total{change="revoked"}`, 1)
	r.waitMetric("keyfocus_members", 0)

	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	recs, _ := audit.Tail(r.auditPath, 1000)
	want := audit.LocalActor()
	for _, kind := range []string{audit.KeyAdded, audit.KeyEdited, audit.KeyRevoked} {
		n := 0
		for _, a := range recs {
			if a.Event != kind || a.Fingerprint != fp {
				continue
			}
			n++
			if a.Actor != want || a.Via != audit.ViaCLI || a.Client != "Cli Co" {
				t.Errorf("%s recorded as %+v", kind, a)
			}
			if kind == audit.KeyEdited && strings.Join(a.Changed, ",") != "max-participants" {
				t.Errorf("edit changed = %v", a.Changed)
			}
		}
		if n != 1 {
			t.Errorf("%s recorded %d times, want once: %+v", kind, n, recs)
		}
	}
	data, _ := os.ReadFile(r.auditPath)
	if strings.Contains(string(data), key) {
		t.Fatal("the key reached the audit log")
	}
}

// consoleAudit (keyfocus attach --audit): the console's key edits go on
// record with the local user; without a path nothing is wrapped.
func TestConsoleAudit(t *testing.T) {
	dir := t.TempDir()
	ks, err := keys.Open(filepath.Join(dir, "keys.properties"))
	if err != nil {
		t.Fatal(err)
	}
	st, _, closeFn, err := consoleAudit("", ks, nil)
	if err != nil || st != ks {
		t.Fatalf("without a path: store %v, err %v", st, err)
	}
	closeFn()
	if _, _, _, err := consoleAudit(filepath.Join(dir, "no", "audit.jsonl"), ks, nil); err == nil {
		t.Fatal("an audit log that cannot be opened was accepted")
	}
	path := filepath.Join(dir, "audit.jsonl")
	st, _, closeFn, err = consoleAudit(path, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	_, e, err := st.Add(keys.Spec{Name: "Attach Co"})
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := audit.Tail(path, 10)
	if len(recs) != 1 || recs[0].Event != audit.KeyAdded || recs[0].Fingerprint != e.Fingerprint ||
		recs[0].Actor != audit.LocalActor() || recs[0].Via != audit.ViaConsole {
		t.Fatalf("records = %+v", recs)
	}
}

// READY=1 waits for the connection: with Prosody not up yet, health says
// why and systemd hears nothing but status; once Prosody is up, READY=1.
func TestRunReadyOnlyOnceConnected(t *testing.T) {
	dir := t.TempDir()
	free := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	c2s, comp := free(), free()
	secret := "ready-test-secret"
	keysPath := filepath.Join(dir, "keys.properties")
	os.WriteFile(keysPath, []byte("kf_readyreadyready=Ready Co\n"), 0o600)
	sock := filepath.Join(dir, "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	notes := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- string(buf[:n])
		}
	}()
	vars := map[string]string{
		"KEYFOCUS_XMPP_ADDR": "127.0.0.1:" + strconv.Itoa(comp), "KEYFOCUS_COMPONENT": "focus.meet.example", "KEYFOCUS_MUC": "conference.meet.example",
		"KEYFOCUS_KEYS": keysPath, "KEYFOCUS_SECRET": secret, "KEYFOCUS_HEADLESS": "1", "KEYFOCUS_HTTP": "127.0.0.1:0",
		"NOTIFY_SOCKET": sock,
	}
	stderr := &syncBuffer{}
	e := env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: stderr, Getenv: func(k string) string { return vars[k] }}
	sigs := make(chan chan<- os.Signal, 1)
	c := newRunCommand(e).(*runCommand)
	c.signals = func(ch chan<- os.Signal) { sigs <- ch }
	c.forceExit = func(int) { t.Error("forced exit") }
	r := &opsRun{t: t, stderr: stderr, done: make(chan error, 1), notes: notes}
	go func() { r.done <- c.Run(context.Background(), nil) }()
	r.sig = <-sigs
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Error(err)
		}
	})
	r.httpURL = "http://" + r.logField("health and metrics", "addr")
	r.waitHTTP("/about/health", 503, "not connected to Prosody (reconnecting, attempt")
	// A reload before the first connection says nothing to systemd either.
	r.sig <- syscall.SIGHUP
	r.logField("reload: key file re-read", "level")
	// Systemd has heard nothing that says ready.
	for drained := false; !drained; {
		select {
		case n := <-notes:
			if strings.Contains(n, "READY=1") || strings.Contains(n, "RELOADING=1") {
				t.Fatalf("READY=1 or RELOADING=1 before the focus connected: %q", n)
			}
		default:
			drained = true
		}
	}
	srv, err := prosody.Start(context.Background(), prosody.Options{Dir: t.TempDir(), C2SPort: c2s, ComponentPort: comp, Secret: secret})
	if errors.Is(err, prosody.ErrNotFound) {
		t.Skip("prosody not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	r.waitNote("READY=1")
	r.waitHTTP("/about/health", 200, "ok")
}

// An operator ends a room from the ssh console of the running focus: the
// action is on record with the ssh key, the member's removal with the
// operator as cause, and the metrics count it.
func TestRunSSHOperatorAction(t *testing.T) {
	r := startOpsRun(t)
	r.waitNote("READY=1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := simulate.Dial(ctx, simulate.Account{Addr: r.srv.C2SAddr, Domain: r.srv.Domain})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	room := "ops-room@" + r.srv.MUC
	rep, err := p.RequestConference(ctx, simulate.Request{Room: room, Key: "kf_opsopsopsops", Focus: r.srv.Component})
	if err != nil || !rep.Admitted() {
		t.Fatalf("not admitted: %v %+v", err, rep)
	}
	if _, err := p.Join(ctx, room, "dave"); err != nil {
		t.Fatal(err)
	}
	r.waitMetric("keyfocus_members", 1)

	sc, err := r.ssh(r.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.c.Close()
	sc.waitFor("ops-room")
	sc.send("X")
	sc.waitFor("y yes")
	sc.send("y")
	fp := gossh.FingerprintSHA256(r.admin.PublicKey())
	act := r.waitAudit("the operator action", func(a audit.Record) bool { return a.Event == audit.OperatorAction && a.Action == "end_room" })
	if act.Actor != "ssh:"+fp || act.Via != audit.ViaSSH || act.Room != room || act.Error != "" {
		t.Fatalf("operator action recorded as %+v", act)
	}
	r.waitAudit("dave's removal", func(a audit.Record) bool {
		return a.Event == audit.MemberRemoved && a.Actor == "operator" && a.Nick == "dave" && a.Room == room
	})
	r.waitMetric(`keyfocus_members_removed_total{actor="operator"}`, 1)
	r.waitMetric("keyfocus_rooms", 0)
	r.waitMetric("keyfocus_members", 0)
}

// --http: off, a taken explicit address (an error), the taken default (a
// warning, and keyfocus runs without it).
func TestRunHTTPFlag(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// Hold the default address too, if nobody else does already.
	if l, err := net.Listen("tcp", defaultHTTPAddr); err == nil {
		defer l.Close()
	}
	tests := []struct {
		name    string
		http    string
		wantErr string // run fails at start with this
		wantLog string // else the log has this
		noLog   string // and not this
	}{
		{"off", "off", "", "", `"msg":"health and metrics"`},
		{"explicit address taken", busy.Addr().String(), "listen for health and metrics on " + busy.Addr().String(), "", ""},
		{"default address taken", "", "", "health and metrics are off: the default address is in use", `"msg":"health and metrics"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			vars := map[string]string{
				"KEYFOCUS_XMPP_ADDR": busy.Addr().String(), // nothing speaks XMPP there: the focus redials
				"KEYFOCUS_KEYS":      filepath.Join(dir, "keys.properties"), "KEYFOCUS_SECRET": "s", "KEYFOCUS_HEADLESS": "1",
				"KEYFOCUS_HTTP": tt.http,
			}
			stderr := &syncBuffer{}
			e := env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: stderr, Getenv: func(k string) string { return vars[k] }}
			sigs := make(chan chan<- os.Signal, 1)
			c := newRunCommand(e).(*runCommand)
			c.signals = func(ch chan<- os.Signal) { sigs <- ch }
			c.forceExit = func(int) { t.Error("forced exit") }
			done := make(chan error, 1)
			go func() { done <- c.Run(context.Background(), nil) }()
			var sig chan<- os.Signal
			select {
			case sig = <-sigs: // started: everything of ops.start has run
			case err := <-done:
				if tt.wantErr == "" || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("run: %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			sig <- syscall.SIGTERM
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" {
				t.Fatalf("run started; want it to fail with %q", tt.wantErr)
			}
			logs := stderr.String()
			if tt.wantLog != "" && !strings.Contains(logs, tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, logs)
			}
			if tt.noLog != "" && strings.Contains(logs, tt.noLog) {
				t.Errorf("log has %q:\n%s", tt.noLog, logs)
			}
		})
	}
}
