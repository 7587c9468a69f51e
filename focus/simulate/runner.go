package simulate

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig describes a load run: participants that each log in, ask for a
// conference, join if admitted, stay, and leave.
type LoadConfig struct {
	Account Account
	// Focus is the focus's address; default focus.<domain>.
	Focus string
	// MUC is the conference component; default conference.<domain>.
	MUC string
	// Rooms is how many rooms the participants spread over (round robin);
	// default 1. Rooms are named RoomPrefix-N.
	Rooms      int
	RoomPrefix string // default "sim"
	// Participants is how many participants to run in total; 0 means no
	// limit (then Duration must be set).
	Participants int
	// Duration stops starting new participants after this long; 0: no limit.
	Duration time.Duration
	// Rate is how many participants start per second; 0: as fast as
	// Concurrency allows.
	Rate float64
	// Concurrency caps participants alive at once; default 16.
	Concurrency int
	// Stay is how long an admitted participant stays in its room.
	Stay time.Duration
	// Keys are the valid keys to present, used round robin. Never logged or
	// printed: only fingerprints.
	Keys []string
	// InvalidRatio is the share (0..1) of the participants that ask for a
	// conference that present a wrong key instead; with no Keys every one
	// presents a wrong key.
	InvalidRatio float64
	// IntruderRatio is the share that skip the request and join directly,
	// as a modified client would; the room must refuse them.
	IntruderRatio float64
	// Form, Separator and Lowercase are as in Request.
	Form      KeyForm
	Separator string
	Lowercase bool
	// StepTimeout bounds each step (login, request, join, leave); default 10s.
	StepTimeout time.Duration
	// Progress gets one line a second while the run lasts; nil: none.
	Progress io.Writer
	Logger   *slog.Logger
}

// Latency summarises a set of durations.
type Latency struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

func (l Latency) String() string {
	if l.N == 0 {
		return "n=0"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)", fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.Max), l.N)
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}

func latencyOf(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return s[i]
	}
	return Latency{N: len(s), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: s[len(s)-1]}
}

// Summary is the outcome of a load run.
type Summary struct {
	Elapsed      time.Duration `json:"elapsed_ns"`
	Started      int           `json:"started"`
	Finished     int           `json:"finished"`
	LoginFailed  int           `json:"login_failed"`
	Admitted     int           `json:"admitted"`
	RequestError int           `json:"request_error"` // transport errors and timeouts
	// Refused counts refusals by "CODE condition" (just the condition when
	// there is no reservation-error code).
	Refused map[string]int `json:"refused"`
	// RefusedText counts refusals by the text the focus gave (what the user
	// reads: unknown key, expired, room not allowed, ...); at most 32
	// distinct texts, the rest under "(other)".
	RefusedText map[string]int `json:"refused_text"`
	// RefusedValid counts refusals of participants that presented a key from
	// Keys (expected when a key is scoped to other rooms, expired, full).
	RefusedValid int `json:"refused_valid"`
	// AdmittedInvalid counts wrong keys that were admitted: a gate failure.
	AdmittedInvalid int `json:"admitted_invalid"`
	Joined          int `json:"joined"`
	// JoinRefused counts refused joins by condition (registration-required, ...).
	JoinRefused map[string]int `json:"join_refused"`
	JoinError   int            `json:"join_error"`
	// Intruders is how many skipped the request; IntrudersIn how many of
	// them got into a room anyway (a gate failure).
	Intruders   int `json:"intruders"`
	IntrudersIn int `json:"intruders_in"`
	// Removed counts removals during the stay by MUC status (307, 321, 0
	// destroyed); RemovedReason by the reason given (at most 32 distinct).
	Removed       map[string]int `json:"removed"`
	RemovedReason map[string]int `json:"removed_reason"`
	// FocusLeft counts participants whose room's focus left while they were
	// in it (they leave then, as lib-jitsi-meet does).
	FocusLeft int `json:"focus_left"`
	// DiscoFailed counts disco#info queries to <focusjid>/focus that got an
	// error or no answer.
	DiscoFailed  int     `json:"disco_failed"`
	Disconnected int     `json:"disconnected"`
	Login        Latency `json:"login"`
	Request      Latency `json:"request"`
	Join         Latency `json:"join"`
	// KeyFingerprints are the fingerprints of the valid keys presented.
	KeyFingerprints []string `json:"key_fingerprints,omitempty"`
}

// WriteText writes the summary for people.
func (s *Summary) WriteText(w io.Writer) {
	rate := 0.0
	if s.Elapsed > 0 {
		rate = float64(s.Finished) / s.Elapsed.Seconds()
	}
	fmt.Fprintf(w, "participants  %d started, %d finished in %s (%.1f/s)\n", s.Started, s.Finished, s.Elapsed.Round(time.Millisecond), rate)
	if len(s.KeyFingerprints) > 0 {
		fmt.Fprintf(w, "keys          %s\n", strings.Join(s.KeyFingerprints, " "))
	}
	fmt.Fprintf(w, "login         %d failed; %s\n", s.LoginFailed, s.Login)
	fmt.Fprintf(w, "requests      %d admitted, %d refused, %d failed; %s\n", s.Admitted, sum(s.Refused), s.RequestError, s.Request)
	for _, k := range sortedKeys(s.Refused) {
		fmt.Fprintf(w, "  refused     %-40s %d\n", k, s.Refused[k])
		if strings.Contains(k, "remote-server-timeout") {
			fmt.Fprintln(w, "              (Prosody answered for the focus: is the focus connected?)")
		}
	}
	for _, k := range sortedKeys(s.RefusedText) {
		fmt.Fprintf(w, "    %5d  %q\n", s.RefusedText[k], k)
	}
	if s.RefusedValid > 0 {
		fmt.Fprintf(w, "  refused with a key from the keys file: %d\n", s.RefusedValid)
	}
	if s.AdmittedInvalid > 0 {
		fmt.Fprintf(w, "  !! WRONG KEYS ADMITTED: %d\n", s.AdmittedInvalid)
	}
	fmt.Fprintf(w, "joins         %d joined, %d refused, %d failed; %s\n", s.Joined, sum(s.JoinRefused), s.JoinError, s.Join)
	for _, k := range sortedKeys(s.JoinRefused) {
		fmt.Fprintf(w, "  refused     %-40s %d\n", k, s.JoinRefused[k])
	}
	if s.Intruders > 0 {
		fmt.Fprintf(w, "intruders     %d tried without a request, %d got in\n", s.Intruders, s.IntrudersIn)
	}
	if s.DiscoFailed > 0 {
		fmt.Fprintf(w, "  disco#info to the focus failed: %d\n", s.DiscoFailed)
	}
	fmt.Fprintf(w, "removed       %d", sum(s.Removed))
	for _, k := range sortedKeys(s.Removed) {
		fmt.Fprintf(w, "  status %s: %d", k, s.Removed[k])
	}
	fmt.Fprintln(w)
	for _, k := range sortedKeys(s.RemovedReason) {
		fmt.Fprintf(w, "    %5d  %q\n", s.RemovedReason[k], k)
	}
	if s.FocusLeft > 0 {
		fmt.Fprintf(w, "focus left    %d participants saw the focus leave their room\n", s.FocusLeft)
	}
	if s.Disconnected > 0 {
		fmt.Fprintf(w, "disconnected  %d\n", s.Disconnected)
	}
}

// WriteJSON writes the summary as one JSON object.
func (s *Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// InvalidKey returns a key that looks like a keyfocus key but is random.
func InvalidKey() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return "kf_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

type recorder struct {
	mu                   sync.Mutex
	s                    Summary
	login, request, join samples
	recent               []time.Duration // request RTTs since the previous progress line
	active               atomic.Int64
}

// maxSamples bounds the durations a run keeps per measure, so a long run
// (simulate --duration 24h) does not grow without end. Past it, samples are
// replaced at random (reservoir sampling): the quantiles stay unbiased
// estimates, while the count and the maximum stay exact.
const maxSamples = 1 << 16

type samples struct {
	keep []time.Duration
	n    int
	max  time.Duration
}

func (s *samples) add(d time.Duration) {
	s.n++
	s.max = max(s.max, d)
	if len(s.keep) < maxSamples {
		s.keep = append(s.keep, d)
		return
	}
	if i := mrand.IntN(s.n); i < maxSamples {
		s.keep[i] = d
	}
}

func (s *samples) latency() Latency {
	l := latencyOf(s.keep)
	if s.n > 0 {
		l.N, l.Max = s.n, s.max
	}
	return l
}

func (r *recorder) do(f func(s *Summary)) {
	r.mu.Lock()
	f(&r.s)
	r.mu.Unlock()
}

// Run runs the load until every participant is done, Duration has passed
// (then the running ones finish their stay) or ctx is cancelled (then they
// leave at once). It returns the summary in every case; the error says why
// the run could not start.
func Run(ctx context.Context, cfg LoadConfig) (*Summary, error) {
	if cfg.Account.Addr == "" || cfg.Account.Domain == "" {
		return nil, errors.New("simulate: load needs the c2s address and the domain")
	}
	if cfg.Participants <= 0 && cfg.Duration <= 0 {
		return nil, errors.New("simulate: load needs a participant count or a duration")
	}
	if cfg.InvalidRatio < 0 || cfg.InvalidRatio > 1 || cfg.IntruderRatio < 0 || cfg.IntruderRatio > 1 {
		return nil, errors.New("simulate: invalid and intruder ratios must be between 0 and 1")
	}
	if cfg.Rate < 0 {
		return nil, errors.New("simulate: rate must not be negative")
	}
	if cfg.Rooms <= 0 {
		cfg.Rooms = 1
	}
	if cfg.RoomPrefix == "" {
		cfg.RoomPrefix = "sim"
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = 10 * time.Second
	}
	if cfg.MUC == "" {
		cfg.MUC = "conference." + cfg.Account.Domain
	}
	if cfg.Focus == "" {
		cfg.Focus = "focus." + cfg.Account.Domain
	}
	if cfg.Form == "" {
		cfg.Form = FormProperty
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Account.Logger == nil {
		cfg.Account.Logger = cfg.Logger
	}
	rec := &recorder{s: Summary{Refused: map[string]int{}, RefusedText: map[string]int{}, JoinRefused: map[string]int{}, Removed: map[string]int{}, RemovedReason: map[string]int{}}}
	for _, k := range cfg.Keys {
		rec.s.KeyFingerprints = append(rec.s.KeyFingerprints, fingerprint(k))
	}

	begin := time.Now()
	startCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		startCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress == nil {
			return
		}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				rec.progress(cfg.Progress, time.Since(begin))
			}
		}
	}()

	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	var tick *time.Ticker
	if cfg.Rate > 0 {
		tick = time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
		defer tick.Stop()
	}
	requesters := 0
loop:
	for i := 0; cfg.Participants <= 0 || i < cfg.Participants; i++ {
		if tick != nil && i > 0 {
			select {
			case <-tick.C:
			case <-startCtx.Done():
				break loop
			}
		}
		select {
		case sem <- struct{}{}:
		case <-startCtx.Done():
			break loop
		}
		if startCtx.Err() != nil {
			<-sem
			break
		}
		// Spread intruders and wrong keys evenly rather than at random, so
		// small runs still have the asked-for mix.
		kind := kindValid
		switch {
		case mark(i, cfg.IntruderRatio):
			kind = kindIntruder
		case len(cfg.Keys) == 0 || mark(requesters, cfg.InvalidRatio):
			kind = kindInvalid
		}
		if kind != kindIntruder {
			requesters++
		}
		key := ""
		if kind == kindValid {
			key = cfg.Keys[i%len(cfg.Keys)]
		} else if kind == kindInvalid {
			key = InvalidKey()
		}
		rec.do(func(s *Summary) { s.Started++ })
		wg.Add(1)
		go func(i int, kind participantKind, key string) {
			defer wg.Done()
			defer func() { <-sem }()
			rec.active.Add(1)
			defer rec.active.Add(-1)
			runOne(ctx, cfg, rec, i, kind, key)
			rec.do(func(s *Summary) { s.Finished++ })
		}(i, kind, key)
	}
	wg.Wait()
	close(stopProgress)
	<-progressDone
	rec.mu.Lock()
	defer rec.mu.Unlock()
	s := rec.s
	s.Elapsed = time.Since(begin)
	s.Login, s.Request, s.Join = rec.login.latency(), rec.request.latency(), rec.join.latency()
	if cfg.Progress != nil {
		rec.progressLocked(cfg.Progress, s.Elapsed)
	}
	return &s, nil
}

const maxTexts = 32

// refusalKey is "CODE condition", or just the condition without a
// reservation-error code (e.g. Prosody's own remote-server-timeout).
func refusalKey(e *StanzaError) string {
	if e.Code == 0 {
		return e.Condition
	}
	return fmt.Sprintf("%d %s", e.Code, e.Condition)
}

// mark reports whether the i-th (from 0) of a series is one of the share
// ratio: floor((i+1)*ratio) steps up at i.
func mark(i int, ratio float64) bool {
	const eps = 1e-9
	return math.Floor(float64(i+1)*ratio+eps) > math.Floor(float64(i)*ratio+eps)
}

type participantKind int

const (
	kindValid participantKind = iota
	kindInvalid
	kindIntruder
)

func (r *recorder) progress(w io.Writer, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progressLocked(w, elapsed)
}

func (r *recorder) progressLocked(w io.Writer, elapsed time.Duration) {
	s := &r.s
	line := fmt.Sprintf("%5.0fs  started %d  active %d  admitted %d  refused %d  joined %d  join-refused %d  removed %d  errors %d",
		elapsed.Seconds(), s.Started, r.active.Load(), s.Admitted, sum(s.Refused), s.Joined, sum(s.JoinRefused), sum(s.Removed),
		s.LoginFailed+s.RequestError+s.JoinError+s.Disconnected)
	if len(r.recent) > 0 {
		line += "  req p50 " + fmtDur(latencyOf(r.recent).P50)
	}
	r.recent = r.recent[:0]
	fmt.Fprintln(w, line)
}

// redact hides the key in an error's text (in the room form the room JID,
// and so many error messages, carry it).
func redact(err error, key string) string {
	msg := err.Error()
	if key == "" {
		return msg
	}
	mask := "[key " + fingerprint(key) + "]"
	msg = strings.ReplaceAll(msg, key, mask)
	return strings.ReplaceAll(msg, strings.ToLower(key), mask)
}

func fingerprint(key string) string {
	return hashHex(key)[:8]
}

func runOne(ctx context.Context, cfg LoadConfig, rec *recorder, i int, kind participantKind, key string) {
	log := cfg.Logger
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, cfg.StepTimeout) }

	sctx, cancel := step()
	t0 := time.Now()
	p, err := Dial(sctx, cfg.Account)
	cancel()
	if err != nil {
		log.Debug("login failed", "participant", i, "err", redact(err, key))
		rec.do(func(s *Summary) { s.LoginFailed++ })
		return
	}
	rec.do(func(s *Summary) { rec.login.add(time.Since(t0)) })
	defer p.Close()

	room := fmt.Sprintf("%s-%d@%s", cfg.RoomPrefix, i%cfg.Rooms, cfg.MUC)
	nick := "sim-" + strconv.Itoa(i)
	focusJID := ""
	if kind != kindIntruder {
		req := Request{Room: room, Key: key, Form: cfg.Form, Separator: cfg.Separator, Lowercase: cfg.Lowercase, Focus: cfg.Focus}
		sctx, cancel := step()
		rep, err := p.RequestConference(sctx, req)
		cancel()
		if err != nil {
			log.Debug("conference request failed", "participant", i, "err", redact(err, key))
			rec.do(func(s *Summary) { s.RequestError++ })
			return
		}
		rec.do(func(s *Summary) {
			rec.request.add(rep.RTT)
			if len(rec.recent) < maxSamples {
				rec.recent = append(rec.recent, rep.RTT)
			}
			switch {
			case rep.Admitted():
				s.Admitted++
				if kind == kindInvalid {
					s.AdmittedInvalid++
				}
			case rep.Error != nil:
				s.Refused[refusalKey(rep.Error)]++
				text := rep.Error.Text
				if _, seen := s.RefusedText[text]; !seen && len(s.RefusedText) >= maxTexts {
					text = "(other)"
				}
				s.RefusedText[text]++
				if kind == kindValid {
					s.RefusedValid++
				}
			default:
				s.Refused["not-ready"]++
			}
		})
		if !rep.Admitted() {
			return
		}
		room = req.RoomJID()
		focusJID = rep.FocusJID
	} else {
		rec.do(func(s *Summary) { s.Intruders++ })
	}

	sctx, cancel = step()
	t1 := time.Now()
	_, err = p.Join(sctx, room, nick)
	cancel()
	var se *StanzaError
	switch {
	case errors.As(err, &se):
		rec.do(func(s *Summary) { s.JoinRefused[se.Condition]++ })
		return
	case err != nil:
		log.Debug("join failed", "participant", i, "err", redact(err, key))
		rec.do(func(s *Summary) { s.JoinError++ })
		return
	}
	rec.do(func(s *Summary) {
		rec.join.add(time.Since(t1))
		s.Joined++
		if kind == kindIntruder {
			s.IntrudersIn++
		}
	})

	// Right after joining, lib-jitsi-meet asks the focus what it supports.
	if focusJID != "" {
		sctx, cancel := step()
		if _, err := p.Disco(sctx, focusJID+"/focus"); err != nil {
			log.Debug("disco#info to the focus failed", "participant", i, "err", redact(err, key))
			rec.do(func(s *Summary) { s.DiscoFailed++ })
		}
		cancel()
	}

	stay := time.NewTimer(cfg.Stay)
	defer stay.Stop()
	goneCtx, cancelGone := context.WithCancel(ctx)
	defer cancelGone()
	type goneInfo struct {
		rem       *Removal
		focusLeft bool
	}
	gone := make(chan goneInfo, 1)
	go func() {
		if rem, fl, err := p.waitGone(goneCtx, room); err == nil {
			gone <- goneInfo{rem, fl}
		}
	}()
	select {
	case <-stay.C:
	case <-ctx.Done():
	case g := <-gone:
		if g.rem != nil {
			rec.do(func(s *Summary) {
				s.Removed[strconv.Itoa(g.rem.Status)]++
				reason := g.rem.Reason
				if _, seen := s.RemovedReason[reason]; !seen && len(s.RemovedReason) >= maxTexts {
					reason = "(other)"
				}
				s.RemovedReason[reason]++
			})
			return
		}
		// The focus left: lib-jitsi-meet ends the conference and leaves.
		rec.do(func(s *Summary) { s.FocusLeft++ })
	case <-p.Done():
		rec.do(func(s *Summary) { s.Disconnected++ })
		return
	}
	lctx, cancel := context.WithTimeout(context.Background(), cfg.StepTimeout)
	defer cancel()
	if err := p.Leave(lctx, room); err != nil {
		log.Debug("leave failed", "participant", i, "err", redact(err, key))
	}
}
