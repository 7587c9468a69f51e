package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/prosody"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
	"github.com/keyfocus/keyfocus/focus/simulate"
)

func TestSimulateUsage(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("# only a comment\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad key form", []string{"--key-form", "cookie"}, 2, "--key-form"},
		{"ratio too big", []string{"--invalid-ratio", "2"}, 2, "--invalid-ratio"},
		{"negative intruders", []string{"--intruder-ratio", "-0.1"}, 2, "--intruder-ratio"},
		{"no limit", []string{"--participants", "0"}, 2, "--duration"},
		{"no rooms", []string{"--rooms", "0"}, 2, "--rooms"},
		{"no concurrency", []string{"--concurrency", "0"}, 2, "--concurrency"},
		{"negative rate", []string{"--rate", "-1"}, 2, "--rate"},
		{"empty separator", []string{"--key-form", "room", "--room-key-separator", ""}, 2, "separator"},
		{"stray argument", []string{"kf_secret"}, 2, "unexpected argument"},
		{"missing keys file", []string{"--keys-file", filepath.Join(dir, "nope")}, 1, "keys file"},
		{"empty keys file", []string{"--keys-file", empty}, 1, "holds no keys"},
		{"nobody listening", []string{"--xmpp-client-addr", "127.0.0.1:1", "--step-timeout", "2s"}, 1, "cannot log in"},
		{"help", []string{"-h"}, 0, "-xmpp-client-addr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, stdout, stderr := testEnv(nil)
			code := Main(context.Background(), append([]string{"simulate"}, tc.args...), e)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not say %q", stderr, tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty: %q", stdout)
			}
		})
	}
}

// startFocus runs `keyfocus run --headless` in-process against srv and waits
// until it answers conference requests. It stops the focus when the test ends.
func startFocus(t *testing.T, srv *prosody.Server, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	keysPath := filepath.Join(dir, "keys.properties")
	if err := os.WriteFile(keysPath, []byte(keyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"KEYFOCUS_XMPP_ADDR": srv.ComponentAddr, "KEYFOCUS_COMPONENT": srv.Component, "KEYFOCUS_MUC": srv.MUC,
		"KEYFOCUS_KEYS": keysPath, "KEYFOCUS_SECRET": srv.Secret, "KEYFOCUS_STATE": filepath.Join(dir, "state.json"),
		"KEYFOCUS_HEADLESS": "1", "KEYFOCUS_HTTP": "127.0.0.1:0", "KEYFOCUS_SOCKET": filepath.Join(dir, "ctl.sock"),
	}
	var logs syncBuffer
	e := env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &logs, Getenv: func(k string) string { return vars[k] }}
	sigs := make(chan chan<- os.Signal, 1)
	c := newRunCommand(e).(*runCommand)
	c.signals = func(ch chan<- os.Signal) { sigs <- ch }
	c.forceExit = func(int) {}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background(), nil) }()
	var sig chan<- os.Signal
	select {
	case sig = <-sigs:
	case err := <-done:
		t.Fatalf("focus exited at once: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		sig <- syscall.SIGTERM
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("focus did not stop")
		}
		if t.Failed() {
			t.Logf("focus log:\n%s", logs.String())
		}
	})

	// Until the focus has connected, Prosody itself answers for it.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p, err := simulate.Dial(ctx, simulate.Account{Addr: srv.C2SAddr, Domain: srv.Domain})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for {
		rep, err := p.RequestConference(ctx, simulate.Request{Room: "probe@" + srv.MUC, Focus: srv.Component})
		if err != nil {
			t.Fatalf("focus never answered: %v\n%s", err, logs.String())
		}
		if rep.Error != nil && rep.Error.Code == 401 {
			return // the focus itself: no key supplied
		}
		select {
		case <-ctx.Done():
			t.Fatalf("focus never answered, last reply %+v\n%s", rep.Error, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestSimulateAgainstFocus(t *testing.T) {
	srv := prosodytest.Start(t)
	const key1, key2 = "kf_simulatealpha", "kf_simulatebeta"
	startFocus(t, srv, key1+"=Alpha\n"+key2+"=Beta; rooms=sim-*\n")
	keysFile := filepath.Join(t.TempDir(), "present.txt")
	if err := os.WriteFile(keysFile, []byte("# keys to present\n"+key1+"\n\n"+key2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, s *simulate.Summary)
	}{
		{"property keys, wrong keys, intruders", []string{"--participants", "20", "--rooms", "3", "--invalid-ratio", "0.25", "--intruder-ratio", "0.2", "--concurrency", "6"},
			func(t *testing.T, s *simulate.Summary) {
				// 4 intruders; of the 16 requests 4 carry a wrong key.
				if s.Started != 20 || s.Finished != 20 || s.Admitted != 12 || s.Refused["403 service-unavailable"] != 4 {
					t.Errorf("admissions: %+v", s)
				}
				if s.AdmittedInvalid != 0 || s.RefusedValid != 0 || s.IntrudersIn != 0 {
					t.Errorf("the gate leaked: %+v", s)
				}
				// An intruder is refused by a room the focus owns
				// (registration-required) or cannot create one (not-allowed).
				if s.Intruders != 4 || s.JoinRefused["registration-required"]+s.JoinRefused["not-allowed"] != 4 || s.Joined != 12 {
					t.Errorf("joins: %+v", s)
				}
			}},
		{"room form", []string{"--participants", "6", "--key-form", "room", "--lowercase"},
			func(t *testing.T, s *simulate.Summary) {
				if s.Admitted != 6 || s.Joined != 6 {
					t.Errorf("room form: %+v", s)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, stdout, stderr := testEnv(nil)
			args := append([]string{"simulate", "--xmpp-client-addr", srv.C2SAddr, "--domain", srv.Domain, "--focus", srv.Component,
				"--muc", srv.MUC, "--keys-file", keysFile, "--stay", "0s", "--json"}, tc.args...)
			if code := Main(context.Background(), args, e); code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			var s simulate.Summary
			if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
				t.Fatalf("summary is not JSON: %v\n%s", err, stdout)
			}
			tc.check(t, &s)
			if s.DiscoFailed != 0 || s.FocusLeft != 0 || s.Disconnected != 0 {
				t.Errorf("disco#info to the focus failed %d, focus left %d, disconnected %d", s.DiscoFailed, s.FocusLeft, s.Disconnected)
			}
			for _, out := range []string{stdout.String(), stderr.String()} {
				if strings.Contains(out, key1) || strings.Contains(out, key2) {
					t.Errorf("a key was printed:\n%s", out)
				}
			}
		})
	}
}
