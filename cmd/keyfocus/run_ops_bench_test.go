package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/audit"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
	"github.com/keyfocus/keyfocus/focus/simulate"
)

// BenchmarkOpsOverhead runs the same load (participants that log in, ask
// for a conference, join, leave; 1 in 5 with a wrong key) against
// `keyfocus run --headless` on a real Prosody with the operations side off
// (no HTTP, no audit log) and on (metrics, health, fsync'd audit log), and
// reports participants/s and the conference request's p50/p99. One
// iteration is one run of 200 participants.
func BenchmarkOpsOverhead(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			srv := prosodytest.Start(b)
			dir := b.TempDir()
			keysPath := filepath.Join(dir, "keys.properties")
			os.WriteFile(keysPath, []byte("kf_benchbenchbench=Bench\n"), 0o600)
			auditPath := filepath.Join(dir, "audit.jsonl")
			vars := map[string]string{
				"KEYFOCUS_XMPP_ADDR": srv.ComponentAddr, "KEYFOCUS_COMPONENT": srv.Component, "KEYFOCUS_MUC": srv.MUC,
				"KEYFOCUS_KEYS": keysPath, "KEYFOCUS_SECRET": srv.Secret, "KEYFOCUS_HEADLESS": "1", "KEYFOCUS_LOG_LEVEL": "warn",
			}
			if mode == "on" {
				vars["KEYFOCUS_HTTP"] = "127.0.0.1:0"
				vars["KEYFOCUS_AUDIT"] = auditPath
			}
			getenv := func(k string) string { return vars[k] }
			e := env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &syncBuffer{}, Getenv: getenv}
			sigs := make(chan chan<- os.Signal, 1)
			c := newRunCommand(e).(*runCommand)
			c.signals = func(ch chan<- os.Signal) { sigs <- ch }
			c.forceExit = func(int) {}
			r := &opsRun{done: make(chan error, 1)}
			// --http "" turns HTTP off, as --http off does.
			go func() { r.done <- c.Run(context.Background(), []string{"--http", vars["KEYFOCUS_HTTP"]}) }()
			r.sig = <-sigs
			defer r.stop()

			cfg := simulate.LoadConfig{
				Account: simulate.Account{Addr: srv.C2SAddr, Domain: srv.Domain}, Focus: srv.Component, MUC: srv.MUC,
				Rooms: 20, Participants: 200, Concurrency: 32, Keys: []string{"kf_benchbenchbench"}, InvalidRatio: 0.2,
			}
			// Wait until the focus answers: one participant admitted.
			deadline := time.Now().Add(30 * time.Second)
			for {
				one := cfg
				one.Participants, one.Concurrency, one.InvalidRatio = 1, 1, 0
				s, err := simulate.Run(context.Background(), one)
				if err == nil && s.Admitted == 1 {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("focus never admitted: %v %+v", err, s)
				}
			}
			var p50, p99 time.Duration
			var admitted int
			b.ResetTimer()
			for b.Loop() {
				s, err := simulate.Run(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				admitted += s.Admitted
				p50, p99 = max(p50, s.Request.P50), max(p99, s.Request.P99)
			}
			b.ReportMetric(float64(200*b.N)/b.Elapsed().Seconds(), "participants/s")
			b.ReportMetric(float64(p50.Microseconds())/1000, "req-p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "req-p99-ms")
			b.StopTimer()
			if admitted != 160*b.N {
				b.Errorf("admitted %d, want %d", admitted, 160*b.N)
			}
			if mode == "on" {
				recs, _ := audit.Tail(auditPath, 1<<20)
				dropped := 0
				for _, rec := range recs {
					if rec.Event == audit.EventsDropped {
						dropped += rec.Count
					}
				}
				b.ReportMetric(float64(dropped), "audit-dropped")
			}
		})
	}
}
