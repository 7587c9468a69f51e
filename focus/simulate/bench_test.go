package simulate

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/internal/bare"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
)

// BenchmarkLogin is an anonymous c2s login (connect, SASL ANONYMOUS, bind)
// and stream close.
func BenchmarkLogin(b *testing.B) {
	s := prosodytest.Start(b)
	ctx := context.Background()
	for b.Loop() {
		p, err := Dial(ctx, Account{Addr: s.C2SAddr, Domain: s.Domain})
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}

// BenchmarkBareRequest is the conference request round trip through Prosody
// to a component that answers at once: the floor any focus is measured against.
func BenchmarkBareRequest(b *testing.B) {
	s := prosodytest.Start(b, prosodytest.WithExtraComponents("bare.meet.example"))
	ctx := context.Background()
	c, err := bare.Start(ctx, bare.Config{Addr: s.ComponentAddr, Name: "bare.meet.example", Secret: s.Secret})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// "minimal" carries only the key; "realistic" also the properties and
	// machine-uid that lib-jitsi-meet sends, which Prosody must parse too.
	for _, bc := range []struct {
		name     string
		inflight int
		extras   bool
	}{{"minimal/serial", 1, false}, {"minimal/inflight64", 64, false}, {"realistic/serial", 1, true}, {"realistic/inflight64", 64, true}} {
		inflight := bc.inflight
		req := Request{Room: "bench@" + s.MUC, Key: "kf_bench", Focus: "bare.meet.example", NoExtras: !bc.extras}
		b.Run(bc.name, func(b *testing.B) {
			ps := make([]*Participant, inflight)
			for i := range ps {
				if ps[i], err = Dial(ctx, Account{Addr: s.C2SAddr, Domain: s.Domain}); err != nil {
					b.Fatal(err)
				}
				defer ps[i].Close()
			}
			var mu sync.Mutex
			var rtts []time.Duration
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, p := range ps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					local := make([]time.Duration, 0, b.N/inflight+1)
					for next.Add(1) <= int64(b.N) {
						rep, err := p.RequestConference(ctx, req)
						if err != nil || !rep.Admitted() {
							b.Errorf("request: %v %+v", err, rep)
							return
						}
						local = append(local, rep.RTT)
					}
					mu.Lock()
					rtts = append(rtts, local...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			b.StopTimer()
			l := latencyOf(rtts)
			b.ReportMetric(float64(l.P50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(l.P99.Microseconds()), "p99-µs")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
