package interop

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
)

const skipBrowser = "\n" +
	"********************************************************************\n" +
	"*** SKIPPED: %s\n" +
	"*** This test loads lib-jitsi-meet in headless Chromium. Install  ***\n" +
	"*** Debian's chromium (apt-get install chromium) and run          ***\n" +
	"***     npm ci --prefix focus/interop/js                          ***\n" +
	"*** or see focus/interop/js/README.md to run it by hand.          ***\n" +
	"********************************************************************"

// findChromium returns the browser binary: $KEYFOCUS_CHROMIUM, or chromium
// on PATH.
func findChromium() (string, error) {
	if p := os.Getenv("KEYFOCUS_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("chromium is not on PATH")
}

// redactor replaces every key (any case) with its fingerprint.
func redactor(keys map[string]string) func(string) string {
	var parts []string
	fp := map[string]string{}
	for _, k := range keys {
		parts = append(parts, regexp.QuoteMeta(k))
		sum := sha256.Sum256([]byte(k))
		fp[strings.ToLower(k)] = hex.EncodeToString(sum[:4])
	}
	re := regexp.MustCompile("(?i)" + strings.Join(parts, "|"))
	return func(s string) string {
		return re.ReplaceAllStringFunc(s, func(m string) string { return "<key:" + fp[strings.ToLower(m)] + ">" })
	}
}

// builds are the lib-jitsi-meet builds the browser test loads, each with
// the scripts its page needs (served as /vendor/NAME from node_modules).
var builds = []struct {
	generation string // the page: ljm/GENERATION.html
	scripts    map[string]string
	minChecks  int
}{
	{
		// npm lib-jitsi-meet 1.0.6 (November 2016) and the globals jitsi-meet
		// loaded beside it then: $, Strophe and the disco and caps plugins.
		generation: "2016",
		scripts: map[string]string{
			"jquery.js":              "jquery/dist/jquery.js",
			"strophe.js":             "strophe/strophe.js",
			"strophe.disco.js":       "strophejs-plugins/disco/strophe.disco.js",
			"strophe.caps.jsonly.js": "strophejs-plugins/caps/strophe.caps.jsonly.js",
			"lib-jitsi-meet.js":      "lib-jitsi-meet/dist/lib-jitsi-meet.js",
		},
		minChecks: 16,
	},
	{
		// npm @lyno/lib-jitsi-meet 2.6726.2: a build of lib-jitsi-meet of
		// December 2021 (the newest build the npm registry has; Jitsi
		// publishes current ones elsewhere) and the jQuery 3.6 it expects.
		generation: "2021",
		scripts: map[string]string{
			"jquery.js":             "@lyno/lib-jitsi-meet/node_modules/jquery/dist/jquery.js",
			"lib-jitsi-meet.min.js": "@lyno/lib-jitsi-meet/lib-jitsi-meet.min.js",
		},
		minChecks: 15,
	},
}

// TestLibJitsiMeet loads lib-jitsi-meet builds (stock: the key goes in the
// room-prefix form) in headless Chromium against Prosody over BOSH and the
// real focus: joined, the focus hidden, refused (403 and 401 with the seed's
// text), kicked on revocation, refused on the way back.
func TestLibJitsiMeet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser; skipped with -short")
	}
	needNode(t)
	browser, err := findChromium()
	if err != nil {
		t.Skipf(skipBrowser, err.Error())
	}
	for _, b := range builds {
		t.Run(b.generation, func(t *testing.T) {
			for _, p := range b.scripts {
				if _, err := os.Stat(filepath.Join(jsDir, "node_modules", p)); err != nil {
					t.Skipf(skipBrowser, "focus/interop/js/node_modules lacks "+p)
				}
			}
			runLibJitsiMeet(t, browser, b.generation, b.scripts, b.minChecks)
		})
	}
}

func runLibJitsiMeet(t *testing.T, browser, generation string, scripts map[string]string, minChecks int) {
	e := start(t)
	redact := redactor(e.keys)

	var tag [4]byte
	if _, err := rand.Read(tag[:]); err != nil {
		t.Fatal(err)
	}
	bosh, err := url.Parse("http://" + e.srv.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan result, 1)
	browserStart := time.Now() // about: the browser starts right after the server
	revoked := make(chan error, 1)
	stopped := make(chan error, 1)
	var askedStop atomic.Bool
	mux := http.NewServeMux()
	proxy := httputil.NewSingleHostReverseProxy(bosh)
	// BOSH requests still open when the test ends are cut: not worth a line.
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	mux.Handle("/http-bind", proxy)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(jsDir, "ljm", generation+".html"))
	})
	mux.HandleFunc("GET /ljm-test.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(jsDir, "ljm", "ljm-test.js"))
	})
	for name, path := range scripts {
		mux.HandleFunc("GET /vendor/"+name, func(w http.ResponseWriter, r *http.Request) {
			http.ServeFile(w, r, filepath.Join(jsDir, "node_modules", path))
		})
	}
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"domain": e.srv.Domain, "muc": e.srv.MUC, "focus": e.srv.Component,
			"separator": focus.DefaultRoomKeySeparator, "keys": e.keys, "tag": hex.EncodeToString(tag[:]),
			"generation": generation,
			// By hand: also watch three people in one call (notes only).
			"three": os.Getenv("KEYFOCUS_INTEROP_THREE") == "1",
		})
	})
	mux.HandleFunc("POST /event", func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ Event string }
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		t.Logf("page: %s (%v after the browser started)", ev.Event, time.Since(browserStart).Round(time.Millisecond))
		if ev.Event == "joined-revoke" {
			// An operator revokes the key while its holder is in the room.
			_, err := e.store.Revoke(e.entries["revoke"].ID)
			revoked <- err
		}
		if ev.Event == "joined-shutdown" && !askedStop.Swap(true) {
			// The operator stops keyfocus (SIGTERM: it leaves the rooms
			// without ending them) while people are in a meeting. The test
			// waits for this before it ends.
			go func() { stopped <- e.stopFocus() }()
		}
	})
	mux.HandleFunc("POST /result", func(w http.ResponseWriter, r *http.Request) {
		var res result
		if err := json.NewDecoder(r.Body).Decode(&res); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res.Client = "lib-jitsi-meet " + generation
		select {
		case results <- res:
		default:
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	out, err := os.Create(filepath.Join(t.TempDir(), "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--disable-dev-shm-usage", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
		"--enable-logging=stderr", "--v=0",
		"--user-data-dir="+t.TempDir(), "http://"+ln.Addr().String()+"/")
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that the renderers end with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopBrowser := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	defer stopBrowser()
	browserLog := func() string {
		b, _ := os.ReadFile(out.Name())
		return redact(tail(string(b), 60))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var res result
	select {
	case res = <-results:
		t.Logf("the page reported %v after the browser started", time.Since(browserStart).Round(time.Millisecond))
	case err := <-exited:
		t.Fatalf("chromium exited before the page reported (%v); its log:\n%s", err, browserLog())
	case <-ctx.Done():
		t.Fatalf("the page reported nothing within 3 minutes; chromium log:\n%s", browserLog())
	}
	select {
	case err := <-revoked:
		if err != nil {
			t.Errorf("revoke the key: %v", err)
		}
	default:
		t.Error("the page never asked for the revocation")
	}
	if !askedStop.Load() {
		t.Error("the page never asked for the focus to stop")
	} else if err := <-stopped; err != nil { // stopFocus is bounded
		t.Errorf("stop the focus: %v", err)
	}
	for i := range res.Notes {
		res.Notes[i] = redact(res.Notes[i])
	}
	for i := range res.Checks {
		res.Checks[i].Detail = redact(res.Checks[i].Detail)
		t.Logf("%s %s", map[bool]string{true: "ok  ", false: "FAIL"}[res.Checks[i].OK], res.Checks[i].Name)
	}
	report(t, res, minChecks)
	if t.Failed() {
		t.Logf("chromium log:\n%s", browserLog())
	}
}
