package focus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/internal/bare"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
	"github.com/keyfocus/keyfocus/focus/simulate"
	"github.com/keyfocus/keyfocus/keys"
)

// benchEnv is one Prosody with keyfocus and the bare component side by side,
// and a pool of connected participants.
type benchEnv struct {
	*testEnv
	bareName string
	pool     []*simulate.Participant
	seq      atomic.Int64
}

func newBenchEnv(b *testing.B, participants int) *benchEnv {
	b.Helper()
	srv := prosodytest.Start(b, prosodytest.WithExtraComponents("bare.meet.example"))
	dir := b.TempDir()
	e := &testEnv{t: b, srv: srv, keysPath: filepath.Join(dir, "keys.properties"), logs: newLockedBuffer()}
	if err := os.WriteFile(e.keysPath, []byte("kf_bench=Bench\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	st, err := keys.OpenWith(e.keysPath, keys.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	e.store = st
	f, err := New(e.config(func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		// Rooms nobody joins end after this: the live room count stays
		// below Prosody's muc_room_cache_size (100 by default), past which
		// Prosody swaps rooms out and everything slows down.
		c.EmptyRoomGrace = 2 * time.Second
	}))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	<-f.Ready()
	e.f = f

	bc, err := bare.Start(context.Background(), bare.Config{Addr: srv.ComponentAddr, Name: "bare.meet.example", Secret: srv.Secret})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bc.Close() })

	be := &benchEnv{testEnv: e, bareName: "bare.meet.example"}
	for range participants {
		be.pool = append(be.pool, e.dial())
	}
	return be
}

// prosodyCPU is Prosody's CPU time so far (user+system), from /proc on Linux;
// 0 elsewhere.
func (be *benchEnv) prosodyCPU() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", be.srv.Pid()))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// reportProsodyCPU adds Prosody's CPU per request since start.
func (be *benchEnv) reportProsodyCPU(b *testing.B, start time.Duration) {
	if d := be.prosodyCPU() - start; start > 0 && d >= 0 {
		b.ReportMetric(float64(d.Microseconds())/float64(b.N), "prosody-cpu-µs/op")
	}
}

func (be *benchEnv) setGrace(d time.Duration) {
	be.f.mu.Lock()
	be.f.cfg.EmptyRoomGrace = d
	be.f.mu.Unlock()
}

// settle waits until the focus is down to at most n rooms (the empty ones
// of the previous run have ended).
func (be *benchEnv) settle(b *testing.B, n int) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	eventually(b, "rooms ended", func() bool { return len(be.f.State().Rooms) <= n })
}

// do runs n requests, conc at a time; req(i) gives participant and request.
func (be *benchEnv) do(b *testing.B, n, conc int, req func(i int) (*simulate.Participant, simulate.Request)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				p, r := req(i)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				rep, err := p.RequestConference(ctx, r)
				cancel()
				if err != nil || !rep.Admitted() {
					failed.Store(fmt.Sprintf("request %d (%s to %s): err %v reply %+v", i, r.Room, r.Focus, err, rep))
				}
			}
		}()
	}
	wg.Wait()
	if v := failed.Load(); v != nil {
		b.Fatal(v)
	}
}

// BenchmarkConference is the conference request round trip through keyfocus
// and through a bare component that answers at once, side by side on the same
// Prosody: one at a time and 64 in flight; for a member already admitted, a
// new member of an existing room (grant + reply), and a new room.
func BenchmarkConference(b *testing.B) {
	be := newBenchEnv(b, 64)
	mucHost := be.srv.MUC
	// Everyone in the pool is in "em" already: a live room of 64.
	for i, p := range be.pool {
		be.admitJoin(p, "em", "kf_bench", fmt.Sprintf("p%d", i))
	}
	targets := []struct{ name, addr string }{{"bare", be.bareName}, {"keyfocus", be.srv.Component}}
	for _, conc := range []int{1, 64} {
		mode := "serial"
		if conc > 1 {
			mode = fmt.Sprintf("parallel%d", conc)
		}
		for _, tg := range targets {
			b.Run("existing-member/"+mode+"/"+tg.name, func(b *testing.B) {
				be.settle(b, 1)
				b.ReportAllocs()
				cpu := be.prosodyCPU()
				be.do(b, b.N, conc, func(i int) (*simulate.Participant, simulate.Request) {
					return be.pool[i%len(be.pool)], simulate.Request{Room: "em@" + mucHost, Key: "kf_bench", Focus: tg.addr}
				})
				be.reportProsodyCPU(b, cpu)
			})
		}
		for _, tg := range targets {
			b.Run("existing-room-new-member/"+mode+"/"+tg.name, func(b *testing.B) {
				// Rooms that exist, each asked by every pool participant once.
				be.settle(b, 1)
				run := be.seq.Add(1)
				rooms := (b.N + len(be.pool) - 1) / len(be.pool)
				name := func(k int) string { return fmt.Sprintf("nm%d-%d@%s", run, k, mucHost) }
				if tg.name == "keyfocus" {
					creator := be.dial()
					b.StopTimer()
					be.do(b, rooms, 8, func(k int) (*simulate.Participant, simulate.Request) {
						return creator, simulate.Request{Room: name(k), Key: "kf_bench", Focus: be.srv.Component}
					})
					b.StartTimer()
				}
				cpu := be.prosodyCPU()
				be.do(b, b.N, conc, func(i int) (*simulate.Participant, simulate.Request) {
					return be.pool[i%len(be.pool)], simulate.Request{Room: name(i / len(be.pool)), Key: "kf_bench", Focus: tg.addr}
				})
				be.reportProsodyCPU(b, cpu)
			})
		}
		for _, tg := range targets {
			b.Run("new-room/"+mode+"/"+tg.name, func(b *testing.B) {
				be.settle(b, 1)
				// New rooms nobody joins end quickly here, so the live rooms stay
				// well below Prosody's room cache (see newBenchEnv).
				be.setGrace(200 * time.Millisecond)
				defer be.setGrace(2 * time.Second)
				run := be.seq.Add(1)
				cpu := be.prosodyCPU()
				be.do(b, b.N, conc, func(i int) (*simulate.Participant, simulate.Request) {
					return be.pool[i%len(be.pool)], simulate.Request{Room: fmt.Sprintf("new%d-%d@%s", run, i, mucHost), Key: "kf_bench", Focus: tg.addr}
				})
				be.reportProsodyCPU(b, cpu)
			})
		}
	}
}

// BenchmarkRevocationLatency measures key file write (vim-style rename) ->
// member removed, as the member sees it: each round puts 100 people in a room,
// each with their own key, and revokes the keys one at a time. Run it with
// -benchtime=1x for one round of 100.
func BenchmarkRevocationLatency(b *testing.B) {
	const n = 100
	var lines strings.Builder
	for i := range 20 {
		fmt.Fprintf(&lines, "kf_stay%d=Stay %d\n", i, i)
	}
	stay := lines.String()
	file := func(round int, revoked []bool) string {
		var s strings.Builder
		s.WriteString(stay)
		for i := range n {
			if !revoked[i] {
				fmt.Fprintf(&s, "kf_rev%d_%d=Rev %d\n", round, i, i)
			}
		}
		return s.String()
	}
	e := newEnv(b, stay)
	e.startFocus(func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) })
	var lat []time.Duration
	b.ResetTimer()
	for round := range b.N {
		b.StopTimer()
		revoked := make([]bool, n)
		e.writeKeys(file(round, revoked))
		key := fmt.Sprintf("kf_rev%d_%d", round, n-1)
		eventually(b, "keys loaded", func() bool { return e.store.Snapshot().Lookup(key) != nil })
		room := fmt.Sprintf("rev%d", round)
		ps := make([]*simulate.Participant, n)
		for i := range n {
			ps[i] = e.dial()
			e.admitJoin(ps[i], room, fmt.Sprintf("kf_rev%d_%d", round, i), fmt.Sprintf("p%d", i))
		}
		b.StartTimer()
		for i := range n {
			revoked[i] = true
			start := time.Now()
			e.writeKeys(file(round, revoked))
			waitRemoved(b, ps[i], e.room(room))
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		for _, p := range ps {
			_ = p.Close()
		}
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(len(lat)), "revocations")
}

// BenchmarkConferencePaired asks keyfocus and the bare component in turns,
// so both see the same machine load, and reports each one's median and p99
// round trip and the ratio of the medians (the 1.15x target). Cases: a member
// already admitted, and a new member of an existing room (grant + reply).
func BenchmarkConferencePaired(b *testing.B) {
	be := newBenchEnv(b, 64)
	mucHost := be.srv.MUC
	for i, p := range be.pool {
		be.admitJoin(p, "em", "kf_bench", fmt.Sprintf("p%d", i))
	}
	rtt := func(p *simulate.Participant, r simulate.Request) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rep, err := p.RequestConference(ctx, r)
		if err != nil || !rep.Admitted() {
			b.Fatalf("%s to %s: %v %+v", r.Room, r.Focus, err, rep)
		}
		return rep.RTT
	}
	report := func(b *testing.B, kf, bare []time.Duration) {
		q := func(ds []time.Duration, p float64) float64 {
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Nanoseconds()) / 1000
		}
		kf50, bare50 := q(kf, 0.5), q(bare, 0.5)
		b.ReportMetric(kf50, "keyfocus-p50-µs")
		b.ReportMetric(bare50, "bare-p50-µs")
		b.ReportMetric(q(kf, 0.99), "keyfocus-p99-µs")
		b.ReportMetric(q(bare, 0.99), "bare-p99-µs")
		b.ReportMetric(kf50/bare50, "ratio-p50")
	}
	for _, conc := range []int{1, 64} {
		mode := "serial"
		if conc > 1 {
			mode = fmt.Sprintf("parallel%d", conc)
		}
		cases := []struct {
			name string
			room func(run int64, i int) string
		}{
			{"existing-member", func(int64, int) string { return "em@" + mucHost }},
			{"existing-room-new-member", func(run int64, i int) string {
				return fmt.Sprintf("pm%d-%d@%s", run, i/len(be.pool), mucHost)
			}},
		}
		for _, tc := range cases {
			b.Run(tc.name+"/"+mode, func(b *testing.B) {
				be.settle(b, 1)
				run := be.seq.Add(1)
				if tc.name != "existing-member" {
					rooms := (b.N + len(be.pool) - 1) / len(be.pool)
					creator := be.dial()
					b.StopTimer()
					be.do(b, rooms, 16, func(k int) (*simulate.Participant, simulate.Request) {
						return creator, simulate.Request{Room: tc.room(run, k*len(be.pool)), Key: "kf_bench", Focus: be.srv.Component}
					})
					b.StartTimer()
				}
				var mu sync.Mutex
				var kf, bare []time.Duration
				var next atomic.Int64
				var wg sync.WaitGroup
				for range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := int(next.Add(1) - 1)
							if i >= b.N {
								return
							}
							p := be.pool[i%len(be.pool)]
							r := simulate.Request{Room: tc.room(run, i), Key: "kf_bench"}
							r.Focus = be.bareName
							db := rtt(p, r)
							r.Focus = be.srv.Component
							dk := rtt(p, r)
							mu.Lock()
							kf, bare = append(kf, dk), append(bare, db)
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				report(b, kf, bare)
			})
		}
	}
}
