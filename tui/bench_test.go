package tui

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/keyfocus/keyfocus/focus"
)

// bigState is nRooms rooms with perRoom members each.
func bigState(nRooms, perRoom int) focus.State {
	st := focus.State{Component: "focus.meet.example", Conn: focus.ConnState{Connected: true, Since: t0}}
	st.Rooms = make([]focus.Room, nRooms)
	for i := range st.Rooms {
		r := &st.Rooms[i]
		r.Name = fmt.Sprintf("room-%05d@conference.meet.example", i)
		r.Created = t0.Add(-time.Duration(i) * time.Second)
		r.Members = make([]focus.Member, perRoom)
		for j := range r.Members {
			fp := fmt.Sprintf("%08x", (i*perRoom+j)%5000)
			r.Members[j] = focus.Member{Nick: "user-" + strconv.Itoa(j), JID: "u" + strconv.Itoa(j) + "@meet.example/w",
				Role: "participant", Joined: t0.Add(-time.Minute), Fingerprint: fp, Client: "Client " + fp[:4]}
		}
	}
	for i := 0; i < 1000; i++ {
		st.Rejected = append(st.Rejected, focus.Rejection{Time: t0, Requester: "g@meet.example/" + strconv.Itoa(i), Room: "x@c", Reason: focus.ReasonUnknownKey, Code: 403})
	}
	return st
}

func bigModel(b *testing.B, st focus.State) (*Model, *testSource) {
	src := newTestSource(st)
	m := New(Options{Source: src, Renderer: asciiRenderer(), Now: func() time.Time { return t0 }, Logger: discardLogger()})
	m.timers = false
	m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	s, sub := src.Watch(1 << 16)
	b.Cleanup(sub.Close)
	m.Update(watchedMsg{st: s, sub: sub})
	return m, src
}

// BenchmarkView draws the Rooms view with 10k rooms and 100k members (target: < 16 ms).
func BenchmarkView(b *testing.B) {
	for _, tab := range []int{0, 1, 2} {
		b.Run(viewNames[tab]+"_10k_rooms_100k_members", func(b *testing.B) {
			m, _ := bigModel(b, bigState(10000, 10))
			m.setTab(tab)
			b.ReportAllocs()
			for b.Loop() {
				_ = m.View()
			}
		})
	}
}

// BenchmarkRefresh is the cost of bringing the Rooms rows up to date after
// a batch (done in Update at most ~20 times a second): a room appeared or
// went (rows rebuilt and sorted), or only members changed (sorted by name:
// nothing to rebuild; sorted by members: rebuilt).
func BenchmarkRefresh(b *testing.B) {
	cases := []struct {
		name    string
		roomSet bool
		sortBy  int
	}{
		{"room_set_changed", true, sortName},
		{"members_changed_sort_by_name", false, sortName},
		{"members_changed_sort_by_members", false, sortMembers},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			m, _ := bigModel(b, bigState(10000, 10))
			m.rooms.sortBy = c.sortBy
			b.ReportAllocs()
			for b.Loop() {
				m.d.st.RoomsVersion++
				if c.roomSet {
					m.d.st.RoomSetVersion++
				}
				m.rooms.Refresh()
			}
		})
	}
}

// BenchmarkApply is the console's cost per focus event (join + leave pairs
// into 10k rooms), without drawing.
func BenchmarkApply(b *testing.B) {
	m, _ := bigModel(b, bigState(10000, 10))
	evs := churn(10000, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.d.st.Apply(evs[i%len(evs)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// churn is n events: members joining and leaving rooms.
func churn(rooms, n int) []focus.Event {
	evs := make([]focus.Event, n)
	for i := range evs {
		room := fmt.Sprintf("room-%05d@conference.meet.example", (i/2*7919)%rooms)
		mb := &focus.Member{Nick: "churn-" + strconv.Itoa(i/2), JID: "c@meet.example/x", Role: "participant", Joined: t0, Fingerprint: "0000abcd", Client: "Churn"}
		kind := focus.EvMemberJoined
		if i%2 == 1 {
			kind = focus.EvMemberLeft
		}
		evs[i] = focus.Event{Kind: kind, Time: t0, Room: room, Member: mb}
	}
	return evs
}

// BenchmarkAbsorb runs the real pipeline for one second per rate: the focus
// publishes on a real Bus at a fixed rate (Publish never blocks) while the
// console's coalescing waiter collects batches, Update applies them and the
// console redraws (View) once per batch, like the renderer. It reports the
// events/s absorbed, redraws/s and events the subscription dropped (a drop
// costs the console a fresh Watch, never the focus anything).
func BenchmarkAbsorb(b *testing.B) {
	for _, rate := range []int{10_000, 100_000, 400_000, 800_000, 1_600_000} {
		b.Run(strconv.Itoa(rate)+"_per_s", func(b *testing.B) {
			var got, redraws, dropped float64
			var elapsed time.Duration
			for b.Loop() {
				m, src := bigModel(b, bigState(10000, 10))
				evs := churn(10000, 1<<14)
				sub := m.sub
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				begin := time.Now()
				go func() {
					defer wg.Done()
					tick := time.NewTicker(time.Millisecond)
					defer tick.Stop()
					i := 0
					for ms := 1; ms <= 1000; ms++ {
						<-tick.C
						for ; i < rate*ms/1000; i++ {
							src.bus.Publish(evs[i%len(evs)])
						}
					}
					close(stop)
				}()
				notBefore := time.Time{}
			loop:
				for {
					msg, ok := waitEvents(sub, notBefore)().(eventsMsg)
					if !ok {
						break
					}
					got += float64(len(msg.events))
					for _, ev := range msg.events {
						m.d.st.Apply(ev)
					}
					m.refresh()
					_ = m.View()
					redraws++
					notBefore = msg.at.Add(frame)
					select {
					case <-stop:
						if len(sub.C) == 0 {
							break loop
						}
					default:
					}
				}
				wg.Wait()
				elapsed += time.Since(begin)
				dropped += float64(sub.Dropped())
			}
			b.ReportMetric(got/elapsed.Seconds(), "events/s")
			b.ReportMetric(redraws/elapsed.Seconds(), "redraws/s")
			b.ReportMetric(dropped/float64(b.N), "dropped/run")
		})
	}
}

// BenchmarkMemory reports the heap the console's state takes for 10k rooms
// and 100k members.
func BenchmarkMemory(b *testing.B) {
	st := bigState(10000, 10)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m, _ := bigModel(b, st)
		m.View()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MB-heap")
		runtime.KeepAlive(m)
	}
}
