package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/focus/prosody"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
	"github.com/keyfocus/keyfocus/keys"
)

const skipNode = "\n" +
	"********************************************************************\n" +
	"*** SKIPPED: %s\n" +
	"*** The interop tests run independent XMPP clients (xmpp.js,      ***\n" +
	"*** strophe.js) under Node.js (20.10 or later). Then run          ***\n" +
	"***     npm ci --prefix focus/interop/js                          ***\n" +
	"*** as .ci/run does; CI must not skip them.                       ***\n" +
	"********************************************************************"

// jsDir is the folder of the Node scripts, relative to this package.
const jsDir = "js"

// needNode skips the test loudly when node or the installed packages are
// missing, and returns the node binary.
func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skipf(skipNode, "node is not on PATH")
	}
	for _, mod := range []string{"@xmpp/client", "strophe.js", "ltx"} {
		if _, err := os.Stat(filepath.Join(jsDir, "node_modules", mod, "package.json")); err != nil {
			t.Skipf(skipNode, "focus/interop/js/node_modules lacks "+mod)
		}
	}
	return node
}

// env is a real Prosody (with websocket), a key file and the real focus.
type env struct {
	srv      *prosody.Server
	keysPath string
	store    *keys.Store
	logs     *syncBuffer
	keys     map[string]string      // role -> key
	entries  map[string]*keys.Entry // role -> its entry in the store
	// stopFocus shuts the focus down gracefully (once; later calls return
	// the first result).
	stopFocus func() error
}

func start(t *testing.T) *env {
	t.Helper()
	srv := prosodytest.Start(t, prosodytest.WithOptions(func(o *prosody.Options) { o.HTTPPort = -1 }))
	e := &env{srv: srv, keysPath: filepath.Join(t.TempDir(), "keys.properties"), logs: &syncBuffer{}, keys: map[string]string{}, entries: map[string]*keys.Entry{}}
	if err := os.WriteFile(e.keysPath, []byte("# interop test keys\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := keys.OpenWith(e.keysPath, keys.Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	// Keys as keyfocus makes them (kf_..., stored hashed); "wrong" is a
	// well-formed key that is not in the file.
	for _, role := range []string{"good", "prefix", "revoke", "revokecase"} {
		k, entry, err := st.Add(keys.Spec{Name: "Interop " + role})
		if err != nil {
			t.Fatal(err)
		}
		e.keys[role], e.entries[role] = k, entry
	}
	wrong, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e.keys["wrong"] = wrong

	f, err := focus.New(focus.Config{
		Addr: srv.ComponentAddr, Component: srv.Component, MUC: srv.MUC, Secret: srv.Secret,
		Store: st, StatePath: filepath.Join(t.TempDir(), "state.json"), Logger: logger,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	e.stopFocus = sync.OnceValue(func() error {
		cancel() // a graceful shutdown, as on SIGTERM
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("focus Run: %w", err)
			}
			return nil
		case <-time.After(15 * time.Second):
			return errors.New("focus did not stop within 15s")
		}
	})
	t.Cleanup(func() {
		if err := e.stopFocus(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("focus log (keys show as fingerprints only):\n%s", tail(e.logs.String(), 60))
		}
		for _, k := range e.keys {
			if strings.Contains(e.logs.String(), k) {
				t.Error("a client key reached the focus log in plaintext")
			}
		}
	})
	select {
	case <-f.Ready():
	case err := <-done:
		t.Fatalf("focus ended before it was ready: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatalf("focus not ready within 15s; log:\n%s", e.logs.String())
	}
	return e
}

// check is one line of a script's verdict.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

type result struct {
	Client string   `json:"client"`
	Checks []check  `json:"checks"`
	Notes  []string `json:"notes"` // what a client library did wrong on its own
}

const resultPrefix = "INTEROP-RESULT "

// runScript runs interop.mjs for one client library and returns its verdict.
func (e *env) runScript(t *testing.T, node, client string) result {
	t.Helper()
	var tag [4]byte
	if _, err := rand.Read(tag[:]); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"c2s":       e.srv.C2SAddr,
		"websocket": "ws://" + e.srv.HTTPAddr + "/xmpp-websocket",
		"bosh":      "http://" + e.srv.HTTPAddr + "/http-bind",
		"domain":    e.srv.Domain,
		"muc":       e.srv.MUC,
		"focus":     e.srv.Component,
		"keysFile":  e.keysPath,
		"separator": focus.DefaultRoomKeySeparator,
		"keys":      e.keys,
		"tag":       hex.EncodeToString(tag[:]),
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "interop.mjs", client)
	cmd.Dir = jsDir
	// The keys travel in the environment, never in argv.
	cmd.Env = append(os.Environ(), "KEYFOCUS_INTEROP_CONFIG="+string(b))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	t.Logf("%s (stderr):\n%s", client, stderr.String())
	out := stdout.String() + stderr.String()
	for _, k := range e.keys {
		if strings.Contains(strings.ToLower(out), strings.ToLower(k)) {
			t.Errorf("%s printed a client key in plaintext", client)
		}
	}
	var res result
	found := false
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), resultPrefix); ok {
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				t.Fatalf("%s: bad result line: %v", client, err)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("%s: no %q line (exit: %v); stdout:\n%s", client, strings.TrimSpace(resultPrefix), runErr, stdout.String())
	}
	if runErr != nil {
		t.Errorf("%s: node exited: %v", client, runErr)
	}
	return res
}

// report turns a verdict into test results.
func report(t *testing.T, res result, minChecks int) {
	t.Helper()
	if len(res.Checks) < minChecks {
		t.Errorf("%s: only %d checks ran, want at least %d", res.Client, len(res.Checks), minChecks)
	}
	for _, n := range res.Notes {
		t.Logf("%s: NOTE: %s", res.Client, n)
	}
	for _, c := range res.Checks {
		if !c.OK {
			t.Errorf("%s: %s\n%s", res.Client, c.Name, c.Detail)
		}
	}
}

// The checks each client must run: every scenario of interop.mjs.
const minChecks = 70

func TestXMPPJS(t *testing.T) {
	node := needNode(t)
	e := start(t)
	report(t, e.runScript(t, node, "xmpp.js"), minChecks)
}

func TestStropheJS(t *testing.T) {
	node := needNode(t)
	e := start(t)
	report(t, e.runScript(t, node, "strophe.js"), minChecks)
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

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
