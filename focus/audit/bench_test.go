package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus"
)

var benchRecord = Record{Event: Admitted, Requester: "guest-0123456789@meet.example/abcdef", Room: "standup@conference.meet.example", Fingerprint: "0123abcd", Client: "Acme Corp", LatencyMS: 7.2}

// One record per write: the cost of an fsync'd line.
func BenchmarkWriteOne(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for b.Loop() {
		if err := l.Write(benchRecord); err != nil {
			b.Fatal(err)
		}
	}
}

// 64 records per write (what the Auditor's group commit does under load).
func BenchmarkWriteBatch64(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := make([]Record, 64)
	for i := range batch {
		batch[i] = benchRecord
	}
	for b.Loop() {
		if err := l.Write(batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(64*b.N)/b.Elapsed().Seconds(), "records/s")
}

// The Auditor end to end: b.N admission events published on a bus, until
// all are on disk.
func BenchmarkAuditorThroughput(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	src := newBusSource()
	a := &Auditor{Log: l, Buffer: b.N + 16}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, src) }()
	<-src.watched
	ev := focus.Event{Kind: focus.EvAdmitted, Request: &focus.Admission{Requester: benchRecord.Requester, Room: benchRecord.Room, Fingerprint: "0123abcd", Client: "Acme Corp", Latency: 7 * time.Millisecond}}
	b.ResetTimer()
	for range b.N {
		src.bus.Publish(ev)
	}
	for {
		data, _ := os.ReadFile(path)
		if bytes.Count(data, []byte{'\n'}) >= b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	cancel()
	<-done
}

// Tail reads from the end: its cost does not grow with the file (the
// console's audit pane reads it every second).
func BenchmarkTail(b *testing.B) {
	for _, lines := range []int{1_000, 200_000} {
		b.Run(itoa(lines)+"-lines", func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "audit.jsonl")
			l, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			batch := make([]Record, 1000)
			for i := range batch {
				batch[i] = benchRecord
			}
			for range lines / 1000 {
				if err := l.Write(batch...); err != nil {
					b.Fatal(err)
				}
			}
			l.Close()
			b.ResetTimer()
			for b.Loop() {
				recs, err := Tail(path, 6)
				if err != nil || len(recs) != 6 {
					b.Fatalf("%d records, %v", len(recs), err)
				}
			}
		})
	}
}

func itoa(n int) string {
	s := ""
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}
