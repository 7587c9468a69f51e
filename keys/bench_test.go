package keys

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reportCPU, deferred at the start of a benchmark, reports the process's CPU
// time per operation (cpu-ns/op; 0 where it cannot be read).
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func benchKey(i int) string { return fmt.Sprintf("kf_bench%07d", i) }

// benchFile is a key file of n hashed keys with attributes, as keyfocus
// writes them; every tenth key is a plaintext seed key.
func benchFile(n int) []byte {
	var b bytes.Buffer
	b.WriteString("# benchmark keys\n")
	for i := range n {
		if i%10 == 0 {
			fmt.Fprintf(&b, "%s=Seed Client %d\n", benchKey(i), i)
			continue
		}
		fmt.Fprintf(&b, "sha256:%s=Client %d; rooms=room-%d-*,board; expires=2030-01-01; max-participants=10\n", HashKey(benchKey(i)), i, i)
	}
	return b.Bytes()
}

// benchSnapshot builds the snapshot of benchFile(n).
func benchSnapshot(b *testing.B, n int) *Snapshot {
	d := parse("bench", benchFile(n))
	if len(d.errs) > 0 || len(d.entries) != n {
		b.Fatalf("bench file: %v, %d entries", d.errs, len(d.entries))
	}
	return d.snapshot(time.Now())
}

// BenchmarkLookup is the focus's question for one conference request:
// which entry is this key, and may it open this room now.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		snap := benchSnapshot(b, n)
		keys := make([]string, 1024)
		for i := range keys {
			keys[i] = benchKey((i * 7919) % n)
		}
		now := time.Now()
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			defer reportCPU(b)()
			i := 0
			for b.Loop() {
				if _, v := snap.Authorize(keys[i%len(keys)], "board", now, false); v != Valid {
					b.Fatal("lookup failed", v)
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("fold/keys=%d", n), func(b *testing.B) {
			defer reportCPU(b)()
			i := 0
			for b.Loop() {
				if snap.LookupFold(keys[i%len(keys)]) == nil {
					b.Fatal("lookup failed")
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("miss/keys=%d", n), func(b *testing.B) {
			defer reportCPU(b)()
			for b.Loop() {
				if snap.Lookup("kf_not_a_key") != nil {
					b.Fatal("found a key that is not there")
				}
			}
		})
		// Let the big snapshot go before the next benchmark, whose GC
		// would otherwise keep scanning it.
		snap = nil
		runtime.GC()
	}
}

// BenchmarkLoad is a full load of a 100k-key file: read, parse, index.
func BenchmarkLoad(b *testing.B) {
	path := filepath.Join(b.TempDir(), "keys.properties")
	data := benchFile(100_000)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	defer reportCPU(b)()
	for b.Loop() {
		s, err := OpenWith(path, Options{Logger: quietLogger()})
		if err != nil || s.Snapshot().Len() != 100_000 {
			b.Fatal(err)
		}
	}
}

// seedLookup is the seed's method: open and parse the whole key file on
// every conference request, then look for the key.
func seedLookup(path, key string) (*Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d := parse(path, data)
	if err := d.err(); err != nil {
		return nil, err
	}
	id := HashKey(key)
	for _, e := range d.entries {
		if e.ID == id {
			return e, nil
		}
	}
	return nil, nil
}

// BenchmarkSeedMethod compares, at 10k keys, the seed's per-request parse
// of the whole file with a snapshot lookup, and reports the ratio.
func BenchmarkSeedMethod(b *testing.B) {
	const n = 10_000
	path := filepath.Join(b.TempDir(), "keys.properties")
	if err := os.WriteFile(path, benchFile(n), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := OpenWith(path, Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	key := benchKey(n - 1) // the seed scans to the end for the last key
	var seedNs float64
	b.Run("seed", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			if e, err := seedLookup(path, key); e == nil || err != nil {
				b.Fatal("seed lookup failed", err)
			}
		}
		seedNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("snapshot", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			if s.Snapshot().Lookup(key) == nil {
				b.Fatal("snapshot lookup failed")
			}
		}
		snapNs := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		if seedNs > 0 {
			// How many times faster the snapshot answers than the seed.
			b.ReportMetric(seedNs/snapNs, "x-vs-seed")
		}
	})
}

// BenchmarkLookupDuringReload looks keys up on every CPU, first with the
// store idle, then while another goroutine keeps rewriting and reloading the
// 100k-key file (each reload a real change: parse, index, swap). Lookups
// never wait for a reload: compare ns/op and the slowest lookup (max-ns) of
// the two; a reload itself takes BenchmarkLoad's time.
func BenchmarkLookupDuringReload(b *testing.B) {
	const n = 100_000
	path := filepath.Join(b.TempDir(), "keys.properties")
	base := benchFile(n)
	if err := os.WriteFile(path, base, 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := OpenWith(path, Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = benchKey((i * 7919) % n)
	}
	// Each lookup is timed into 16ns buckets (up to 64µs; slower ones land
	// in the last) to report the 99th and 99.9th percentiles beside ns/op.
	const width, buckets = 16, 4096
	lookups := func(b *testing.B) {
		var mu sync.Mutex
		var hist [buckets]int64
		b.RunParallel(func(pb *testing.PB) {
			var h [buckets]int64
			i := 0
			for pb.Next() {
				t0 := time.Now()
				if s.Snapshot().Lookup(keys[i%len(keys)]) == nil {
					panic("lookup failed")
				}
				h[min(int(time.Since(t0))/width, buckets-1)]++
				i++
			}
			mu.Lock()
			for j, c := range h {
				hist[j] += c
			}
			mu.Unlock()
		})
		var total int64
		for _, c := range hist {
			total += c
		}
		pct := func(p float64) float64 {
			var seen int64
			for j, c := range hist {
				if seen += c; float64(seen) >= p*float64(total) {
					return float64((j + 1) * width)
				}
			}
			return float64(buckets * width)
		}
		b.ReportMetric(pct(0.99), "p99-ns")
		b.ReportMetric(pct(0.999), "p99.9-ns")
	}
	b.Run("idle", lookups)
	b.Run("reloading", func(b *testing.B) {
		// Two versions that differ in one extra key: each reload is a real
		// change and never a mass revocation.
		versions := [][]byte{append(bytes.Clone(base), "extra-a=Extra\n"...), append(bytes.Clone(base), "extra-b=Extra\n"...)}
		ctx, cancel := context.WithCancel(context.Background())
		var reloads atomic.Int64
		done, started := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ctx.Err() == nil; i++ {
				if i == 1 {
					close(started)
				}
				if err := writeAtomic(path, versions[i%2]); err != nil {
					panic(err)
				}
				if u := s.Reload(); u.Err != nil {
					panic(u.Err)
				}
				reloads.Add(1)
			}
		}()
		<-started // the reloads are under way
		start := reloads.Load()
		b.ResetTimer()
		lookups(b)
		b.StopTimer()
		cancel()
		<-done
		b.ReportMetric(float64(reloads.Load()-start), "reloads")
	})
}

// BenchmarkAdd is one key added to a 100k-key file through the store: read,
// conflict check, parse, append, parse again, atomic save with fsync, swap.
func BenchmarkAdd(b *testing.B) {
	path := filepath.Join(b.TempDir(), "keys.properties")
	if err := os.WriteFile(path, benchFile(100_000), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := OpenWith(path, Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer reportCPU(b)()
	for b.Loop() {
		if _, _, err := s.Add(Spec{Name: "Bench", Rooms: []string{"bench-*"}}); err != nil {
			b.Fatal(err)
		}
	}
}
