package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
	"github.com/keyfocus/keyfocus/focus/simulate"
)

func testEnv(vars map[string]string) (env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }}, &out, &errb
}

func TestRunUsage(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("  s3cret \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		vars map[string]string
		code int
		want string
	}{
		{"console needs a terminal", []string{}, map[string]string{"KEYFOCUS_SECRET": "x"}, 2, "console needs a terminal"},
		{"no secret", []string{"--headless"}, nil, 2, "KEYFOCUS_SECRET or --secret-file"},
		{"secret as argument", []string{"--headless", "--secret=abc"}, nil, 2, ""},
		{"stray secret argument", []string{"--headless", "secret=abc"}, nil, 2, "--secret-file only"},
		{"both secrets", []string{"--headless", "--secret-file", secretFile}, map[string]string{"KEYFOCUS_SECRET": "x"}, 2, "use one"},
		{"empty secret file", []string{"--headless", "--secret-file", filepath.Join(dir, "missing")}, nil, 2, "secret"},
		{"bad log level", []string{"--headless", "--log-level", "loud"}, map[string]string{"KEYFOCUS_SECRET": "x"}, 2, "log-level"},
		{"help", []string{"-h"}, nil, 0, "KEYFOCUS_XMPP_ADDR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _, stderr := testEnv(tc.vars)
			code := Main(context.Background(), append([]string{"run"}, tc.args...), e)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not say %q", stderr, tc.want)
			}
		})
	}
}

func TestRunHeadlessDrainsOnSignal(t *testing.T) {
	srv := prosodytest.Start(t)
	dir := t.TempDir()
	keysPath := filepath.Join(dir, "keys.properties")
	if err := os.WriteFile(keysPath, []byte("kf_run=Runner\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(srv.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"KEYFOCUS_XMPP_ADDR": srv.ComponentAddr, "KEYFOCUS_COMPONENT": srv.Component, "KEYFOCUS_MUC": srv.MUC,
		"KEYFOCUS_KEYS": keysPath, "KEYFOCUS_SECRET_FILE": secretFile, "KEYFOCUS_STATE": filepath.Join(dir, "state.json"),
		"KEYFOCUS_HEADLESS": "1",
	}
	var stderr syncBuffer
	e := env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(k string) string { return vars[k] }}
	sigs := make(chan chan<- os.Signal, 1)
	forced := make(chan int, 1)
	c := newRunCommand(e).(*runCommand)
	c.signals = func(ch chan<- os.Signal) { sigs <- ch }
	c.forceExit = func(code int) { forced <- code }
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background(), nil) }()
	sig := <-sigs

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := simulate.Dial(ctx, simulate.Account{Addr: srv.C2SAddr, Domain: srv.Domain})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var rep *simulate.Reply
	for rep == nil || (rep.Error != nil && rep.Error.Condition == "service-unavailable" && rep.Error.Code == 0) {
		// Until the focus has connected Prosody answers service-unavailable itself.
		if rep, err = p.RequestConference(ctx, simulate.Request{Room: "r@" + srv.MUC, Key: "kf_run", Focus: srv.Component}); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal("focus never answered")
		}
	}
	if !rep.Admitted() {
		t.Fatalf("not admitted: %+v\n%s", rep.Error, stderr.String())
	}
	sig <- syscall.SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-ctx.Done():
		t.Fatalf("run did not drain and exit; stderr:\n%s", stderr.String())
	}
	logs := stderr.String()
	for _, want := range []string{`"msg":"ready"`, `"msg":"signal: draining`, `"msg":"shut down"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "kf_run") || strings.Contains(logs, srv.Secret) {
		t.Errorf("a key or the secret reached the log:\n%s", logs)
	}
	if len(forced) != 0 {
		t.Error("forced exit on the first signal")
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
