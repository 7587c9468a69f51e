package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/keys"
)

// keysRun runs keyfocus in-process with the given environment variables.
func keysRun(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }}
	code = Main(context.Background(), args, e)
	return code, out.String(), errb.String()
}

// The plaintext seed key of the fixtures: it must never appear in any output.
const seedKey = "Admin123Secret"

func keysFixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.properties")
	content := "# keys\n" +
		seedKey + "=TTND\n" +
		"sha256:" + keys.HashKey("kf_acme") + "=Acme Corp; rooms=acme-*,board; expires=2999-03-01; max-participants=25; tier=gold\n" +
		"sha256:" + keys.HashKey("kf_old") + "=Old Client; expires=2020-01-01\n" +
		"sha256:" + keys.HashKey("kf_dup1") + "=Twin\n" +
		"sha256:" + keys.HashKey("kf_dup2") + "=Twin\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func fileText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKeysUsage(t *testing.T) {
	path := keysFixture(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"help", []string{"keys", "--help"}, 0, "Exit codes:"},
		{"sub help", []string{"keys", "add", "-h"}, 0, "Usage: keyfocus keys add --name NAME"},
		{"no command", []string{"keys"}, 2, "missing command"},
		{"unknown command", []string{"keys", "remove", "x"}, 2, `unknown command "remove"`},
		{"unknown flag", []string{"keys", "list", "--long"}, 2, "flag provided but not defined: -long"},
		{"list args", []string{"keys", "list", "x"}, 2, "list takes no arguments"},
		{"add no name", []string{"keys", "add", "--keys", path}, 2, "add needs --name"},
		{"add empty name", []string{"keys", "add", "--keys", path, "--name", " "}, 2, "client name is empty"},
		{"add name with semicolon", []string{"keys", "add", "--keys", path, "--name", "a;b"}, 2, "contains ';'"},
		{"add bad expiry", []string{"keys", "add", "--keys", path, "--name", "A", "--expires", "soon"}, 2, `--expires: "soon" is neither a date`},
		{"add bad rooms", []string{"keys", "add", "--keys", path, "--name", "A", "--rooms", "[x"}, 2, "--rooms: room pattern"},
		{"add negative limit", []string{"keys", "add", "--keys", path, "--name", "A", "--max-participants", "-2"}, 2, "use 0 for no limit"},
		{"add positional", []string{"keys", "add", "--keys", path, "Acme"}, 2, "add takes no arguments"},
		{"revoke nothing", []string{"keys", "revoke", "--keys", path}, 2, "revoke takes one NAME or FINGERPRINT"},
		{"revoke two", []string{"keys", "revoke", "--keys", path, "a", "b"}, 2, "revoke takes one"},
		{"edit nothing", []string{"keys", "edit", "--keys", path, "TTND"}, 2, "nothing to change"},
		{"edit contradiction", []string{"keys", "edit", "--keys", path, "TTND", "--rooms", "a", "--all-rooms"}, 2, "contradict"},
		{"edit expiry contradiction", []string{"keys", "edit", "--keys", path, "TTND", "--expires", "2030-01-01", "--no-expiry"}, 2, "contradict"},
		{"check two files", []string{"keys", "check", "a", "b"}, 2, "at most one FILE"},
		{"hash args", []string{"keys", "hash", "--keys", path, "TTND"}, 2, "hash takes no arguments"},
	}
	before := fileText(t, path)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := keysRun(t, nil, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, tt.code, tt.stderr)
			}
			if tt.code != 0 && stdout != "" {
				t.Errorf("stdout %q on a usage error", stdout)
			}
		})
	}
	if fileText(t, path) != before {
		t.Error("a usage error changed the key file")
	}
}

func TestKeysAdd(t *testing.T) {
	path := keysFixture(t)
	// The path comes from KEYFOCUS_KEYS.
	code, stdout, stderr := keysRun(t, map[string]string{"KEYFOCUS_KEYS": path},
		"keys", "add", "--name", "New Client", "--rooms", "new-*, board", "--expires", "2030-06-30", "--max-participants", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !regexp.MustCompile(`^kf_[a-z2-7]{32}\n$`).MatchString(stdout) {
		t.Fatalf("stdout %q, want only the new key on one line", stdout)
	}
	key := strings.TrimSpace(stdout)
	if strings.Contains(stderr, key) || !strings.Contains(stderr, "only time the key is shown") || !strings.Contains(stderr, keys.Fingerprint(key)) {
		t.Errorf("stderr %q: want guidance with the fingerprint and never the key", stderr)
	}
	text := fileText(t, path)
	if strings.Contains(text, key) {
		t.Fatal("the key is in the file in plaintext")
	}
	wantLine := "sha256:" + keys.HashKey(key) + "=New Client; rooms=new-*,board; expires=2030-06-30; max-participants=4\n"
	if !strings.HasSuffix(text, wantLine) {
		t.Fatalf("file ends %q, want %q", text[strings.LastIndex(text[:len(text)-1], "\n")+1:], wantLine)
	}
	s, err := keys.OpenWith(path, keys.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if e := s.Snapshot().Lookup(key); e == nil || e.Name != "New Client" || !e.AllowsRoom("new-standup") || e.AllowsRoom("acme-x") {
		t.Fatalf("the new key does not work as given: %+v", e)
	}

	// A missing file is created (0600) by add.
	fresh := filepath.Join(t.TempDir(), "new.properties")
	if code, _, stderr := keysRun(t, nil, "keys", "--keys", fresh, "add", "--name", "First"); code != 0 {
		t.Fatalf("add to a missing file: exit %d: %s", code, stderr)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created file: %v %v, want mode 0600", fi, err)
	}
}

func TestKeysList(t *testing.T) {
	path := keysFixture(t)
	code, stdout, stderr := keysRun(t, nil, "keys", "list", "--keys", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	want := [][]string{
		{"NAME", "FINGERPRINT", "FORM", "ROOMS", "EXPIRES", "LIMIT", "LINE"},
		{"TTND", keys.Fingerprint(seedKey), "plaintext", "all", "never", "-", "2"},
		{"Acme", "Corp", keys.Fingerprint("kf_acme"), "hashed", "acme-*,board", "2999-03-01", "25", "3"},
		{"Old", "Client", keys.Fingerprint("kf_old"), "hashed", "all", "2020-01-01", "(expired)", "-", "4"},
		{"Twin", keys.Fingerprint("kf_dup1"), "hashed", "all", "never", "-", "5"},
		{"Twin", keys.Fingerprint("kf_dup2"), "hashed", "all", "never", "-", "6"},
	}
	if len(lines) != len(want) {
		t.Fatalf("list:\n%s", stdout)
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("row %d = %q, want %q", i, got, w)
		}
	}
	if !strings.Contains(stderr, `warning: `+path+`:3: unknown attribute "tier"`) {
		t.Errorf("stderr %q, want the unknown-attribute warning", stderr)
	}

	code, stdout, _ = keysRun(t, nil, "keys", "--keys", path, "list", "--json")
	if code != 0 {
		t.Fatal(code)
	}
	var got struct {
		File string `json:"file"`
		Keys []struct {
			Name            string   `json:"name"`
			Fingerprint     string   `json:"fingerprint"`
			Form            string   `json:"form"`
			Rooms           []string `json:"rooms"`
			Expires         *string  `json:"expires"`
			Expired         bool     `json:"expired"`
			MaxParticipants int      `json:"max_participants"`
			Line            int      `json:"line"`
			Attributes      []struct{ Name, Value string }
		} `json:"keys"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("list --json: %v\n%s", err, stdout)
	}
	if got.File != path || len(got.Keys) != 5 || len(got.Warnings) != 1 {
		t.Fatalf("list --json = %+v", got)
	}
	acme := got.Keys[1]
	if acme.Name != "Acme Corp" || acme.Form != "hashed" || strings.Join(acme.Rooms, ",") != "acme-*,board" ||
		acme.Expires == nil || *acme.Expires != "2999-03-02T00:00:00Z" || acme.Expired || acme.MaxParticipants != 25 ||
		acme.Line != 3 || len(acme.Attributes) != 1 || acme.Attributes[0].Name != "tier" {
		t.Errorf("acme = %+v", acme)
	}
	if seed := got.Keys[0]; seed.Form != "plaintext" || seed.Expires != nil || seed.Rooms == nil || seed.Expired {
		t.Errorf("seed = %+v", seed)
	}
	if !got.Keys[2].Expired {
		t.Error("old key not marked expired")
	}
	if strings.Contains(stdout, seedKey) || strings.Contains(stdout, keys.HashKey(seedKey)) {
		t.Error("list --json shows a key or its full hash")
	}

	// A missing file is an error for list, and list does not create it.
	missing := filepath.Join(t.TempDir(), "typo.properties")
	if code, _, stderr := keysRun(t, nil, "keys", "list", "--keys", missing); code != 1 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("list of a missing file: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("list created the missing file")
	}
}

func TestKeysRevoke(t *testing.T) {
	tests := []struct {
		name    string
		arg     string
		code    int
		stderr  string
		removed string // the line gone from the file
	}{
		{name: "by name", arg: "TTND", stderr: `Revoked key ` + keys.Fingerprint(seedKey), removed: seedKey + "=TTND\n"},
		{name: "by name ignoring case", arg: "acme corp", stderr: "Revoked key " + keys.Fingerprint("kf_acme"), removed: "=Acme Corp;"},
		{name: "by fingerprint", arg: keys.Fingerprint("kf_old")[:5], stderr: "Revoked key " + keys.Fingerprint("kf_old"), removed: "=Old Client;"},
		{name: "by full hash", arg: "sha256:" + keys.HashKey("kf_old"), stderr: "Revoked key", removed: "=Old Client;"},
		{name: "ambiguous", arg: "Twin", code: 1, stderr: "matches 2 keys"},
		{name: "unknown", arg: "Nobody", code: 1, stderr: `no key has the client name "Nobody"`},
		{name: "unknown fingerprint", arg: "ffffffff", code: 1, stderr: "no key has the client name or fingerprint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := keysFixture(t)
			before := fileText(t, path)
			code, stdout, stderr := keysRun(t, nil, "keys", "revoke", tt.arg, "--keys", path)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) || stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit %d and %q", code, stdout, stderr, tt.code, tt.stderr)
			}
			if strings.Contains(stderr, seedKey) {
				t.Error("the key is in the output")
			}
			after := fileText(t, path)
			if tt.removed == "" {
				if after != before {
					t.Errorf("a failed revoke changed the file:\n%s", after)
				}
				return
			}
			var gone string
			for _, l := range strings.SplitAfter(before, "\n") {
				if strings.Contains(l, tt.removed) {
					gone = l
				}
			}
			if gone == "" || strings.Replace(before, gone, "", 1) != after {
				t.Errorf("file after revoke:\n%s\nwant only the line with %q removed", after, tt.removed)
			}
		})
	}
	// The ambiguous error names both candidates by fingerprint.
	path := keysFixture(t)
	_, _, stderr := keysRun(t, nil, "keys", "--keys", path, "revoke", "Twin")
	for _, k := range []string{"kf_dup1", "kf_dup2"} {
		if !strings.Contains(stderr, keys.Fingerprint(k)+"  Twin (line ") {
			t.Errorf("ambiguity error %q does not list %s", stderr, keys.Fingerprint(k))
		}
	}
}

func TestKeysEdit(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the Acme line after the edit (value part)
	}{
		{"rooms", []string{"--rooms", "acme-*"}, "=Acme Corp; rooms=acme-*; expires=2999-03-01; max-participants=25; tier=gold\n"},
		{"all rooms", []string{"--all-rooms"}, "=Acme Corp; expires=2999-03-01; max-participants=25; tier=gold\n"},
		{"no expiry and name", []string{"--no-expiry", "--name", "Acme Inc"}, "=Acme Inc; rooms=acme-*,board; max-participants=25; tier=gold\n"},
		{"expiry", []string{"--expires", "2031-01-31T12:00:00Z"}, "=Acme Corp; rooms=acme-*,board; expires=2031-01-31T12:00:00Z; max-participants=25; tier=gold\n"},
		{"no limit", []string{"--max-participants", "0"}, "=Acme Corp; rooms=acme-*,board; expires=2999-03-01; tier=gold\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := keysFixture(t)
			before := fileText(t, path)
			args := append([]string{"keys", "edit", "--keys", path, keys.Fingerprint("kf_acme")}, tt.args...)
			code, stdout, stderr := keysRun(t, nil, args...)
			if code != 0 || stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
			}
			prefix := "sha256:" + keys.HashKey("kf_acme")
			start := strings.Index(before, prefix)
			end := start + strings.Index(before[start:], "\n") + 1
			want := before[:start] + prefix + tt.want + before[end:]
			if got := fileText(t, path); got != want {
				t.Errorf("file:\n%s\nwant:\n%s", got, want)
			}
			if !strings.Contains(stderr, "Changed key "+keys.Fingerprint("kf_acme")) {
				t.Errorf("stderr %q", stderr)
			}
		})
	}
}

func TestKeysCheck(t *testing.T) {
	dir := t.TempDir()
	good := keysFixture(t)
	bad := filepath.Join(dir, "bad.properties")
	if err := os.WriteFile(bad, []byte("a=A\nb=\nc=C; expires=someday\nd=D; color=red\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		vars   map[string]string
		code   int
		stdout []string
	}{
		{name: "good", args: []string{"check", good}, stdout: []string{
			good + `:3: warning: unknown attribute "tier"`, "5 keys, 0 errors, 1 warnings"}},
		{name: "good from env", args: []string{"check"}, vars: map[string]string{"KEYFOCUS_KEYS": good}, stdout: []string{good + ":3: warning", "5 keys, 0 errors"}},
		{name: "bad", args: []string{"check", bad}, code: 1, stdout: []string{
			bad + ":2: key " + keys.Fingerprint("b") + " has no client name",
			bad + `:3: expires: "someday" is neither a date`,
			bad + `:4: warning: unknown attribute "color"`,
			"2 keys, 2 errors, 1 warnings"}},
		{name: "missing", args: []string{"check", filepath.Join(dir, "nope")}, code: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := keysRun(t, tt.vars, append([]string{"keys"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			got := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if len(tt.stdout) > 0 && len(got) != len(tt.stdout) {
				t.Fatalf("stdout:\n%s\nwant %d lines", stdout, len(tt.stdout))
			}
			for i, w := range tt.stdout {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("line %d = %q, want prefix %q", i+1, got[i], w)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
		t.Error("check created the file")
	}
}

// A file with errors: every command that needs its keys refuses with the
// error's FILE:LINE, and nothing is written.
func TestKeysBrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.properties")
	content := "a=A\nb=; rooms=x\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"list"},
		{"add", "--name", "New"},
		{"revoke", "A"},
		{"edit", "A", "--name", "B"},
		{"hash"},
	} {
		code, stdout, stderr := keysRun(t, nil, append([]string{"keys", "--keys", path}, args...)...)
		if code != 1 || stdout != "" || !strings.Contains(stderr, path+":2: ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and the error at line 2", args, code, stdout, stderr)
		}
	}
	if fileText(t, path) != content {
		t.Error("the broken file was changed")
	}
}

func TestKeysHash(t *testing.T) {
	path := keysFixture(t)
	before := fileText(t, path)
	// The seed key has upper-case letters: kept unless --mixed-case.
	code, stdout, stderr := keysRun(t, nil, "keys", "--keys", path, "hash")
	if code != 0 || stdout != "" || !strings.Contains(stderr, "Left 1 key(s) in plaintext") || fileText(t, path) != before {
		t.Fatalf("exit %d, stdout %q, stderr %q; file changed: %v", code, stdout, stderr, fileText(t, path) != before)
	}
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	code, stdout, stderr = keysRun(t, nil, "keys", "--keys", path, "--audit", auditLog, "hash", "--mixed-case")
	if code != 0 || stdout != "" || !strings.Contains(stderr, "Hashed 1 key(s)") || !strings.Contains(stderr, keys.Fingerprint(seedKey)+"  TTND (line 2)") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	want := strings.Replace(before, seedKey+"=", "sha256:"+keys.HashKey(seedKey)+"=", 1)
	if got := fileText(t, path); got != want {
		t.Errorf("file after hash:\n%s\nwant:\n%s", got, want)
	}
	if rec := fileText(t, auditLog); !strings.Contains(rec, `"hashed"`) || !strings.Contains(rec, keys.Fingerprint(seedKey)) || strings.Contains(rec, seedKey) {
		t.Errorf("audit record: %s", rec)
	}
	code, _, stderr = keysRun(t, nil, "keys", "--keys", path, "hash")
	if code != 0 || !strings.Contains(stderr, "hashed already") {
		t.Errorf("again: exit %d, stderr %q", code, stderr)
	}
	if strings.Contains(stderr, seedKey) {
		t.Error("the key reached the output")
	}
}

// What `keyfocus keys` writes reaches a running keyfocus through its watch.
func TestKeysReachWatchingStore(t *testing.T) {
	path := keysFixture(t)
	s, err := keys.OpenWith(path, keys.Options{Logger: slog.New(slog.DiscardHandler), Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := s.Watch(ctx)
	next := func() keys.Update {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case <-time.After(10 * time.Second):
			t.Fatal("no update from the watch")
		}
		return keys.Update{}
	}
	code, stdout, stderr := keysRun(t, nil, "keys", "--keys", path, "add", "--name", "Live")
	if code != 0 {
		t.Fatal(stderr)
	}
	key := strings.TrimSpace(stdout)
	if u := next(); u.Err != nil || u.Snapshot.Lookup(key) == nil {
		t.Fatalf("update %+v, want the added key", u)
	}
	if code, _, stderr := keysRun(t, nil, "keys", "--keys", path, "revoke", "Live"); code != 0 {
		t.Fatal(stderr)
	}
	if u := next(); u.Err != nil || u.Snapshot.Lookup(key) != nil || u.Notice != "" {
		t.Fatalf("update %+v, want the key revoked at once", u)
	}
}
