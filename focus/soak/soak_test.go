package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/focus/prosody"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
	"github.com/keyfocus/keyfocus/focus/simulate"
	"github.com/keyfocus/keyfocus/keys"
)

// params size one soak run.
type params struct {
	Load           time.Duration // how long participants keep arriving; the faults are spread over it
	Rounds         int           // the fault schedule runs this many times over Load, each round with fresh cohorts
	Cohorts        int           // keys present from the start, one load runner each (at least 6)
	RoomsPerCohort int
	Rate           float64       // participants started per second, per cohort
	Concurrency    int           // participants alive at once, per cohort
	Stay           time.Duration // how long an admitted participant stays
	MaxLinger      time.Duration // the promise: a member without a valid key is gone within this
	GoroutineSlack int           // goroutines allowed above the baseline once the load is over
	Sample         time.Duration // how often the checker looks at every room
}

// soakParams returns the size of this run: the short form by default (a
// shorter one with -short), the long form under the soak build tag
// (soak_long_test.go replaces this function).
var soakParams = func(t *testing.T) params {
	p := params{
		Load: 60 * time.Second, Rounds: 1, Cohorts: 6, RoomsPerCohort: 4, Rate: 1.5, Concurrency: 10,
		Stay: 4 * time.Second, MaxLinger: time.Second, GoroutineSlack: 30, Sample: 50 * time.Millisecond,
	}
	if testing.Short() {
		p.Load, p.Rate = 30*time.Second, 1
	}
	return p
}

const (
	observerNick = "soak-observer"
	waitLong     = 20 * time.Second
)

// cohort is one key and the participants (one load runner) that use it, in
// rooms of their own: every non-focus, non-observer occupant of a cohort's
// room entered with the cohort's key, so the key file alone says whether
// that occupant may be there.
type cohort struct {
	idx   int
	key   string // never printed: only fingerprints
	id    string // entry ID (SHA-256 of the key)
	fp    string
	form  simulate.KeyForm
	rooms []string // bare room JIDs as the participants join them
	keep  bool     // valid from start to end: nobody of it may be removed

	// guarded by model.mu
	invalidAt time.Time // zero: valid; else the key is not valid for these rooms from then on
	why       string
	summary   *simulate.Summary
}

// model is the truth the checker holds the rooms to: which cohort keys are
// valid, from the writes the soak itself made, and whether a focus runs.
type model struct {
	mu      sync.Mutex
	cohorts []*cohort
	byRoom  map[string]*cohort
	// byEvent finds a cohort from a room as the focus's events name it: in
	// the room-prefix form the key is replaced by its fingerprint there.
	byEvent map[string]*cohort
	focusUp time.Time // when the running focus became ready; zero while none runs
}

func (m *model) invalidate(c *cohort, at time.Time, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.invalidAt.IsZero() || at.Before(c.invalidAt) {
		c.invalidAt, c.why = at, why
	}
}

func (m *model) addCohort(c *cohort) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cohorts = append(m.cohorts, c)
	for _, r := range c.rooms {
		m.byRoom[r] = c
		m.byEvent[r] = c
		m.byEvent[strings.ReplaceAll(r, c.key, "[key "+c.fp+"]")] = c
	}
}

func (m *model) setFocusUp(t time.Time) {
	m.mu.Lock()
	m.focusUp = t
	m.mu.Unlock()
}

// env is the whole soak: Prosody, the key file, the focus (restartable), the
// operator's own key store (as `keyfocus keys` would open it), the observer.
type env struct {
	t        *testing.T
	p        params
	srv      *prosody.Server
	dir      string
	keysPath string
	state    string
	logPath  string
	ops      *keys.Store // the operator's store: Add, Edit, Revoke
	model    *model
	obs      *observer
	obsKey   string

	fmu       sync.Mutex
	fc        *focusProc
	restarts  int
	removed   map[string]map[int]int // actor -> cohort -> members removed by the focus
	storeFail []string               // Store.LastError of every store_failed event
	dropped   uint64
}

type focusProc struct {
	f      *focus.Focus
	cancel context.CancelFunc
	done   chan error
	sub    *focus.Subscription
	drain  chan struct{}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startFocus runs a new focus on the same key file and state file, as a
// restarted process would, and waits until it is connected.
func (e *env) startFocus() {
	e.t.Helper()
	st, err := keys.OpenWith(e.keysPath, keys.Options{Logger: quiet()})
	if err != nil {
		e.t.Fatalf("focus key store: %v", err)
	}
	lf, err := os.OpenFile(e.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := focus.New(focus.Config{
		Addr: e.srv.ComponentAddr, Component: e.srv.Component, MUC: e.srv.MUC, Secret: e.srv.Secret,
		Store: st, StatePath: e.state,
		Logger:         slog.New(slog.NewJSONHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		BackoffMin:     50 * time.Millisecond,
		BackoffMax:     500 * time.Millisecond,
		EmptyRoomGrace: 10 * time.Second,
		DrainTimeout:   2 * time.Second,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, sub := f.Watch(1 << 16)
	fp := &focusProc{f: f, cancel: cancel, done: make(chan error, 1), sub: sub, drain: make(chan struct{})}
	go func() {
		err := f.Run(ctx)
		lf.Close()
		fp.done <- err
	}()
	go e.collect(fp)
	select {
	case <-f.Ready():
	case err := <-fp.done:
		e.t.Fatalf("focus ended before it was ready: %v", err)
	case <-time.After(waitLong):
		e.t.Fatalf("focus not ready within %v", waitLong)
	}
	e.fmu.Lock()
	e.fc = fp
	e.fmu.Unlock()
	e.model.setFocusUp(time.Now())
}

// stopFocus shuts the focus down as SIGTERM would (drain, leave the rooms
// without ending them, save the state) and waits for it.
func (e *env) stopFocus() {
	e.t.Helper()
	e.fmu.Lock()
	fp := e.fc
	e.fc = nil
	e.fmu.Unlock()
	if fp == nil {
		return
	}
	e.model.setFocusUp(time.Time{})
	fp.cancel()
	select {
	case err := <-fp.done:
		if err != nil {
			e.t.Errorf("focus Run: %v", err)
		}
	case <-time.After(waitLong):
		e.t.Errorf("focus did not stop within %v", waitLong)
	}
	fp.sub.Close()
	<-fp.drain
}

// collect reads one focus's events: removals by actor and cohort, store
// failures.
func (e *env) collect(fp *focusProc) {
	defer close(fp.drain)
	for ev := range fp.sub.C {
		switch ev.Kind {
		case focus.EvMemberRemoved:
			e.model.mu.Lock()
			c := e.model.byEvent[ev.Room]
			e.model.mu.Unlock()
			idx := -1
			if c != nil {
				idx = c.idx
			}
			e.fmu.Lock()
			if e.removed[ev.Actor] == nil {
				e.removed[ev.Actor] = map[int]int{}
			}
			e.removed[ev.Actor][idx]++
			e.fmu.Unlock()
		case focus.EvStoreFailed:
			e.fmu.Lock()
			e.storeFail = append(e.storeFail, ev.Store.LastError)
			e.fmu.Unlock()
		}
	}
	e.fmu.Lock()
	e.dropped += fp.sub.Dropped()
	e.fmu.Unlock()
}

func (e *env) focusNow() *focus.Focus {
	e.fmu.Lock()
	defer e.fmu.Unlock()
	if e.fc == nil {
		return nil
	}
	return e.fc.f
}

// edit runs one operator edit through the operator's store, reloading and
// retrying when the file changed under it (ErrConflict), as the console does.
func (e *env) edit(what string, do func() error) error {
	var err error
	for range 5 {
		if err = do(); !errors.Is(err, keys.ErrConflict) {
			break
		}
		e.ops.Reload()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// writeFile replaces the key file the way vim does: new file, rename over.
func (e *env) writeFile(data []byte) {
	e.t.Helper()
	tmp := e.keysPath + ".swp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.keysPath); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) readFile() []byte {
	e.t.Helper()
	b, err := os.ReadFile(e.keysPath)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// newCohort adds a key through the operator's store (hashed at rest, as
// `keyfocus keys add` does) and names its rooms.
func (e *env) newCohort(idx int, spec keys.Spec) *cohort {
	e.t.Helper()
	var key string
	var ent *keys.Entry
	err := e.edit("add key", func() (err error) {
		key, ent, err = e.ops.Add(spec)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	forms := []simulate.KeyForm{simulate.FormProperty, simulate.FormRoom, simulate.FormToken}
	c := &cohort{idx: idx, key: key, id: ent.ID, fp: ent.Fingerprint, form: forms[idx%len(forms)]}
	for j := range e.p.RoomsPerCohort {
		req := simulate.Request{Room: fmt.Sprintf("c%d-%d@%s", idx, j, e.srv.MUC), Key: key, Form: c.form, Lowercase: true}
		c.rooms = append(c.rooms, req.RoomJID())
	}
	if !spec.Expires.IsZero() {
		c.invalidAt, c.why = spec.Expires, "expired"
	}
	e.model.addCohort(c)
	e.obs.addRooms(c.rooms...)
	return c
}

// runCohort runs the load runner of c until the load phase ends.
func (e *env) runCohort(ctx context.Context, wg *sync.WaitGroup, c *cohort, until time.Time) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		sum, err := simulate.Run(ctx, simulate.LoadConfig{
			Account:       simulate.Account{Addr: e.srv.C2SAddr, Domain: e.srv.Domain, Logger: quiet()},
			Focus:         e.srv.Component,
			MUC:           e.srv.MUC,
			Rooms:         e.p.RoomsPerCohort,
			RoomPrefix:    fmt.Sprintf("c%d", c.idx),
			Duration:      time.Until(until),
			Rate:          e.p.Rate,
			Concurrency:   e.p.Concurrency,
			Stay:          e.p.Stay,
			Keys:          []string{c.key},
			InvalidRatio:  0.2,
			IntruderRatio: 0.05,
			Form:          c.form,
			Lowercase:     true,
			StepTimeout:   5 * time.Second,
			Logger:        quiet(),
		})
		if err != nil {
			e.t.Errorf("cohort %d: load runner: %v", c.idx, err)
			return
		}
		e.model.mu.Lock()
		c.summary = sum
		e.model.mu.Unlock()
	}()
}

// lingerRec is one occupant seen in a room without a valid key.
type lingerRec struct {
	room, nick, jid string
	cohort          int
	why             string
	first, last     time.Time     // samples that saw them without a valid key
	max             time.Duration // longest time seen there since the focus could have acted
	start           time.Time     // when the focus could have acted
	whileDown       bool          // also seen while no focus was running
}

// checker samples every room through the observer.
type checker struct {
	e       *env
	mu      sync.Mutex
	lingers map[string]*lingerRec
	samples int
	blind   int // room samples without a live observer in the room
	seen    int // occupant samples

	// Prosody's own lag: an XMPP ping from the observer to the server every
	// 250 ms. When Prosody is saturated, removals reach the rooms late
	// whatever the focus does; the report shows it beside each linger.
	probes []probe
}

type probe struct {
	at  time.Time
	rtt time.Duration
}

// probeProsody pings Prosody through the observer until ctx ends.
func (ck *checker) probeProsody(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p := ck.e.obs.live()
		if p == nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		begin := time.Now()
		_, err := p.SendIQRaw(pctx, "<iq type='get' to='"+ck.e.srv.Domain+"'><ping xmlns='urn:xmpp:ping'/></iq>")
		cancel()
		if err != nil {
			continue
		}
		ck.mu.Lock()
		ck.probes = append(ck.probes, probe{begin, time.Since(begin)})
		ck.mu.Unlock()
	}
}

// lagDuring is the slowest Prosody ping that started in [from, to].
func (ck *checker) lagDuring(from, to time.Time) time.Duration {
	var worst time.Duration
	for _, pr := range ck.probes {
		if !pr.at.Before(from.Add(-250*time.Millisecond)) && !pr.at.After(to) && pr.rtt > worst {
			worst = pr.rtt
		}
	}
	return worst
}

func (ck *checker) run(ctx context.Context) {
	tick := time.NewTicker(ck.e.p.Sample)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			ck.sample(time.Now())
		}
	}
}

func (ck *checker) sample(now time.Time) {
	m := ck.e.model
	m.mu.Lock()
	focusUp := m.focusUp
	type roomTruth struct {
		room      string
		c         *cohort
		invalidAt time.Time
		why       string
	}
	var rooms []roomTruth
	for room, c := range m.byRoom {
		rooms = append(rooms, roomTruth{room, c, c.invalidAt, c.why})
	}
	m.mu.Unlock()

	ck.mu.Lock()
	defer ck.mu.Unlock()
	ck.samples++
	for _, rt := range rooms {
		occ, ok := ck.e.obs.occupants(rt.room)
		if !ok {
			ck.blind++
			continue
		}
		for _, o := range occ {
			if o.Nick == observerNick || o.Nick == focus.Nick || strings.HasPrefix(o.JID, ck.e.srv.Component+"/") {
				continue
			}
			ck.seen++
			if rt.invalidAt.IsZero() || now.Before(rt.invalidAt) {
				continue
			}
			k := rt.room + "/" + o.Nick + "|" + o.JID
			l := ck.lingers[k]
			if l == nil {
				l = &lingerRec{room: rt.room, nick: o.Nick, jid: o.JID, cohort: rt.c.idx, why: rt.why, first: now}
				ck.lingers[k] = l
			}
			l.last = now
			if focusUp.IsZero() {
				l.whileDown = true
				continue
			}
			start := rt.invalidAt
			if focusUp.After(start) {
				start = focusUp
			}
			if d := now.Sub(start); d > l.max {
				l.max, l.start = d, start
			}
		}
	}
}

// makeCohorts adds the keys of round r (cohort numbers from 10*r): 0 revoked,
// 1 edited out of its rooms, 2 revoked after the broken file is repaired, 3
// revoked while the focus is down, 4 edited harmlessly (must keep everyone),
// 5 expires; more stay valid throughout.
func (e *env) makeCohorts(r int, rb time.Time, length time.Duration) []*cohort {
	expiresAt := rb.Add(time.Duration(0.66 * float64(length))).Truncate(time.Second).Add(time.Second)
	var cs []*cohort
	for i := range max(e.p.Cohorts, 6) {
		spec := keys.Spec{Name: fmt.Sprintf("Cohort %d", 10*r+i)}
		if i == 5 {
			spec.Expires = expiresAt
		}
		c := e.newCohort(10*r+i, spec)
		c.keep = i == 4 || i > 5
		cs = append(cs, c)
	}
	return cs
}

// retire stops checking the rooms of cohorts whose load is over: the checker
// forgets them and the observer leaves them (the focus then ends them).
func (e *env) retire(ctx context.Context, cs []*cohort) {
	var rooms []string
	e.model.mu.Lock()
	for _, c := range cs {
		if c == nil {
			continue
		}
		for _, r := range c.rooms {
			delete(e.model.byRoom, r)
			rooms = append(rooms, r)
		}
	}
	e.model.mu.Unlock()
	e.obs.dropRooms(ctx, rooms...)
}

// round runs the fault schedule once over [rb, rb+length) with the cohorts
// of that round, whose load runners stop at the round's end. It returns the
// cohort it added midway.
func (e *env) round(ctx context.Context, load *sync.WaitGroup, r int, begin, rb time.Time, length time.Duration, initial []*cohort) (late *cohort) {
	t := e.t
	srv := e.srv
	loadEnd := rb.Add(length)
	at := func(frac float64) time.Time { return rb.Add(time.Duration(frac * float64(length))) }
	for _, c := range initial {
		e.runCohort(ctx, load, c, loadEnd)
	}
	step := func(frac float64, what string, do func()) {
		// The faults follow a schedule over the load: a timer, not pacing.
		timer := time.NewTimer(time.Until(at(frac)))
		defer timer.Stop()
		<-timer.C
		t.Logf("%6.1fs  round %d: %s", time.Since(begin).Seconds(), r, what)
		do()
	}
	// The promise runs from the moment the key file holds the change: when
	// the store's atomic save (temp file, fsync, rename, fsync of the folder)
	// has returned. The fsyncs alone can take hundreds of milliseconds on a
	// busy disk, before anyone could see the change.
	revoke := func(c *cohort, how string) {
		if err := e.edit("revoke", func() error { _, err := e.ops.Revoke(c.id); return err }); err != nil {
			t.Errorf("revoke cohort %d: %v", c.idx, err)
		}
		e.model.invalidate(c, time.Now(), "revoked ("+how+")")
	}
	step(0.08, "revoke cohort 0 (keys revoke)", func() { revoke(initial[0], "keys revoke") })
	step(0.14, "add a key: a new cohort starts", func() {
		late = e.newCohort(10*r+len(initial), keys.Spec{Name: "Late Cohort"})
		e.runCohort(ctx, load, late, loadEnd)
	})
	step(0.20, "edit cohort 1's rooms so its rooms are no longer allowed", func() {
		c := initial[1]
		err := e.edit("edit", func() error {
			_, err := e.ops.Edit(c.id, keys.Spec{Name: "Cohort 1", Rooms: []string{"elsewhere-*"}})
			return err
		})
		if err != nil {
			t.Error(err)
		}
		e.model.invalidate(c, time.Now(), "rooms edited")
	})
	step(0.26, "edit cohort 4 harmlessly (name, limit): nobody may be removed", func() {
		err := e.edit("edit", func() error {
			_, err := e.ops.Edit(initial[4].id, keys.Spec{Name: "Cohort 4 renamed", MaxParticipants: 500})
			return err
		})
		if err != nil {
			t.Error(err)
		}
	})
	var good []byte
	step(0.32, "break the key file (a line that does not parse)", func() {
		good = e.readFile()
		broken := append(append([]byte(nil), good...), "kf_typo=Broken Line; expires=next tuesday\n"...)
		e.fmu.Lock()
		failures := len(e.storeFail)
		e.fmu.Unlock()
		e.writeFile(broken)
		waitFor(t, "the focus reports the broken file", waitLong, func() bool {
			e.fmu.Lock()
			defer e.fmu.Unlock()
			return len(e.storeFail) > failures
		})
		// An edit on a broken file is refused, and the file stays as it is.
		e.ops.Reload()
		_, err := e.ops.Revoke(initial[2].id)
		if err == nil {
			t.Errorf("revoke on a broken key file succeeded")
		} else if !strings.Contains(err.Error(), "fix them first") {
			t.Errorf("revoke on a broken key file: unclear error %q", err)
		}
		if got := e.readFile(); !bytes.Equal(got, broken) {
			t.Errorf("a refused edit changed the broken key file")
		}
	})
	step(0.38, "repair the key file, then revoke cohort 2", func() {
		e.writeFile(good)
		revoke(initial[2], "after repair")
	})
	step(0.46, "restart Prosody", func() {
		rctx, c := context.WithTimeout(ctx, waitLong)
		defer c()
		if err := srv.Restart(rctx); err != nil {
			t.Fatalf("restart prosody: %v", err)
		}
	})
	step(0.56, "restart the focus; revoke cohort 3 while it is down", func() {
		e.stopFocus()
		revoke(initial[3], "while the focus was down")
		e.startFocus()
		e.restarts++
	})
	step(0.66, "cohort 5's key expires about now", func() {})
	step(0.74, "crash Prosody (SIGKILL) and start it again", func() {
		srv.Kill()
		rctx, c := context.WithTimeout(ctx, waitLong)
		defer c()
		if err := srv.Restart(rctx); err != nil {
			t.Fatalf("restart prosody after kill: %v", err)
		}
	})
	step(0.84, "revoke the late cohort by hand (its line deleted in an editor)", func() {
		data := e.readFile()
		var out []string
		for _, line := range strings.SplitAfter(string(data), "\n") {
			if !strings.HasPrefix(line, "sha256:"+late.id) {
				out = append(out, line)
			}
		}
		e.writeFile([]byte(strings.Join(out, "")))
		e.model.invalidate(late, time.Now(), "line deleted by hand")
	})
	return late
}

func TestSoak(t *testing.T) {
	p := soakParams(t)
	srv := prosodytest.Start(t)
	dir := t.TempDir()
	e := &env{
		t: t, p: p, srv: srv, dir: dir,
		keysPath: filepath.Join(dir, "keys.properties"),
		state:    filepath.Join(dir, "state.json"),
		logPath:  filepath.Join(dir, "focus.log"),
		model:    &model{byRoom: map[string]*cohort{}, byEvent: map[string]*cohort{}},
		removed:  map[string]map[int]int{},
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(e.logPath); err == nil {
				t.Logf("focus log (last lines):\n%s", tailLines(string(b), 40))
			}
		}
	})
	var err error
	e.obsKey, err = keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	// The observer's key is a seed-style plaintext line an operator typed in.
	header := "# soak test keys\n# the observer: every room\n" + e.obsKey + "=Soak Observer\n"
	if err := os.WriteFile(e.keysPath, []byte(header), 0o600); err != nil {
		t.Fatal(err)
	}
	if e.ops, err = keys.OpenWith(e.keysPath, keys.Options{Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	e.obs = &observer{acc: simulate.Account{Addr: srv.C2SAddr, Domain: srv.Domain, Logger: quiet()}, focus: srv.Component, key: e.obsKey}

	begin := time.Now()
	rounds := max(p.Rounds, 1)
	roundLen := p.Load / time.Duration(rounds)
	first := e.makeCohorts(0, begin, roundLen)
	e.startFocus()
	defer e.stopFocus()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); e.obs.run(ctx) }()
	defer func() { cancel(); bg.Wait(); e.obs.close() }()

	// Wait until the observer sits in every room, then take the baseline.
	waitFor(t, "observer in every room", waitLong, func() bool { return e.obs.inAll() })
	runtime.GC()
	baseG := runtime.NumGoroutine()
	var baseMem runtime.MemStats
	runtime.ReadMemStats(&baseMem)

	ck := &checker{e: e, lingers: map[string]*lingerRec{}}
	ckCtx, stopCk := context.WithCancel(ctx)
	var ckWG sync.WaitGroup
	ckWG.Add(2)
	go func() { defer ckWG.Done(); ck.run(ckCtx) }()
	go func() { defer ckWG.Done(); ck.probeProsody(ckCtx) }()

	var load sync.WaitGroup
	var done [][]*cohort // cohorts of each round, by round
	for r := range rounds {
		rb := begin.Add(time.Duration(r) * roundLen)
		cohorts := first
		if r > 0 {
			cohorts = e.makeCohorts(r, rb, roundLen)
		}
		if r >= 2 {
			// The load of round r-2 ended a round ago: stop watching its
			// rooms, so the number of rooms stays steady on a long run.
			e.retire(ctx, done[r-2])
		}
		late := e.round(ctx, &load, r, begin, rb, roundLen, cohorts)
		done = append(done, append(cohorts, late))
	}

	load.Wait()
	t.Logf("%6.1fs  load over", time.Since(begin).Seconds())
	stopCk()
	ckWG.Wait()

	// The focus still answers and admits.
	f := e.focusNow()
	if f == nil || !f.Connected() || !f.Alive() {
		t.Errorf("the focus is not connected at the end")
	}
	func() {
		cctx, c := context.WithTimeout(ctx, waitLong)
		defer c()
		pp, err := simulate.Dial(cctx, simulate.Account{Addr: srv.C2SAddr, Domain: srv.Domain})
		if err != nil {
			t.Errorf("final check: login: %v", err)
			return
		}
		defer pp.Close()
		room := "final-check@" + srv.MUC
		rep, err := pp.RequestConference(cctx, simulate.Request{Room: room, Key: e.obsKey, Focus: srv.Component})
		if err != nil || !rep.Admitted() {
			t.Errorf("final check: the focus did not admit a valid key: %v %+v", err, rep)
			return
		}
		if _, err := pp.Join(cctx, room, "final"); err != nil {
			t.Errorf("final check: join after admission: %v", err)
		}
	}()

	// Goroutines and heap: back near the baseline once the load is gone.
	var endG int
	deadline := time.Now().Add(waitLong)
	for {
		runtime.GC()
		endG = runtime.NumGoroutine()
		if endG <= baseG+p.GoroutineSlack || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling the goroutine count, with a deadline
	}
	var endMem runtime.MemStats
	runtime.ReadMemStats(&endMem)

	e.report(ck, baseG, endG, &baseMem, &endMem, time.Since(begin))
	if endG > baseG+p.GoroutineSlack {
		var b bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("goroutine leak: %d at the baseline, %d after the load (slack %d)\n%s", baseG, endG, p.GoroutineSlack, tailLines(b.String(), 80))
	}
}

// report logs the findings and fails the test on every broken promise.
func (e *env) report(ck *checker, baseG, endG int, baseMem, endMem *runtime.MemStats, elapsed time.Duration) {
	t := e.t
	t.Helper()
	ck.mu.Lock()
	defer ck.mu.Unlock()
	e.model.mu.Lock()
	defer e.model.mu.Unlock()

	var total simulate.Summary
	var b strings.Builder
	rooms := 0
	for _, c := range e.model.cohorts {
		rooms += len(c.rooms)
	}
	fmt.Fprintf(&b, "soak: %s, %d rooms (%d watched at the end), %d focus restart(s)\n", elapsed.Round(time.Second), rooms, len(e.model.byRoom), e.restarts)
	fmt.Fprintf(&b, "%-8s %-9s %-8s %8s %8s %8s %8s %8s %8s %8s\n", "cohort", "key", "form", "started", "admitted", "refused", "joined", "removed", "intrud", "errors")
	for _, c := range e.model.cohorts {
		s := c.summary
		if s == nil {
			fmt.Fprintf(&b, "%-8d %-9s %-8s (no summary)\n", c.idx, c.fp, c.form)
			continue
		}
		errs := s.LoginFailed + s.RequestError + s.JoinError + s.Disconnected
		fmt.Fprintf(&b, "%-8d %-9s %-8s %8d %8d %8d %8d %8d %8d %8d  %s\n", c.idx, c.fp, c.form, s.Started, s.Admitted,
			sumMap(s.Refused), s.Joined, sumMap(s.Removed), s.Intruders, errs, c.why)
		total.Started += s.Started
		total.Admitted += s.Admitted
		total.Joined += s.Joined
		total.AdmittedInvalid += s.AdmittedInvalid
		total.IntrudersIn += s.IntrudersIn
		if s.AdmittedInvalid > 0 {
			t.Errorf("cohort %d: %d wrong keys were admitted", c.idx, s.AdmittedInvalid)
		}
		if s.IntrudersIn > 0 {
			t.Errorf("cohort %d: %d participants got into a room without asking the focus", c.idx, s.IntrudersIn)
		}
	}
	fmt.Fprintf(&b, "participants %d, admitted %d, joined %d; checker: %d samples, %d occupant sightings, %d blind room samples (observer out of the room: Prosody restarts)\n",
		total.Started, total.Admitted, total.Joined, ck.samples, ck.seen, ck.blind)
	if n := len(ck.probes); n > 0 {
		rtts := make([]time.Duration, n)
		for i, pr := range ck.probes {
			rtts[i] = pr.rtt
		}
		sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
		fmt.Fprintf(&b, "Prosody's own lag (ping from the observer, %d probes): p50 %s, p99 %s, max %s\n", n,
			rtts[n/2].Round(time.Millisecond), rtts[n*99/100].Round(time.Millisecond), rtts[n-1].Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "goroutines %d -> %d; heap in use %.1f MiB -> %.1f MiB\n", baseG, endG,
		float64(baseMem.HeapAlloc)/(1<<20), float64(endMem.HeapAlloc)/(1<<20))
	e.fmu.Lock()
	fmt.Fprintf(&b, "removed by the focus (actor: cohort=n): %v; store failures reported: %d; events dropped: %d\n", e.removed, len(e.storeFail), e.dropped)
	for actor, byCohort := range e.removed {
		for _, c := range e.model.cohorts {
			if n := byCohort[c.idx]; n > 0 && c.keep {
				t.Errorf("%d member(s) of cohort %d (valid key throughout) were removed by %q", n, c.idx, actor)
			}
		}
	}
	for _, msg := range e.storeFail {
		if !strings.Contains(msg, e.keysPath+":") {
			t.Errorf("store failure without FILE:LINE: %q", msg)
		}
	}
	e.fmu.Unlock()

	recs := make([]*lingerRec, 0, len(ck.lingers))
	for _, l := range ck.lingers {
		recs = append(recs, l)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].max > recs[j].max })
	fmt.Fprintf(&b, "occupants seen without a valid key: %d\n", len(recs))
	var worst time.Duration
	for _, l := range recs {
		if l.max > worst {
			worst = l.max
		}
		note := ""
		if l.whileDown {
			note = " (also while no focus ran)"
		}
		lag := ck.lagDuring(l.start, l.last)
		fmt.Fprintf(&b, "  %-40s %-10s cohort %d (%s): in the room %s after the focus could act; Prosody ping meanwhile up to %s%s\n",
			e.displayLocked(l.room), l.nick, l.cohort, l.why, l.max.Round(time.Millisecond), lag.Round(time.Millisecond), note)
		if l.max > e.p.MaxLinger {
			t.Errorf("%s in %s (cohort %d, %s) stayed %s without a valid key (promise: %s); Prosody's own ping took up to %s meanwhile",
				l.nick, e.displayLocked(l.room), l.cohort, l.why, l.max.Round(time.Millisecond), e.p.MaxLinger, lag.Round(time.Millisecond))
		}
	}
	fmt.Fprintf(&b, "longest stay without a valid key: %s\n", worst.Round(time.Millisecond))
	t.Log("\n" + b.String())
	if dir := os.Getenv("KEYFOCUS_SOAK_REPORT"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "soak-report.txt"), []byte(b.String()), 0o644)
		if log, err := os.ReadFile(e.logPath); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "soak-focus.log"), log, 0o644)
		}
	}
}

func (e *env) displayLocked(room string) string {
	for _, c := range e.model.cohorts {
		room = strings.ReplaceAll(room, c.key, "[key "+c.fp+"]")
	}
	return room
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
}
