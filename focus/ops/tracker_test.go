package ops

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/keys"
)

// busSource is a focus.Source whose State and events come from the test.
type busSource struct {
	bus     focus.Bus
	mu      sync.Mutex
	state   focus.State
	watches atomic.Int32
}

func (s *busSource) Watch(n int) (focus.State, *focus.Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.bus.Subscribe(n)
	s.watches.Add(1)
	return s.state, sub
}
func (s *busSource) RemoveMember(context.Context, string, string, string) error { return nil }
func (s *busSource) EndRoom(context.Context, string, string) error              { return nil }

type fixture struct {
	t    *testing.T
	src  *busSource
	tr   *Tracker
	url  string
	snap atomic.Pointer[keys.Snapshot]
}

func start(t *testing.T, st focus.State, buffer int) *fixture {
	t.Helper()
	f := &fixture{t: t, src: &busSource{state: st}}
	f.tr = NewTracker(Options{Version: "test", Buffer: buffer, Snapshot: f.snap.Load})
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "http://" + ln.Addr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); f.tr.Run(ctx, f.src) }()
	go func() {
		defer wg.Done()
		if err := Serve(ctx, ln, f.tr.Handler()); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	f.waitFor("the tracker to follow", func() bool { return f.src.watches.Load() > 0 })
	return f
}

func (f *fixture) waitFor(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (f *fixture) get(path string) (int, string) {
	f.t.Helper()
	resp, err := http.Get(f.url + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric scrapes /metrics and returns the value of one series, e.g.
// `keyfocus_rooms` or `keyfocus_members_left_total{reason="kicked"}`.
func (f *fixture) metric(series string) float64 {
	f.t.Helper()
	_, body := f.get("/metrics")
	v, ok := parseMetric(body, series)
	if !ok {
		f.t.Fatalf("no series %s in /metrics", series)
	}
	return v
}

func parseMetric(body, series string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// waitMetric waits until a series has the wanted value: the Tracker applies
// events asynchronously.
func (f *fixture) waitMetric(series string, want float64) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := f.get("/metrics")
		got, ok := parseMetric(body, series)
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s = %v (present %v), want %v", series, got, ok, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (f *fixture) waitStatus(path string, code int, bodyHas string) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, body := f.get(path)
		if got == code && strings.Contains(body, bodyHas) {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s = %d %q, want %d containing %q", path, got, body, code, bodyHas)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestHealthFollowsConnectionAndStore(t *testing.T) {
	f := start(t, focus.State{Component: "focus.meet.example", Conn: focus.ConnState{Connected: false, Attempt: 2, LastError: "connection refused"}}, 64)
	f.waitStatus("/about/health", 503, "not connected to Prosody (reconnecting, attempt 2): connection refused")
	f.waitStatus("/readyz", 503, "not connected")
	f.waitStatus("/livez", 200, "ok")

	f.src.bus.Publish(focus.Event{Kind: focus.EvConnection, Conn: &focus.ConnState{Connected: true}})
	f.waitStatus("/about/health", 503, "key store not loaded")

	f.src.bus.Publish(focus.Event{Kind: focus.EvStoreFailed, Store: &focus.StoreState{Path: "k", LastError: "k:3: bad expires"}})
	f.waitStatus("/about/health", 503, "key store not loaded: k:3: bad expires")

	f.src.bus.Publish(focus.Event{Kind: focus.EvStoreReloaded, Store: &focus.StoreState{Path: "k", Keys: 2, LastReload: time.Now()}})
	f.waitStatus("/about/health", 200, "ok")
	f.waitStatus("/readyz", 200, "ok")
	if !strings.Contains(f.tr.Status(), "focus.meet.example connected; 0 rooms, 0 members; 2 keys") {
		t.Fatalf("Status() = %q", f.tr.Status())
	}

	// A later parse error keeps the last good snapshot: still healthy.
	f.src.bus.Publish(focus.Event{Kind: focus.EvStoreFailed, Store: &focus.StoreState{Path: "k", Keys: 2, LastReload: time.Now(), LastError: "k:9: oops"}})
	f.waitMetric("keyfocus_store_parse_errors_total", 2)
	f.waitStatus("/about/health", 200, "ok")

	f.src.bus.Publish(focus.Event{Kind: focus.EvConnection, Conn: &focus.ConnState{Connected: false, Attempt: 1}})
	f.waitStatus("/about/health", 503, "reconnecting, attempt 1")
	f.src.bus.Publish(focus.Event{Kind: focus.EvConnection, Conn: &focus.ConnState{Connected: true}})
	f.waitStatus("/about/health", 200, "ok")
	f.waitMetric("keyfocus_component_reconnects_total", 1)
	f.waitMetric("keyfocus_component_disconnects_total", 1)
	f.waitMetric("keyfocus_component_connected", 1)

	f.tr.Stopping()
	f.waitStatus("/readyz", 503, "shutting down")
	f.waitStatus("/about/health", 200, "ok")
}

func TestEndpointsRefuseOtherMethodsAndPaths(t *testing.T) {
	f := start(t, focus.State{}, 64)
	resp, err := http.Post(f.url+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /metrics = %d", resp.StatusCode)
	}
	if code, _ := f.get("/debug/pprof/"); code != 404 {
		t.Fatalf("/debug/pprof/ = %d", code)
	}
}

func TestMetricsFromEvents(t *testing.T) {
	room := "standup@conference.meet.example"
	st := focus.State{
		Conn:  focus.ConnState{Connected: true},
		Store: focus.StoreState{Keys: 1, LastReload: time.Now()},
		Rooms: []focus.Room{{Name: "old@conference.meet.example", Members: []focus.Member{{Nick: "a"}, {Nick: "b"}}}},
	}
	f := start(t, st, 1024)
	f.waitMetric("keyfocus_rooms", 1)
	f.waitMetric("keyfocus_members", 2)

	alice := &focus.Member{Nick: "alice", JID: "alice@meet.example/x", Fingerprint: "deadbeef", Client: "Acme Corp"}
	bob := &focus.Member{Nick: "bob", JID: "bob@meet.example/y", Fingerprint: "deadbeef", Client: "Acme Corp"}
	events := []focus.Event{
		{Kind: focus.EvAdmitted, Request: &focus.Admission{Room: room, Requester: alice.JID, Fingerprint: "deadbeef", Client: "Acme Corp", Latency: 3 * time.Millisecond}},
		{Kind: focus.EvRoomOpened, Room: room},
		{Kind: focus.EvMemberJoined, Room: room, Member: alice},
		{Kind: focus.EvAdmitted, Request: &focus.Admission{Room: room, Requester: bob.JID, Latency: 700 * time.Millisecond}},
		{Kind: focus.EvMemberJoined, Room: room, Member: bob},
		{Kind: focus.EvRefused, Rejection: &focus.Rejection{Room: room, Requester: "eve@meet.example/z", Reason: focus.ReasonUnknownKey, Code: 403}},
		{Kind: focus.EvRefused, Rejection: &focus.Rejection{Room: room, Requester: "eve@meet.example/z", Reason: focus.ReasonUnknownKey, Code: 403}},
		{Kind: focus.EvRefused, Rejection: &focus.Rejection{Room: room, Requester: "eve@meet.example/z", Reason: "something new"}},
		// Revocation: removed, then the leave with status 321 follows.
		{Kind: focus.EvMemberRemoved, Room: room, Member: bob, Reason: "key revoked", Actor: "revocation"},
		{Kind: focus.EvMemberLeft, Room: room, Member: bob, Reason: "removed"},
		{Kind: focus.EvMemberLeft, Room: "old@conference.meet.example", Member: &focus.Member{Nick: "a"}, Reason: "lost"},
		// The room ends by an operator: its last member leaves with the cause.
		{Kind: focus.EvMemberLeft, Room: "old@conference.meet.example", Member: &focus.Member{Nick: "b"}, Reason: "removed", Actor: "operator"},
		// A membership withdrawn from someone not in the room: not a member removal.
		{Kind: focus.EvMembershipRevoked, Room: room, Member: &focus.Member{JID: "carol@meet.example", Fingerprint: "deadbeef"}, Reason: "key revoked", Actor: "revocation"},
		{Kind: focus.EvRoomEnded, Room: "old@conference.meet.example", Reason: "ended by operator", Actor: "operator"},
	}
	for _, ev := range events {
		f.src.bus.Publish(ev)
	}
	want := map[string]float64{
		`keyfocus_rooms`:              1,
		`keyfocus_members`:            1,
		`keyfocus_rooms_opened_total`: 1,
		`keyfocus_rooms_ended_total`:  1,
		`keyfocus_admissions_total`:   2,
		`keyfocus_conference_requests_total{reason="ok",result="admitted"}`:         2,
		`keyfocus_conference_requests_total{reason="unknown_key",result="refused"}`: 2,
		`keyfocus_conference_requests_total{reason="other",result="refused"}`:       1,
		`keyfocus_conference_requests_total{reason="no_key",result="refused"}`:      0,
		`keyfocus_members_joined_total`:                                             2,
		`keyfocus_members_left_total{reason="removed"}`:                             2,
		`keyfocus_members_removed_total{actor="operator"}`:                          1,
		`keyfocus_members_left_total{reason="lost"}`:                                1,
		`keyfocus_members_removed_total{actor="revocation"}`:                        1,
		`keyfocus_memberships_revoked_total{actor="revocation"}`:                    1,
		`keyfocus_memberships_revoked_total{actor="operator"}`:                      0,
		`keyfocus_conference_request_duration_seconds_count`:                        2,
		`keyfocus_conference_request_duration_seconds_bucket{le="0.005"}`:           1,
		`keyfocus_conference_request_duration_seconds_bucket{le="1"}`:               2,
		`keyfocus_build_info{version="test"}`:                                       1,
	}
	// The last event's effect shows once everything before it is applied.
	f.waitMetric("keyfocus_rooms_ended_total", 1)
	_, body := f.get("/metrics")
	for series, v := range want {
		got, ok := parseMetric(body, series)
		if !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	// No unbounded labels: nothing names a room, a person, a client or a key.
	for _, leak := range []string{"standup", "conference.meet.example", "alice@", "bob@", "eve@", "Acme", "deadbeef", "something new"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics mentions %q", leak)
		}
	}
}

func TestKeyChangesCounted(t *testing.T) {
	f := start(t, focus.State{}, 64)
	e := func(k, name string, max int) *keys.Entry {
		return &keys.Entry{ID: keys.HashKey(k), Fingerprint: keys.Fingerprint(k), Name: name, MaxParticipants: max}
	}
	steps := []*keys.Snapshot{
		keys.NewSnapshot("k", []*keys.Entry{e("a", "A", 0), e("b", "B", 0)}, time.Now()),
		keys.NewSnapshot("k", []*keys.Entry{e("a", "A", 5), e("b", "B", 0), e("c", "C", 0)}, time.Now()),
		keys.NewSnapshot("k", []*keys.Entry{e("c", "C", 0)}, time.Now()),
	}
	// Each reload counts the net change since the snapshot of the reload
	// before: wait for one to land before making the next.
	for i, s := range steps {
		f.snap.Store(s)
		f.src.bus.Publish(focus.Event{Kind: focus.EvStoreReloaded, Store: &focus.StoreState{Keys: s.Len(), LastReload: s.LoadedAt}})
		f.waitMetric("keyfocus_store_reloads_total", float64(i+1))
	}
	f.waitMetric(`keyfocus_key_changes_total{change="added"}`, 3)
	f.waitMetric(`keyfocus_key_changes_total{change="edited"}`, 1)
	f.waitMetric(`keyfocus_key_changes_total{change="revoked"}`, 2)
	f.waitMetric("keyfocus_store_keys", 1)
	if v := f.metric("keyfocus_store_last_reload_timestamp_seconds"); v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Fatalf("last reload timestamp = %v", v)
	}
}

// A Tracker that falls behind loses events but takes a fresh State, so the
// gauges end right.
func TestResyncAfterDroppedEvents(t *testing.T) {
	f := start(t, focus.State{Conn: focus.ConnState{Connected: true}}, 1)
	rooms := make([]focus.Room, 0, 50)
	f.src.mu.Lock()
	for i := range 50 {
		name := "r" + strconv.Itoa(i)
		f.src.bus.Publish(focus.Event{Kind: focus.EvRoomOpened, Room: name})
		rooms = append(rooms, focus.Room{Name: name, Members: []focus.Member{{Nick: "x"}}})
	}
	f.src.state.Rooms = rooms
	f.src.mu.Unlock()
	f.waitMetric("keyfocus_rooms", 50)
	f.waitMetric("keyfocus_members", 50)
	if f.metric("keyfocus_metrics_events_dropped_total") == 0 {
		t.Fatal("no dropped events counted")
	}
}

func BenchmarkApply(b *testing.B) {
	tr := NewTracker(Options{})
	m := &focus.Member{Nick: "n"}
	evs := []focus.Event{
		{Kind: focus.EvAdmitted, Request: &focus.Admission{Latency: time.Millisecond}},
		{Kind: focus.EvMemberJoined, Room: "r", Member: m},
		{Kind: focus.EvRefused, Rejection: &focus.Rejection{Reason: focus.ReasonUnknownKey}},
		{Kind: focus.EvMemberLeft, Room: "r", Member: m, Reason: "left"},
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tr.apply(evs[i%len(evs)])
	}
}

// The metrics follow Prometheus's naming conventions (promlint: units,
// _total on counters, help text).
func TestMetricsLint(t *testing.T) {
	tr := NewTracker(Options{Version: "test"})
	mfs, err := tr.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "keyfocus_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	n := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "keyfocus_") {
			n++
		}
	}
	if n < 19 {
		t.Fatalf("only %d keyfocus metrics registered", n)
	}
}

// A /metrics scrape with every series present.
func BenchmarkScrape(b *testing.B) {
	tr := NewTracker(Options{Version: "bench"})
	h := tr.Handler()
	req, _ := http.NewRequest("GET", "/metrics", nil)
	for b.Loop() {
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		if w.code != 0 && w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(c int)           { w.code = c }
