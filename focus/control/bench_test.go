package control

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
)

// BenchmarkSocketEvents is events per second from the focus's bus through
// the unix socket into an attached client's subscription. The publisher
// keeps at most 2048 events in flight, so this measures the socket path,
// not resyncs.
func BenchmarkSocketEvents(b *testing.B) {
	src := newSource()
	path, _ := serve(b, src, nil)
	c, err := Dial(b.Context(), path, WithLogger(quietLogger()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_, sub := c.Watch(1 << 16)
	m := &focus.Member{Nick: "n", JID: "n@meet.example/x", Role: "participant", Joined: time.Now(), Fingerprint: "0badf00d", Client: "Acme"}
	evs := make([]focus.Event, 1024)
	for i := range evs {
		kind := focus.EvMemberJoined
		if i%2 == 1 {
			kind = focus.EvMemberLeft
		}
		evs[i] = focus.Event{Kind: kind, Time: time.Now(), Room: "r" + strconv.Itoa(i/2%50) + "@conference.meet.example", Member: m}
	}
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for got.Load() < int64(b.N) {
			if _, ok := <-sub.C; !ok {
				return
			}
			got.Add(1)
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for int64(i)-got.Load() > 2048 {
			runtime.Gosched()
		}
		src.publish(evs[i%len(evs)])
	}
	<-done
	if got.Load() != int64(b.N) {
		b.Fatalf("received %d of %d events (the subscription was reset)", got.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
