package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/internal/bare"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
)

func TestRunAgainstBare(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithOpenRoomCreation(), prosodytest.WithExtraComponents("bare.meet.example", "refuse.meet.example"))
	ctx := testCtx(t)
	b, err := bare.Start(ctx, bare.Config{Addr: s.ComponentAddr, Name: "bare.meet.example", Secret: s.Secret})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	startScripted(ctx, t, s, "refuse.meet.example", `<iq type='error' id='$ID' to='$TO' from='$FROM'><error type='cancel'>
		<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
		<reservation-error xmlns='http://jitsi.org/protocol/focus' error-code='403'/></error></iq>`)

	const secret = "kf_validkeyforload"
	tests := []struct {
		name  string
		cfg   LoadConfig
		check func(t *testing.T, s *Summary)
	}{
		{"bare admits everyone", LoadConfig{Focus: "bare.meet.example", Participants: 40, Rooms: 4, Concurrency: 8,
			Keys: []string{secret}, InvalidRatio: 0.25, IntruderRatio: 0.1, Form: FormRoom, Separator: "~", Lowercase: true},
			func(t *testing.T, s *Summary) {
				if s.Started != 40 || s.Finished != 40 || s.LoginFailed != 0 || s.RequestError != 0 {
					t.Errorf("counts: %+v", s)
				}
				if s.Intruders != 4 || s.IntrudersIn != 4 {
					t.Errorf("intruders %d in %d, want 4 and 4 (open MUC, no gate)", s.Intruders, s.IntrudersIn)
				}
				if s.Admitted != 36 || s.AdmittedInvalid != 9 {
					t.Errorf("admitted %d (invalid %d), want 36 (9): the bare component admits all", s.Admitted, s.AdmittedInvalid)
				}
				if s.Joined != 40 || s.Request.N != 36 || s.Join.N != 40 || s.Login.N != 40 {
					t.Errorf("joins/latencies: %+v", s)
				}
				if s.DiscoFailed != 0 {
					t.Errorf("disco#info to the bare focus failed %d times", s.DiscoFailed)
				}
				if s.Request.P50 <= 0 || s.Request.P50 > s.Request.P99 || s.Request.P99 > s.Request.Max {
					t.Errorf("request latency not ordered: %+v", s.Request)
				}
			}},
		{"refusals counted by code", LoadConfig{Focus: "refuse.meet.example", Participants: 12, Concurrency: 4, Rate: 1000,
			Keys: []string{secret}, InvalidRatio: 0.5},
			func(t *testing.T, s *Summary) {
				if s.Refused["403 service-unavailable"] != 12 || s.RefusedValid != 6 || s.Admitted != 0 || s.Joined != 0 {
					t.Errorf("refusals: %+v", s)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var progress bytes.Buffer
			tc.cfg.Account = Account{Addr: s.C2SAddr, Domain: s.Domain}
			tc.cfg.Progress = &progress
			sum, err := Run(ctx, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, sum)
			if !strings.Contains(progress.String(), "started") {
				t.Errorf("no progress line: %q", progress.String())
			}
			var text, js bytes.Buffer
			sum.WriteText(&text)
			if err := sum.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			for _, out := range []string{text.String(), js.String(), progress.String()} {
				if strings.Contains(out, secret) {
					t.Errorf("a key leaked into the output:\n%s", out)
				}
			}
			if !strings.Contains(text.String(), fingerprint(secret)) {
				t.Errorf("text summary lacks the key's fingerprint:\n%s", text.String())
			}
			var back Summary
			if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Started != sum.Started {
				t.Errorf("JSON round trip: %v %+v", err, back)
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithOpenRoomCreation(), prosodytest.WithExtraComponents("bare.meet.example"))
	ctx := testCtx(t)
	b, err := bare.Start(ctx, bare.Config{Addr: s.ComponentAddr, Name: "bare.meet.example", Secret: s.Secret})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan *Summary)
	go func() {
		// Unbounded count, an hour's stay: only the cancel ends it.
		sum, err := Run(runCtx, LoadConfig{Account: Account{Addr: s.C2SAddr, Domain: s.Domain}, Focus: "bare.meet.example",
			Duration: time.Hour, Stay: time.Hour, Concurrency: 4, Keys: []string{"k"}})
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	// Wait until a participant is in its room, then cancel.
	for b.Answered() < 4 {
		select {
		case <-ctx.Done():
			t.Fatal("no participant got admitted")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case sum := <-done:
		if sum.Started < 4 || sum.Finished != sum.Started {
			t.Errorf("after cancel: %+v", sum)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunConfigErrors(t *testing.T) {
	acc := Account{Addr: "127.0.0.1:1", Domain: "meet.example"}
	for _, cfg := range []LoadConfig{
		{Participants: 1},
		{Account: acc},
		{Account: acc, Participants: 1, InvalidRatio: 1.5},
		{Account: acc, Participants: 1, Rate: -1},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) accepted", cfg)
		}
	}
}

func TestLatencyOf(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, ms(i))
	}
	tests := []struct {
		in   []time.Duration
		want Latency
	}{
		{nil, Latency{}},
		{[]time.Duration{ms(5)}, Latency{N: 1, P50: ms(5), P90: ms(5), P99: ms(5), Max: ms(5)}},
		{ds, Latency{N: 100, P50: ms(50), P90: ms(90), P99: ms(99), Max: ms(100)}},
	}
	for _, tc := range tests {
		if got := latencyOf(tc.in); got != tc.want {
			t.Errorf("latencyOf(%d values) = %+v, want %+v", len(tc.in), got, tc.want)
		}
	}
}

// A long run keeps at most maxSamples durations per measure; the count and
// the maximum stay exact and the quantiles close (uniform 1..10ms here).
func TestSamplesAreBounded(t *testing.T) {
	var s samples
	const n = 4 * maxSamples
	for i := range n {
		d := time.Duration(1+i%10) * time.Millisecond
		if i == n/2 {
			d = time.Second
		}
		s.add(d)
	}
	if len(s.keep) != maxSamples {
		t.Fatalf("kept %d samples, want %d", len(s.keep), maxSamples)
	}
	l := s.latency()
	if l.N != n || l.Max != time.Second {
		t.Errorf("latency = %+v, want N=%d and Max=1s", l, n)
	}
	if l.P50 < 4*time.Millisecond || l.P50 > 6*time.Millisecond || l.P90 < 8*time.Millisecond || l.P90 > 10*time.Millisecond {
		t.Errorf("quantiles off: %+v", l)
	}
	if (&samples{}).latency() != (Latency{}) {
		t.Error("no samples is not the zero Latency")
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		err  string
		key  string
		want string
	}{
		{"join kf_AbC=room@conference.meet.example: timeout", "kf_AbC", "join [key " + fingerprint("kf_AbC") + "]=room@conference.meet.example: timeout"},
		{"join kf_abc=room@conference.meet.example: timeout", "kf_AbC", "join [key " + fingerprint("kf_AbC") + "]=room@conference.meet.example: timeout"},
		{"no key here", "", "no key here"},
	}
	for _, tc := range tests {
		if got := redact(errors.New(tc.err), tc.key); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
