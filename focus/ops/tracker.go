// Package ops is keyfocus's operations side: it follows the focus's events
// and turns them into Prometheus metrics, the health answers of the HTTP
// endpoints (/about/health, /livez, /readyz) and the status systemd shows.
//
// The Tracker reads the focus through focus.Source.Watch with its own
// buffered subscription, so it never slows the focus: if it falls behind it
// loses events, counts them, and takes a fresh State for the gauges.
package ops

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/focus/audit"
	"github.com/keyfocus/keyfocus/keys"
)

// Options configure a Tracker.
type Options struct {
	// Snapshot returns the key store's current snapshot (optional). With it
	// the Tracker counts keys added, edited and revoked on each reload.
	Snapshot func() *keys.Snapshot
	// Version goes into keyfocus_build_info.
	Version string
	// Buffer is the event subscription's buffer (default 8192).
	Buffer int
	Logger *slog.Logger
}

// Tracker follows a focus and keeps its metrics and health.
type Tracker struct {
	opts    Options
	log     *slog.Logger
	reg     *prometheus.Registry
	m       *metrics
	running atomic.Bool
	stopped atomic.Bool // shutting down: not ready any more

	mu        sync.Mutex
	component string
	started   bool // a State has been taken
	conn      focus.ConnState
	everUp    bool
	store     focus.StoreState
	rooms     map[string]map[string]struct{} // room -> member nicks
	members   int
	changed   chan struct{}

	base *keys.Snapshot // only the Run goroutine touches it
}

// NewTracker makes a Tracker. Nothing happens until Run.
func NewTracker(opts Options) *Tracker {
	if opts.Buffer <= 0 {
		opts.Buffer = 8192
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	t := &Tracker{
		opts:    opts,
		log:     log,
		reg:     prometheus.NewRegistry(),
		rooms:   map[string]map[string]struct{}{},
		changed: make(chan struct{}, 1),
	}
	t.m = newMetrics(t.reg, opts.Version)
	return t
}

// Registry is the Tracker's own Prometheus registry (not the global one).
func (t *Tracker) Registry() *prometheus.Registry { return t.reg }

// Changed delivers a value (coalesced) whenever health or status may have
// changed: connection, store, rooms, members.
func (t *Tracker) Changed() <-chan struct{} { return t.changed }

func (t *Tracker) notify() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// Run follows src until ctx ends.
func (t *Tracker) Run(ctx context.Context, src focus.Source) error {
	t.running.Store(true)
	defer t.running.Store(false)
	if t.opts.Snapshot != nil {
		t.base = t.opts.Snapshot()
	}
	for {
		st, sub := src.Watch(t.opts.Buffer)
		t.reset(st)
		resync := t.follow(ctx, sub)
		sub.Close()
		if !resync {
			return nil
		}
	}
}

// follow applies events until ctx ends (false) or events were lost (true).
func (t *Tracker) follow(ctx context.Context, sub *focus.Subscription) bool {
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case ev, ok := <-sub.C:
			if !ok {
				return false
			}
			t.apply(ev)
		case <-check.C:
		}
		if d := sub.Dropped(); d > 0 {
			t.m.dropped.Add(float64(d))
			t.log.Warn("metrics fell behind the focus; taking a fresh state", "lost_events", d)
			return true
		}
	}
}

// reset takes a fresh State: the gauges come from it.
func (t *Tracker) reset(st focus.State) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started = true
	t.component = st.Component
	t.setConnLocked(st.Conn)
	t.store = st.Store
	t.rooms = make(map[string]map[string]struct{}, len(st.Rooms))
	t.members = 0
	for _, r := range st.Rooms {
		ms := make(map[string]struct{}, len(r.Members))
		for _, m := range r.Members {
			ms[m.Nick] = struct{}{}
		}
		t.rooms[r.Name] = ms
		t.members += len(ms)
	}
	t.gaugesLocked()
	t.notify()
}

func (t *Tracker) gaugesLocked() {
	t.m.rooms.Set(float64(len(t.rooms)))
	t.m.members.Set(float64(t.members))
	t.m.storeKeys.Set(float64(t.store.Keys))
	if !t.store.LastReload.IsZero() {
		t.m.storeLastReload.Set(float64(t.store.LastReload.UnixNano()) / 1e9)
	}
}

func (t *Tracker) setConnLocked(c focus.ConnState) {
	was := t.conn.Connected
	t.conn = c
	if c.Connected {
		t.m.connected.Set(1)
		if !was && t.everUp {
			t.m.reconnects.Inc()
		}
		t.everUp = true
	} else {
		t.m.connected.Set(0)
		if was {
			t.m.disconnects.Inc()
		}
	}
}

func (t *Tracker) apply(ev focus.Event) {
	if ev.Kind == focus.EvStoreReloaded && t.opts.Snapshot != nil {
		// The diff is O(keys): done outside the lock, on the Run goroutine,
		// which alone touches base.
		cur := t.opts.Snapshot()
		for _, c := range audit.Diff(t.base, cur) {
			t.m.keyChanges.WithLabelValues(changeLabel(c.Kind)).Inc()
		}
		t.base = cur
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch ev.Kind {
	case focus.EvConnection:
		if ev.Conn != nil {
			t.setConnLocked(*ev.Conn)
			t.notify()
		}
	case focus.EvAdmitted:
		t.m.requests.WithLabelValues("admitted", "ok").Inc()
		t.m.admissions.Inc()
		if ev.Request != nil && ev.Request.Latency > 0 {
			t.m.latency.Observe(ev.Request.Latency.Seconds())
		}
	case focus.EvRefused:
		reason := "other"
		if ev.Rejection != nil {
			reason = boundedReason(ev.Rejection.Reason)
		}
		t.m.requests.WithLabelValues("refused", reason).Inc()
	case focus.EvRoomOpened:
		if _, ok := t.rooms[ev.Room]; !ok {
			t.rooms[ev.Room] = map[string]struct{}{}
		}
		t.m.roomsOpened.Inc()
		t.gaugesLocked()
		t.notify()
	case focus.EvRoomEnded:
		if ms, ok := t.rooms[ev.Room]; ok {
			t.members -= len(ms)
			delete(t.rooms, ev.Room)
			t.m.roomsEnded.Inc()
		}
		t.gaugesLocked()
		t.notify()
	case focus.EvMemberJoined:
		if ev.Member == nil {
			break
		}
		ms, ok := t.rooms[ev.Room]
		if !ok {
			ms = map[string]struct{}{}
			t.rooms[ev.Room] = ms
		}
		if _, in := ms[ev.Member.Nick]; !in {
			ms[ev.Member.Nick] = struct{}{}
			t.members++
		}
		t.m.joined.Inc()
		t.gaugesLocked()
		t.notify()
	case focus.EvMemberLeft, focus.EvMemberRemoved:
		if ev.Kind == focus.EvMemberRemoved {
			t.m.removed.WithLabelValues(boundedActor(ev.Actor)).Inc()
		} else {
			t.m.left.WithLabelValues(boundedLeft(ev.Reason)).Inc()
			// Members of a room ended by a revocation, an expiry or an
			// operator leave with the cause as Actor: removals too.
			if a := boundedActor(ev.Actor); a != "other" {
				t.m.removed.WithLabelValues(a).Inc()
			}
		}
		if ev.Member == nil {
			break
		}
		// A removal is usually followed by the member's leave: count each
		// person out of the gauge once, whichever comes first.
		if ms, ok := t.rooms[ev.Room]; ok {
			if _, in := ms[ev.Member.Nick]; in {
				delete(ms, ev.Member.Nick)
				t.members--
			}
		}
		t.gaugesLocked()
		t.notify()
	case focus.EvMembershipRevoked:
		t.m.revokedAbs.WithLabelValues(boundedActor(ev.Actor)).Inc()
	case focus.EvStoreReloaded:
		t.m.storeReloads.Inc()
		if ev.Store != nil {
			t.store = *ev.Store
		}
		t.gaugesLocked()
		t.notify()
	case focus.EvStoreFailed:
		t.m.storeErrors.Inc()
		if ev.Store != nil {
			t.store = *ev.Store
		}
		t.notify()
	}
}

// Health reports whether keyfocus can do its job: the component is connected
// to Prosody and the key store is loaded. When it cannot, reason says why in
// a few words.
func (t *Tracker) Health() (ok bool, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.healthLocked()
}

func (t *Tracker) healthLocked() (bool, string) {
	switch {
	case !t.started:
		return false, "starting: not following the focus yet"
	case !t.conn.Connected:
		r := "component not connected to Prosody"
		if t.conn.Attempt > 0 {
			r += fmt.Sprintf(" (reconnecting, attempt %d)", t.conn.Attempt)
		}
		if t.conn.LastError != "" {
			r += ": " + t.conn.LastError
		}
		return false, r
	case !t.storeLoadedLocked():
		r := "key store not loaded"
		if t.store.LastError != "" {
			r += ": " + t.store.LastError
		}
		return false, r
	}
	return true, "ok"
}

func (t *Tracker) storeLoadedLocked() bool {
	if !t.store.LastReload.IsZero() {
		return true
	}
	return t.opts.Snapshot != nil && t.opts.Snapshot() != nil
}

// Ready is Health, except that a Tracker told the service is stopping is
// never ready (load balancers and systemd stop sending work first).
func (t *Tracker) Ready() (bool, string) {
	if t.stopped.Load() {
		return false, "shutting down"
	}
	return t.Health()
}

// Live reports whether the Tracker is following the focus at all.
func (t *Tracker) Live() (bool, string) {
	if !t.running.Load() && !t.stopped.Load() {
		return false, "not following the focus"
	}
	return true, "ok"
}

// Stopping marks the service as shutting down: /readyz turns 503.
func (t *Tracker) Stopping() {
	t.stopped.Store(true)
	t.notify()
}

// Status is one line for systemctl status and logs: connection, rooms,
// members, keys, and the last store error if any.
func (t *Tracker) Status() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var s string
	if t.conn.Connected {
		s = "connected"
	} else if t.conn.Attempt > 0 {
		s = fmt.Sprintf("reconnecting (attempt %d)", t.conn.Attempt)
	} else {
		s = "not connected"
	}
	if t.component != "" {
		s = t.component + " " + s
	}
	s += fmt.Sprintf("; %d rooms, %d members; %d keys", len(t.rooms), t.members, t.store.Keys)
	if t.store.LastError != "" {
		s += "; key file error: " + t.store.LastError
	}
	return s
}

func boundedReason(r string) string {
	switch r {
	case focus.ReasonNoKey, focus.ReasonUnknownKey, focus.ReasonExpired, focus.ReasonRoomNotAllow,
		focus.ReasonRoomFull, focus.ReasonRateLimited, focus.ReasonShutdown, focus.ReasonBadRequest:
		return r
	}
	return "other"
}

func boundedActor(a string) string {
	switch a {
	case "revocation", "operator", "expiry":
		return a
	}
	return "other"
}

func boundedLeft(r string) string {
	switch r {
	case "left", "kicked", "removed", "lost":
		return r
	case "":
		return "left"
	}
	return "other"
}

func changeLabel(kind string) string {
	switch kind {
	case audit.KeyAdded:
		return "added"
	case audit.KeyEdited:
		return "edited"
	default:
		return "revoked"
	}
}
