// Package focus is keyfocus's XMPP component: the "focus" Jitsi clients ask
// for a conference. It admits only valid client keys, owns every room it
// admits people to (members-only, membership granted per admitted requester),
// removes people the moment their key stops being valid, and publishes what
// happens on a Bus for the console, the control socket, metrics and audit.
//
// The wire contract is PROTOCOL.md; the XMPP session is mellium's component
// session, with our own IQ tracking (see conn.go) so no handler ever waits.
package focus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyfocus/keyfocus/keys"
)

// Defaults of Config.
const (
	DefaultRoomKeySeparator        = "="
	DefaultFailuresPerJID          = 5
	DefaultFailuresWindow          = time.Minute
	DefaultGlobalFailuresPerSecond = 200
	DefaultEmptyRoomGrace          = 30 * time.Second
	DefaultDrainTimeout            = 5 * time.Second
	DefaultBackoffMin              = 100 * time.Millisecond
	DefaultBackoffMax              = 15 * time.Second
	maxRejected                    = 200
)

// Nick is the focus's nickname in every room: clients hide that occupant.
const Nick = "focus"

// Config configures a Focus. Addr, Component, MUC, Secret and Store are
// required.
type Config struct {
	Addr      string // Prosody's component port, host:port
	Component string // our JID, e.g. focus.meet.example
	MUC       string // the MUC host, e.g. conference.meet.example
	Secret    string // component secret (from env or a file, never argv)
	Store     *keys.Store

	RoomKeySeparator string // between KEY and NAME in the room-prefix form; default "="
	StatePath        string // where admissions survive a restart; "" = none
	Logger           *slog.Logger

	FailuresPerJID          int           // failed requests per requester bare JID in FailuresWindow before 429
	FailuresWindow          time.Duration // window of FailuresPerJID
	GlobalFailuresPerSecond int           // failures per second, all requesters, that count as a flood

	EmptyRoomGrace time.Duration // a room whose members all left is ended after this
	DrainTimeout   time.Duration // how long shutdown waits for rooms being created
	BackoffMin     time.Duration // first redial delay
	BackoffMax     time.Duration // redial delay cap

	Now func() time.Time // test hook; default time.Now
}

func (c *Config) setDefaults() error {
	var missing []string
	if c.Addr == "" {
		missing = append(missing, "Addr (Prosody's component port)")
	}
	if c.Component == "" {
		missing = append(missing, "Component (the focus JID)")
	}
	if c.MUC == "" {
		missing = append(missing, "MUC (the conference host)")
	}
	if c.Secret == "" {
		missing = append(missing, "Secret (set KEYFOCUS_SECRET or --secret-file)")
	}
	if c.Store == nil {
		missing = append(missing, "Store (the key file)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("focus: missing configuration: %s", strings.Join(missing, ", "))
	}
	c.Component = strings.ToLower(c.Component)
	c.MUC = strings.ToLower(c.MUC)
	if c.RoomKeySeparator == "" {
		c.RoomKeySeparator = DefaultRoomKeySeparator
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FailuresPerJID <= 0 {
		c.FailuresPerJID = DefaultFailuresPerJID
	}
	if c.FailuresWindow <= 0 {
		c.FailuresWindow = DefaultFailuresWindow
	}
	if c.GlobalFailuresPerSecond <= 0 {
		c.GlobalFailuresPerSecond = DefaultGlobalFailuresPerSecond
	}
	if c.EmptyRoomGrace <= 0 {
		c.EmptyRoomGrace = DefaultEmptyRoomGrace
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = DefaultBackoffMax
		if c.BackoffMax < c.BackoffMin {
			c.BackoffMax = c.BackoffMin
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Focus is the running component. Create it with New, run it with Run.
type Focus struct {
	cfg Config
	log *slog.Logger
	bus Bus

	ready     chan struct{}
	readyOnce sync.Once
	connected atomic.Bool
	secret    atomic.Pointer[string] // set by SetSecret; read at each dial

	// mu guards everything below, and every Publish happens under it, so
	// Watch can take a State and a subscription atomically.
	mu        sync.Mutex
	conn      *conn
	connState ConnState
	rooms     map[string]*room
	rejected  []Rejection // newest first
	store     StoreState
	snap      *keys.Snapshot
	draining  bool
	tarpitted atomic.Int64 // refusals waiting out the flood tarpit
	leaving   bool         // rooms are being left: no admissions at all
	rederive  bool         // the state file was lost: find the rooms on the next connect
	// endedRemovals holds, by room JID, the bare JIDs whose removal Prosody
	// had not confirmed when their room ended: sent again on every connect
	// until confirmed (see removals.go).
	endedRemovals map[string]map[string]bool
	// endedDestroys holds the destroys of ended rooms that Prosody has not
	// answered yet, with their reasons: sent again on every connect.
	endedDestroys map[string]string
	limiter       *limiter
	expiry        *time.Timer // next expiry check
	expiryAt      time.Time
	creating      sync.WaitGroup

	dirty chan struct{} // state file needs writing
	saved chan struct{} // closed by the saver when it stops
}

// New checks cfg and returns a Focus that is not yet connected.
func New(cfg Config) (*Focus, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	f := &Focus{
		cfg:     cfg,
		log:     cfg.Logger.With("component", cfg.Component),
		ready:   make(chan struct{}),
		rooms:   make(map[string]*room),
		limiter: newLimiter(cfg.FailuresPerJID, cfg.FailuresWindow, cfg.GlobalFailuresPerSecond),
		dirty:   make(chan struct{}, 1),
		saved:   make(chan struct{}),
	}
	f.snap = cfg.Store.Snapshot()
	f.store = StoreState{Path: cfg.Store.Path(), Keys: f.snap.Len(), LastReload: f.snap.LoadedAt}
	f.connState = ConnState{Since: cfg.Now()}
	return f, nil
}

// Bus is where the focus publishes its events.
func (f *Focus) Bus() *Bus { return &f.bus }

// Ready is closed once the focus is connected for the first time with the key
// store loaded (the moment to tell systemd).
func (f *Focus) Ready() <-chan struct{} { return f.ready }

// Connected reports whether the component is connected to Prosody now.
func (f *Focus) Connected() bool { return f.connected.Load() }

func (f *Focus) now() time.Time { return f.cfg.Now() }

// Watch implements Source.
func (f *Focus) Watch(buffer int) (State, *Subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stateLocked(), f.bus.Subscribe(buffer)
}

// State returns the current State.
func (f *Focus) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stateLocked()
}

func (f *Focus) stateLocked() State {
	st := State{
		Component: f.cfg.Component,
		Conn:      f.connState,
		Store:     f.store,
		Rejected:  append([]Rejection(nil), f.rejected...),
		Rooms:     make([]Room, 0, len(f.rooms)),
	}
	for _, r := range f.rooms {
		v := r.view()
		v.Name = f.logRoom(v.Name)
		st.Rooms = append(st.Rooms, v)
	}
	sort.Slice(st.Rooms, func(i, j int) bool { return st.Rooms[i].Name < st.Rooms[j].Name })
	return st
}

// publishLocked publishes ev; f.mu must be held.
//
// Room names go out as logRoom shows them: in the room-prefix form the local
// part starts with a client key, and the console, metrics and audit log show
// fingerprints only. RemoveMember and EndRoom accept that form.
func (f *Focus) publishLocked(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = f.now()
	}
	ev.Room = f.logRoom(ev.Room)
	if ev.Request != nil {
		req := *ev.Request
		req.Room = f.logRoom(req.Room)
		ev.Request = &req
	}
	if ev.Rejection != nil {
		rej := *ev.Rejection
		rej.Room = f.logRoom(rej.Room)
		ev.Rejection = &rej
	}
	f.bus.Publish(ev)
}

// Run connects to Prosody and serves until ctx is done, redialling with
// capped exponential backoff and jitter whenever the connection drops. When
// ctx ends it drains: new rooms are refused with graceful-shutdown, rooms being
// created get DrainTimeout to finish, then the focus leaves every room without
// ending it, saves its state and closes the stream. Run returns nil after a
// clean shutdown.
func (f *Focus) Run(ctx context.Context) error {
	f.loadState()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); f.watchStore(bg) }()
	go func() { defer wg.Done(); f.saver(bg) }()
	defer func() {
		stopBG()
		wg.Wait()
	}()
	f.mu.Lock()
	f.enforceLocked("startup")
	f.mu.Unlock()

	attempt := 0
	var outage time.Time
	for {
		c, err := dialConn(ctx, f.cfg.Addr, f.cfg.Component, []byte(f.currentSecret()))
		if err != nil {
			if ctx.Err() != nil {
				f.shutdownDisconnected()
				return nil
			}
			attempt++
			if attempt == 1 {
				outage = f.now()
				f.log.Warn("cannot connect to Prosody; retrying with backoff (check --xmpp-addr, that Prosody runs, and the component secret)",
					"addr", f.cfg.Addr, "err", err)
			}
			f.mu.Lock()
			f.connState = ConnState{Connected: false, Attempt: attempt, Since: f.connState.Since, LastError: err.Error()}
			f.publishLocked(Event{Kind: EvConnection, Conn: ptr(f.connState)})
			f.mu.Unlock()
			if !sleepCtx(ctx, f.backoff(attempt)) {
				f.shutdownDisconnected()
				return nil
			}
			continue
		}
		if attempt > 0 {
			f.log.Info("connected to Prosody again", "addr", f.cfg.Addr, "attempts", attempt, "outage", f.now().Sub(outage).Round(time.Millisecond).String())
		} else {
			f.log.Info("connected to Prosody", "addr", f.cfg.Addr)
		}
		attempt = 0
		done := make(chan error, 1)
		go func() { done <- c.serve(func(el *xmppEl) { f.handle(c, el) }) }()
		f.onConnected(c)
		f.readyOnce.Do(func() { close(f.ready) })

		select {
		case err := <-done:
			f.onDisconnected(c, err)
			outage = f.now()
			attempt = 1
			f.log.Warn("lost the connection to Prosody; redialling with backoff", "addr", f.cfg.Addr, "err", errString(err))
			if !sleepCtx(ctx, f.backoff(attempt)) {
				f.shutdownDisconnected()
				return nil
			}
		case <-ctx.Done():
			f.drain(c, done)
			return nil
		}
	}
}

func (f *Focus) backoff(attempt int) time.Duration {
	d := f.cfg.BackoffMin
	for i := 1; i < attempt && d < f.cfg.BackoffMax; i++ {
		d *= 2
	}
	if d > f.cfg.BackoffMax {
		d = f.cfg.BackoffMax
	}
	// Full jitter on the upper half: between d/2 and d.
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func errString(err error) string {
	if err == nil {
		return "stream closed by Prosody"
	}
	return err.Error()
}

func ptr[T any](v T) *T { return &v }

// rejoinInFlight is how many rooms are re-joined at a time after a
// (re)connect. Each room's join, configuration and re-grants queue in
// Prosody's single thread; bounding the rooms in flight bounds what a
// revocation, written on its own, can find ahead of it.
const rejoinInFlight = 8

// onConnected makes c the current connection, sends the removals that waited
// for it, and then re-joins every managed room, a few at a time.
func (f *Focus) onConnected(c *conn) {
	f.mu.Lock()
	f.conn = c
	f.connected.Store(true)
	f.connState = ConnState{Connected: true, Since: f.now()}
	f.publishLocked(Event{Kind: EvConnection, Conn: ptr(f.connState)})
	var rooms []*room
	for _, r := range f.rooms {
		r.ready = false
		r.stale = make(map[string]bool, len(r.members))
		for nick := range r.members {
			r.stale[nick] = true
		}
		rooms = append(rooms, r)
		f.creating.Add(1)
	}
	// Revocations from while the focus was away go first, in a write of
	// their own, ahead of every room's re-join: Prosody takes the change
	// of affiliation from the admin without the focus in the room.
	_, removals := f.enforceCollectLocked("revocation")
	removals = append(removals, f.pendingRemovalsLocked(c)...)
	rederive := f.rederive
	f.rederive = false
	f.mu.Unlock()
	if len(removals) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.send(ctx, removals...); err != nil {
			f.log.Warn("sending revocations failed; they are applied again after the reconnect", "err", err)
		}
		cancel()
	}
	go f.rejoin(c, rooms)
	if rederive {
		go f.rediscover(c)
	}
}

// rejoin sets up rooms again on c, rejoinInFlight at a time; rooms that
// people are waiting for go first. Each room holds one count of f.creating
// until it is set up or given up.
func (f *Focus) rejoin(c *conn, rooms []*room) {
	sem := make(chan struct{}, rejoinInFlight)
	for len(rooms) > 0 {
		sem <- struct{}{}
		f.mu.Lock()
		if f.conn != c {
			// This connection is gone; the next one re-joins them.
			f.mu.Unlock()
			for range rooms {
				f.creating.Done()
			}
			return
		}
		next := 0
		for i, r := range rooms {
			if len(r.waiters) > 0 {
				next = i
				break
			}
		}
		f.mu.Unlock()
		r := rooms[next]
		rooms = append(rooms[:next], rooms[next+1:]...)
		go func() {
			defer func() { <-sem }()
			f.setupRoom(c, r, false)
		}()
	}
}

func (f *Focus) onDisconnected(c *conn, err error) {
	c.close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == c {
		f.conn = nil
	}
	f.connected.Store(false)
	f.connState = ConnState{Connected: false, Attempt: 1, Since: f.now(), LastError: errString(err)}
	f.publishLocked(Event{Kind: EvConnection, Conn: ptr(f.connState)})
	for _, r := range f.rooms {
		r.ready = false
		r.joined = false
	}
}

// drain is the graceful shutdown on a live connection.
func (f *Focus) drain(c *conn, done <-chan error) {
	f.log.Info("shutting down: refusing new rooms, leaving rooms without ending them")
	f.mu.Lock()
	f.draining = true
	f.mu.Unlock()

	waited := make(chan struct{})
	go func() { f.creating.Wait(); close(waited) }()
	t := time.NewTimer(f.cfg.DrainTimeout)
	select {
	case <-waited:
	case <-t.C:
		f.log.Warn("shutdown: rooms still being set up after the drain timeout; leaving anyway", "timeout", f.cfg.DrainTimeout.String())
	}
	t.Stop()

	f.mu.Lock()
	f.leaving = true // from here on even existing rooms get graceful-shutdown
	var leaves []*xmppEl
	for _, r := range f.rooms {
		r.stopTimer()
		leaves = append(leaves, newEl("", "presence", "type", "unavailable",
			"from", f.cfg.Component+"/"+Nick, "to", r.jid+"/"+Nick))
	}
	n := len(f.rooms)
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.DrainTimeout)
	defer cancel()
	if err := c.send(ctx, leaves...); err != nil {
		f.log.Warn("shutdown: could not leave every room", "err", err)
	}
	f.saveNow()
	c.closeStream()
	select {
	case <-done:
	case <-ctx.Done():
	}
	c.close()
	f.mu.Lock()
	f.conn = nil
	f.connected.Store(false)
	f.connState = ConnState{Connected: false, Since: f.now(), LastError: "shut down"}
	f.publishLocked(Event{Kind: EvConnection, Conn: ptr(f.connState)})
	f.mu.Unlock()
	f.log.Info("shut down", "rooms_left", n)
}

func (f *Focus) shutdownDisconnected() {
	f.mu.Lock()
	f.draining = true
	f.mu.Unlock()
	f.saveNow()
	f.log.Info("shut down while disconnected from Prosody")
}

// watchStore applies every key store update: new snapshots are enforced at
// once; a failed reload keeps the last good snapshot and is published. The
// store's watch does not report edits made through the store itself (the
// console, SIGHUP's Reload), so the snapshot in force is also compared by
// pointer every storePoll: whoever changed the keys, enforcement follows.
func (f *Focus) watchStore(ctx context.Context) {
	updates := f.cfg.Store.Watch(ctx)
	tick := time.NewTicker(storePoll)
	defer tick.Stop()
	var rewatch <-chan time.Time
	rewatchDelay := time.Second
	otherWatcher := false
	for {
		select {
		case <-ctx.Done():
			// Let the store's watch end before returning, so a focus started
			// next on the same store can watch it.
			for updates != nil {
				if _, ok := <-updates; !ok {
					updates = nil
				}
			}
			return
		case <-rewatch:
			rewatch = nil
			updates = f.cfg.Store.Watch(ctx)
		case u, ok := <-updates:
			if !ok {
				// The watch ended on its own (e.g. another watcher held the
				// store): start it again shortly.
				updates = nil
				rewatch = time.After(rewatchDelay)
				if rewatchDelay < 30*time.Second {
					rewatchDelay *= 2
				}
				continue
			}
			if u.Err != nil && strings.Contains(u.Err.Error(), "already being watched") {
				// Someone else in this process watches the store (one watcher
				// per store): its reloads still reach us through the snapshot
				// check below. Not a failed reload; say it once.
				if !otherWatcher {
					otherWatcher = true
					f.log.Warn("the key store is watched elsewhere in this process; following its snapshots")
				}
				continue
			}
			rewatchDelay = time.Second
			f.mu.Lock()
			if u.Err != nil {
				f.store.LastError = u.Err.Error()
				f.store.Notice = u.Notice
				f.log.Error("key file reload failed; the last good keys stay in force", "err", u.Err)
				f.publishLocked(Event{Kind: EvStoreFailed, Store: ptr(f.store)})
			} else if u.Snapshot != nil {
				f.applySnapshotLocked(u.Snapshot, u.Notice)
			}
			f.mu.Unlock()
		case <-tick.C:
			snap := f.cfg.Store.Snapshot()
			f.mu.Lock()
			if snap != nil && snap != f.snap {
				f.applySnapshotLocked(snap, "")
			}
			f.mu.Unlock()
		}
	}
}

// storePoll is how often the store's snapshot pointer is compared.
const storePoll = 100 * time.Millisecond

func (f *Focus) applySnapshotLocked(snap *keys.Snapshot, notice string) {
	if snap == f.snap && notice == "" {
		return
	}
	f.snap = snap
	f.store = StoreState{Path: f.cfg.Store.Path(), Keys: snap.Len(), LastReload: snap.LoadedAt, Notice: notice}
	f.log.Info("key file reloaded", "keys", snap.Len(), "notice", notice)
	f.publishLocked(Event{Kind: EvStoreReloaded, Store: ptr(f.store)})
	f.enforceLocked("revocation")
}

// Alive reports whether the focus's state can be taken (its loop is not
// stuck): what the systemd watchdog asks.
func (f *Focus) Alive() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return true
}

// errNotConnected is returned by operator actions while Prosody is away.
var errNotConnected = errors.New("not connected to Prosody; try again once the focus has reconnected")
