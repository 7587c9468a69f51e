package prosody_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"

	"github.com/keyfocus/keyfocus/focus/prosody"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
	"github.com/keyfocus/keyfocus/focus/simulate"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// handshake connects an XEP-0114 component and returns the error of the handshake.
func handshake(ctx context.Context, addr, name, secret string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := component.NewSession(ctx, jid.MustParse(name), []byte(secret), conn)
	if err != nil {
		return err
	}
	return s.Close()
}

func login(ctx context.Context, t *testing.T, s *prosody.Server) *simulate.Participant {
	t.Helper()
	p, err := simulate.Dial(ctx, simulate.Account{Addr: s.C2SAddr, Domain: s.Domain})
	if err != nil {
		t.Fatalf("anonymous login: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestStartLoginHandshake(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithExtraComponents("bare.meet.example"))
	ctx := ctxT(t)
	if s.Domain != "meet.example" || s.MUC != "conference.meet.example" || s.Component != "focus.meet.example" {
		t.Errorf("defaults: domain %q muc %q component %q", s.Domain, s.MUC, s.Component)
	}
	p := login(ctx, t, s)
	if !strings.HasSuffix(p.Bare(), "@meet.example") {
		t.Errorf("anonymous JID %q is not on meet.example", p.JID())
	}
	tests := []struct {
		name, component, secret string
		ok                      bool
	}{
		{"focus", s.Component, s.Secret, true},
		{"extra component", "bare.meet.example", s.Secret, true},
		{"wrong secret", s.Component, s.Secret + "x", false},
		{"unknown component", "nobody.meet.example", s.Secret, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := handshake(ctx, s.ComponentAddr, tc.component, tc.secret)
			if (err == nil) != tc.ok {
				t.Errorf("handshake as %s: err = %v, want ok=%v", tc.component, err, tc.ok)
			}
		})
	}
}

func TestConfigIsPROTOCOL(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithDomain("example.org"))
	cfg, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`VirtualHost "example.org"`,
		`authentication = "anonymous"`,
		`Component "conference.example.org" "muc"`,
		`restrict_room_creation = true`,
		`admins = { "focus.example.org" }`,
		`muc_room_locking = false`,
		`muc_room_default_public_jids = true`,
		`Component "focus.example.org"`,
		`component_secret = "` + s.Secret + `"`,
		`network_settings = { nagle = false }`,
		`c2s_require_encryption = false`,
		`s2s_ports = { }`,
		`interfaces = { "127.0.0.1" }`,
	} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(string(cfg), "http_ports") {
		t.Errorf("HTTP is on without being asked:\n%s", cfg)
	}
}

// TestRoomCreation checks restrict_room_creation both ways, with Prosody's own MUC.
func TestRoomCreation(t *testing.T) {
	tests := []struct {
		name string
		open bool
	}{{"restricted", false}, {"open", true}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []prosodytest.Option
			if tc.open {
				opts = append(opts, prosodytest.WithOpenRoomCreation())
			}
			s := prosodytest.Start(t, opts...)
			ctx := ctxT(t)
			p := login(ctx, t, s)
			j, err := p.Join(ctx, "standup@"+s.MUC, "alice")
			if !tc.open {
				var se *simulate.StanzaError
				if !errors.As(err, &se) || se.Condition != "not-allowed" {
					t.Fatalf("join with restricted creation: %v, want not-allowed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("join: %v", err)
			}
			if !hasCode(j.Codes, 201) || !hasCode(j.Codes, 110) {
				t.Errorf("self-presence codes %v, want 110 and 201", j.Codes)
			}
		})
	}
}

func hasCode(codes []int, c int) bool {
	for _, x := range codes {
		if x == c {
			return true
		}
	}
	return false
}

func TestRestartSamePorts(t *testing.T) {
	s := prosodytest.Start(t)
	ctx := ctxT(t)
	c2s, comp := s.C2SAddr, s.ComponentAddr
	p := login(ctx, t, s)
	pid := s.Pid()

	tests := []struct {
		name string
		down func()
	}{
		{"restart", func() {}},
		{"after kill", s.Kill},
	}
	for _, tc := range tests {
		tc.down()
		if err := s.Restart(ctx); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if s.C2SAddr != c2s || s.ComponentAddr != comp {
			t.Fatalf("%s: ports moved: %s %s, were %s %s", tc.name, s.C2SAddr, s.ComponentAddr, c2s, comp)
		}
		if s.Pid() == pid || s.Pid() == 0 {
			t.Fatalf("%s: pid %d, old %d", tc.name, s.Pid(), pid)
		}
		pid = s.Pid()
		login(ctx, t, s)
		if err := handshake(ctx, s.ComponentAddr, s.Component, s.Secret); err != nil {
			t.Fatalf("%s: handshake: %v", tc.name, err)
		}
	}
	// The first participant's stream died with the first restart.
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("participant did not notice the restart")
	}
	s.Stop()
	if s.Running() {
		t.Fatal("still running after Stop")
	}
	if _, err := net.DialTimeout("tcp", c2s, time.Second); err == nil {
		t.Error("c2s port still accepts after Stop")
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := prosody.Start(context.Background(), prosody.Options{Binary: "no-such-prosody-binary"}); !errors.Is(err, prosody.ErrNotFound) {
		t.Errorf("missing binary: %v, want ErrNotFound", err)
	}
	if _, err := prosody.Start(context.Background(), prosody.Options{LogLevel: "error", Dir: t.TempDir()}); err == nil {
		t.Error("log level error accepted")
	}
	prosodytest.Start(t) // skips loudly without prosody

	// A fixed port that is taken: the error quotes Prosody's log.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	_, err = prosody.Start(context.Background(), prosody.Options{Dir: t.TempDir(), C2SPort: busy, ComponentPort: freePort})
	if err == nil || !strings.Contains(err.Error(), "Failed to open server port") {
		t.Errorf("busy fixed port: %v, want the log line about it", err)
	}
}

func TestTempDirRemoved(t *testing.T) {
	prosodytest.Start(t) // skip without prosody
	s, err := prosody.Start(context.Background(), prosody.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.ConfigPath); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("temporary dir %s left behind: %v", s.Dir, err)
	}
}

// BenchmarkStart is a start until c2s and component ports accept (the
// stop is not timed).
func BenchmarkStart(b *testing.B) {
	prosodytest.Start(b)
	for i := 0; i < b.N; i++ {
		s, err := prosody.Start(context.Background(), prosody.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Stop()
		b.StartTimer()
	}
}

func TestHTTPOnlyWhenAsked(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithOptions(func(o *prosody.Options) { o.HTTPPort = -1 }))
	if s.HTTPAddr == "" {
		t.Fatal("HTTPAddr empty with HTTPPort -1")
	}
	resp, err := http.Get("http://" + s.HTTPAddr + "/http-bind")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "BOSH") {
		t.Errorf("BOSH endpoint: %s %q", resp.Status, body)
	}
	if off := prosodytest.Start(t); off.HTTPAddr != "" {
		t.Errorf("HTTPAddr %q without asking", off.HTTPAddr)
	}
}
