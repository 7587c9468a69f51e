package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyfocus/keyfocus/keys"
)

func TestDemoUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		inStderr []string
	}{
		{"prosody missing", []string{"--prosody", "no-such-prosody-binary"}, 1,
			[]string{"needs Prosody", "apt-get install -y prosody", "run the demo again"}},
		{"bad rate", []string{"--rate", "0"}, 2, []string{"--rate must be positive"}},
		{"extra argument", []string{"now"}, 2, []string{"unexpected arguments: now"}},
		{"help", []string{"-h"}, 0, []string{"Usage: keyfocus demo", "-revoke-after"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			e := env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
			code := Main(context.Background(), append([]string{"demo"}, tt.args...), e)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			for _, s := range tt.inStderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty: %q", stdout.String())
			}
		})
	}
}

// keyfocus demo --dir rewrites keys.properties there: it refuses a folder
// whose key file some other keyfocus wrote, and leaves that file alone.
func TestDemoDirKeepsForeignKeyFile(t *testing.T) {
	tests := []struct {
		name    string
		content string // the key file already in --dir
		code    int
		inErr   string
	}{
		{"a deployment's key file", "admin123=TTND\n", 1, "is not a key file the demo wrote"},
		{"an empty key file", "", 1, "is not a key file the demo wrote"},
		{"a demo's key file", demoKeysHeader + "sha256:" + strings.Repeat("ab", 32) + "=Acme Corp\n", 1, "needs Prosody"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "keys.properties")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			e := env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &stderr, Getenv: func(string) string { return "" }}
			// No Prosody: a folder that passes the check stops at the next step.
			code := Main(context.Background(), []string{"demo", "--dir", dir, "--prosody", "no-such-prosody-binary"}, e)
			if code != tt.code || !strings.Contains(stderr.String(), tt.inErr) {
				t.Errorf("exit %d, want %d with %q; stderr:\n%s", code, tt.code, tt.inErr, stderr.String())
			}
			if got, err := os.ReadFile(path); err != nil || string(got) != tt.content {
				t.Errorf("key file now %q (err %v), want it untouched", got, err)
			}
		})
	}
}

func TestAttachUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		inStderr string
	}{
		{"no socket", nil, 2, "--socket PATH is required"},
		{"extra argument", []string{"--socket", "x.sock", "more"}, 2, "unexpected arguments: more"},
		{"no terminal", []string{"--socket", "x.sock"}, 2, "needs a terminal"},
		{"help", []string{"-h"}, 0, "Usage: keyfocus attach"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			e := env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(string) string { return "" }}
			if code := Main(context.Background(), append([]string{"attach"}, tt.args...), e); code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.inStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.inStderr, stderr.String())
			}
		})
	}
}

func TestDefaultLogFile(t *testing.T) {
	get := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if got := defaultLogFile(get(map[string]string{"XDG_STATE_HOME": "/s", "HOME": "/h"}), "run"); got != "/s/keyfocus/run.log" {
		t.Errorf("with XDG_STATE_HOME: %s", got)
	}
	if got := defaultLogFile(get(map[string]string{"HOME": "/h"}), "attach"); got != "/h/.local/state/keyfocus/attach.log" {
		t.Errorf("with HOME: %s", got)
	}
}

// The console's key store opens a key file that is missing or broken when
// the console starts once it is fixed, without a restart (attach, ssh).
func TestConsoleStoreOpensLater(t *testing.T) {
	tests := []struct {
		name  string
		start func(t *testing.T, path string) // the file at console start
		want  string                          // in the first error
	}{
		{"does not parse", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("a=A\nb=B; expires=soon\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, ":2: expires"},
		{"missing", func(*testing.T, string) {}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.properties")
			tt.start(t, path)
			cs, err := newConsoleStore(path, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("open: err %v, want %q", err, tt.want)
			}
			if cs.Snapshot() != nil {
				t.Error("a snapshot before the file reads")
			}
			if u := cs.Reload(); u.Err == nil || u.Snapshot != nil {
				t.Errorf("reload of the bad file: %+v", u)
			}
			if _, _, err := cs.Add(keys.Spec{Name: "X"}); err == nil {
				t.Error("add to the bad file succeeded")
			}
			if err := os.WriteFile(path, []byte("a=A\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if u := cs.Reload(); u.Err != nil || u.Snapshot.Len() != 1 {
				t.Fatalf("reload of the fixed file: err %v, %d keys", u.Err, u.Snapshot.Len())
			}
			if _, e, err := cs.Add(keys.Spec{Name: "X"}); err != nil || e.Line != 2 {
				t.Fatalf("add after the fix: %v (entry %+v)", err, e)
			}
			if got := cs.Snapshot().Len(); got != 2 {
				t.Errorf("%d keys after the add, want 2", got)
			}
		})
	}
}
