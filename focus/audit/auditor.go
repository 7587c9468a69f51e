package audit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/keys"
)

// Auditor writes the focus's side of the audit trail: admissions, refusals,
// members removed, rooms ended, and the key changes it sees through the key
// store's watch. It reads the focus's events from its own subscription, so a
// slow disk never slows the focus: when it falls behind it loses events and
// records how many.
//
// Key changes and who made them: a tool that edits the key file (keyfocus
// keys, the console, the ssh console) appends a KeyRecord naming the actor to
// the same audit file. When a reload shows a change, the Auditor looks for
// such a record among the lines appended since it last looked; if one matches
// (same kind, fingerprint and key file), the change is already on record. A
// change nobody claims within Grace is recorded with the actor Outside.
type Auditor struct {
	Log *Log
	// KeysPath is the key file the focus watches.
	KeysPath string
	// Snapshot returns the key store's current snapshot. Nil: key changes are
	// not audited by the focus (tools still record their own).
	Snapshot func() *keys.Snapshot
	// Grace is how long a change seen through the watch waits for the record
	// of the tool that made it (default 3s).
	Grace time.Duration
	// ClaimTTL is how long a tool's record can still match a change (default 2m).
	ClaimTTL time.Duration
	Logger   *slog.Logger
	// Buffer is the event subscription's buffer (default 4096).
	Buffer int
	// MaxRefusalsPerSecond caps the refusal records written per second
	// (default 100): a flood of guesses must not fill the disk. Refusals
	// over the cap are counted in one refusals_suppressed record a second.
	MaxRefusalsPerSecond int
}

type claimKey struct{ event, fp string }

type claim struct {
	at   time.Time
	keys string
}

type pendingChange struct {
	Change
	seen     time.Time
	deadline time.Time
}

// Run audits until ctx ends. It returns nil on cancellation; a write error is
// logged and the Auditor carries on (the next write may succeed).
func (a *Auditor) Run(ctx context.Context, src focus.Source) error {
	log := a.Logger
	if log == nil {
		log = slog.Default()
	}
	grace := a.Grace
	if grace <= 0 {
		grace = 3 * time.Second
	}
	ttl := a.ClaimTTL
	if ttl <= 0 {
		ttl = 2 * time.Minute
	}
	bufSize := a.Buffer
	if bufSize <= 0 {
		bufSize = 4096
	}
	maxRefused := a.MaxRefusalsPerSecond
	if maxRefused <= 0 {
		maxRefused = 100
	}
	var refusedSec int64 // the second refusals are being counted in
	var refusedN, suppressed int
	keysPath := CanonicalPath(a.KeysPath)
	fw := startFollowing(a.Log.Path())
	fw.only = []byte(`"key_`) // key_added/edited/revoked: the claims of tools, not our own records
	var base *keys.Snapshot
	if a.Snapshot != nil {
		base = a.Snapshot()
	}
	_, sub := src.Watch(bufSize)
	defer sub.Close()
	if base != nil {
		// Changes made while no focus was running cannot be attributed: say
		// what the focus started with.
		if err := a.Log.Write(Record{Event: StoreLoaded, Keys: keysPath, Count: base.Len(), Reason: "focus started"}); err != nil {
			log.Error("audit log write failed", "err", err)
		}
	}

	claims := map[claimKey][]claim{}
	var pending []pendingChange
	var dropped uint64
	var batch []Record
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	flush := time.NewTicker(time.Second) // writes the count of suppressed refusals
	defer flush.Stop()

	write := func() {
		if len(batch) == 0 {
			return
		}
		if err := a.Log.Write(batch...); err != nil {
			log.Error("audit log write failed; records lost", "records", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	// readClaims takes in the key-change records tools appended since last time.
	readClaims := func(now time.Time) {
		recs, err := fw.next()
		if err != nil {
			log.Warn("audit log: cannot read records of other tools", "err", err)
		}
		for _, r := range recs {
			switch r.Event {
			case KeyAdded, KeyEdited, KeyRevoked:
			default:
				continue
			}
			if r.Via == ViaWatch || r.Fingerprint == "" {
				continue
			}
			k := claimKey{r.Event, r.Fingerprint}
			claims[k] = append(claims[k], claim{at: now, keys: r.Keys})
		}
		for k, cs := range claims {
			i := 0
			for i < len(cs) && now.Sub(cs[i].at) > ttl {
				i++
			}
			if i == len(cs) {
				delete(claims, k)
			} else {
				claims[k] = cs[i:]
			}
		}
	}
	take := func(c Change) bool {
		k := claimKey{c.Kind, c.Fingerprint}
		cs := claims[k]
		for i, cl := range cs {
			if cl.keys == "" || keysPath == "" || cl.keys == keysPath {
				claims[k] = append(cs[:i:i], cs[i+1:]...)
				return true
			}
		}
		return false
	}
	// reconcile settles pending changes: claimed ones are on record already;
	// unclaimed ones past their deadline (or all, when final) are recorded
	// as made outside keyfocus.
	reconcile := func(now time.Time, final bool) {
		readClaims(now)
		kept := pending[:0]
		for _, p := range pending {
			switch {
			case take(p.Change):
			case final || !now.Before(p.deadline):
				batch = append(batch, Record{
					Time:        p.seen.UTC(),
					Event:       p.Kind,
					Actor:       Outside,
					Via:         ViaWatch,
					Keys:        keysPath,
					Fingerprint: p.Fingerprint,
					Client:      p.Client,
					Changed:     p.Changed,
				})
			default:
				kept = append(kept, p)
			}
		}
		pending = kept
		if len(pending) > 0 {
			next := pending[0].deadline
			for _, p := range pending[1:] {
				if p.deadline.Before(next) {
					next = p.deadline
				}
			}
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
	}
	storeChanged := func(now time.Time) {
		if a.Snapshot == nil {
			return
		}
		cur := a.Snapshot()
		changes := Diff(base, cur)
		base = cur
		for _, c := range changes {
			pending = append(pending, pendingChange{Change: c, seen: now, deadline: now.Add(grace)})
		}
		if len(changes) > 0 {
			reconcile(now, false)
		}
	}
	handle := func(ev focus.Event) {
		switch ev.Kind {
		case focus.EvAdmitted:
			if r := ev.Request; r != nil {
				batch = append(batch, Record{
					Time: ev.Time.UTC(), Event: Admitted, Requester: r.Requester, Room: r.Room,
					Fingerprint: r.Fingerprint, Client: r.Client,
					LatencyMS: float64(r.Latency.Microseconds()) / 1000,
				})
			}
		case focus.EvRefused:
			if sec := ev.Time.Unix(); sec != refusedSec {
				refusedSec, refusedN = sec, 0
			}
			if refusedN++; refusedN > maxRefused {
				suppressed++
				break
			}
			if r := ev.Rejection; r != nil {
				batch = append(batch, Record{
					Time: ev.Time.UTC(), Event: Refused, Requester: r.Requester, Room: r.Room,
					Reason: r.Reason, Code: r.Code, Fingerprint: r.Fingerprint,
				})
			}
		case focus.EvMemberRemoved, focus.EvMemberLeft:
			// A room ended by a revocation, an expiry or an operator lets
			// its members go with member_left events that carry the Actor:
			// those are removals too. Plain leaves are not audited.
			if ev.Kind == focus.EvMemberLeft && !removalActor(ev.Actor) {
				break
			}
			r := Record{Time: ev.Time.UTC(), Event: MemberRemoved, Room: ev.Room, Reason: ev.Reason, Actor: ev.Actor}
			if m := ev.Member; m != nil {
				r.Nick, r.Requester, r.Fingerprint, r.Client = m.Nick, m.JID, m.Fingerprint, m.Client
			}
			batch = append(batch, r)
		case focus.EvMembershipRevoked:
			r := Record{Time: ev.Time.UTC(), Event: MembershipRevoked, Room: ev.Room, Reason: ev.Reason, Actor: ev.Actor}
			if m := ev.Member; m != nil {
				r.Requester, r.Fingerprint, r.Client = m.JID, m.Fingerprint, m.Client
			}
			batch = append(batch, r)
		case focus.EvRoomEnded:
			batch = append(batch, Record{Time: ev.Time.UTC(), Event: RoomEnded, Room: ev.Room, Reason: ev.Reason, Actor: ev.Actor})
		case focus.EvStoreReloaded:
			storeChanged(ev.Time)
		}
	}

	for {
		select {
		case <-ctx.Done():
			// Take what is queued already, then record whatever change is
			// pending without a claim rather than lose it.
		rest:
			for {
				select {
				case ev, ok := <-sub.C:
					if !ok {
						break rest
					}
					handle(ev)
				default:
					break rest
				}
			}
			reconcile(time.Now(), true)
			if suppressed > 0 {
				batch = append(batch, Record{Event: RefusalsSuppressed, Count: suppressed,
					Reason: fmt.Sprintf("more than %d refusals a second; see keyfocus_conference_requests_total", maxRefused)})
			}
			write()
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				write()
				return nil
			}
			handle(ev)
			// Group commit: take what is already queued, then one write and
			// one fsync for all of it.
		drain:
			for len(batch) < 1024 {
				select {
				case ev, ok := <-sub.C:
					if !ok {
						break drain
					}
					handle(ev)
				default:
					break drain
				}
			}
			if d := sub.Dropped(); d > dropped {
				batch = append(batch, Record{Event: EventsDropped, Count: int(d - dropped),
					Reason: "audit log fell behind the focus; events lost"})
				dropped = d
			}
			write()
		case <-timer.C:
			reconcile(time.Now(), false)
			write()
		case <-flush.C:
			// Follow the file as it grows, so that a key change after a
			// long quiet time does not read everything appended since.
			readClaims(time.Now())
		}
		if suppressed > 0 && time.Now().Unix() != refusedSec {
			batch = append(batch, Record{Event: RefusalsSuppressed, Count: suppressed,
				Reason: fmt.Sprintf("more than %d refusals a second; see keyfocus_conference_requests_total", maxRefused)})
			suppressed = 0
			write()
		}
	}
}

func removalActor(a string) bool {
	switch a {
	case "revocation", "expiry", "operator":
		return true
	}
	return false
}

// OperatorSource wraps a focus.Source so that each operator action made
// through it is recorded with actor and via (ViaConsole, ViaSSH), whether it
// succeeded or not. The consoles get the wrapped Source.
func OperatorSource(src focus.Source, l *Log, actor, via string) focus.Source {
	return &operatorSource{Source: src, log: l, actor: actor, via: via}
}

type operatorSource struct {
	focus.Source
	log   *Log
	actor string
	via   string
}

func (o *operatorSource) record(action, room, nick, reason string, err error) {
	r := Record{Event: OperatorAction, Action: action, Actor: o.actor, Via: o.via, Room: room, Nick: nick, Reason: reason}
	if err != nil {
		r.Error = err.Error()
	}
	if werr := o.log.Write(r); werr != nil {
		slog.Error("audit log write failed", "action", action, "err", werr)
	}
}

func (o *operatorSource) RemoveMember(ctx context.Context, room, nick, reason string) error {
	err := o.Source.RemoveMember(ctx, room, nick, reason)
	o.record("remove_member", room, nick, reason, err)
	return err
}

func (o *operatorSource) EndRoom(ctx context.Context, room, reason string) error {
	err := o.Source.EndRoom(ctx, room, reason)
	o.record("end_room", room, "", reason, err)
	return err
}
