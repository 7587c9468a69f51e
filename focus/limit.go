package focus

import (
	"sync"
	"time"
)

// limiter holds the brute-force limits (PROTOCOL.md §3).
//
// Per requester (bare JID): after perJID failures within window, that
// requester gets 429 until its oldest failure leaves the window; the check
// comes before the key is looked at, so a guesser learns nothing more.
//
// Overall: more than perSecond failures in the last second is a flood. A
// flood only ever touches failures: every request is still checked, a valid
// key is admitted at once whoever else is guessing, and failed attempts are
// answered 429 after a delay (a tarpit that slows every guesser waiting for
// its answers, without holding anyone else up).
type limiter struct {
	perJID    int
	window    time.Duration
	perSecond int

	mu       sync.Mutex
	fails    map[string][]time.Time
	secStart time.Time
	secCount int
	prevSec  int
	floodTil time.Time
	logSec   time.Time
	logCount int
}

// maxTracked bounds the per-requester table; past it the oldest entries go.
const maxTracked = 100_000

func newLimiter(perJID int, window time.Duration, perSecond int) *limiter {
	return &limiter{perJID: perJID, window: window, perSecond: perSecond, fails: make(map[string][]time.Time)}
}

func (l *limiter) prune(bare string, now time.Time) []time.Time {
	ts := l.fails[bare]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= l.window {
		i++
	}
	if i == len(ts) {
		delete(l.fails, bare)
		return nil
	}
	if i > 0 {
		ts = append(ts[:0], ts[i:]...)
		l.fails[bare] = ts
	}
	return ts
}

// blocked returns how long bare must wait, or 0.
func (l *limiter) blocked(bare string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.prune(bare, now)
	if len(ts) >= l.perJID {
		return ts[len(ts)-l.perJID].Add(l.window).Sub(now)
	}
	return 0
}

// fail records a failure of bare and reports whether the server is in a flood.
func (l *limiter) fail(bare string, now time.Time) (flood bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) >= maxTracked {
		for k := range l.fails { // random eviction keeps this O(1)
			delete(l.fails, k)
			break
		}
	}
	ts := l.prune(bare, now)
	l.fails[bare] = append(ts, now)
	if now.Sub(l.secStart) >= time.Second {
		if now.Sub(l.secStart) < 2*time.Second {
			l.prevSec = l.secCount
		} else {
			l.prevSec = 0
		}
		l.secStart, l.secCount = now, 0
	}
	l.secCount++
	// Sliding estimate over the last second from two fixed buckets.
	frac := 1 - float64(now.Sub(l.secStart))/float64(time.Second)
	if float64(l.secCount)+float64(l.prevSec)*frac > float64(l.perSecond) {
		l.floodTil = now.Add(time.Second)
	}
	return now.Before(l.floodTil)
}

// logRefusal reports whether a refusal should be logged: at most 20 a second,
// so a flood cannot flood the log too (every refusal is still published).
func (l *limiter) logRefusal(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.logSec) >= time.Second {
		l.logSec, l.logCount = now, 0
	}
	l.logCount++
	return l.logCount <= 20
}
