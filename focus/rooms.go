package focus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/keyfocus/keyfocus/keys"
)

// admission is one requester granted membership of a room.
type admission struct {
	JID         string    `json:"jid"` // bare JID
	KeyID       string    `json:"key_id"`
	Fingerprint string    `json:"fingerprint"`
	Client      string    `json:"client"`
	Scope       string    `json:"scope"` // the room name the key's rooms patterns are matched against
	Time        time.Time `json:"time"`
	joined      bool      // seen in the room since it was granted
}

// room is one room the focus manages. Guarded by Focus.mu.
type room struct {
	jid     string // bare room JID, lower case
	local   string
	created time.Time
	ready   bool // joined and configured on the current connection
	joined  bool // our self-presence came back

	waiters  []*pendingReq
	members  map[string]*Member    // by nick
	admitted map[string]*admission // by bare JID
	removing map[string]removal    // nicks we are removing, by nick
	stale    map[string]bool       // members not yet seen again after a rejoin
	revoked  map[string]time.Time  // bare JIDs whose membership the focus removed, when (bounded, see noteRevoked)
	revGen   map[string]uint64     // the latest removal of each JID in revoked (see confirmRevoked)
	gen      uint64
	timer    *time.Timer // empty-room grace
	ending   bool
}

type removal struct{ actor, reason string }

// Bounds of room.revoked: a removal is remembered long enough for any re-join
// and member-list read in flight to be over, and a room remembers at most
// maxRevoked of them (the oldest go first).
const (
	revokedTTL = 10 * time.Minute
	maxRevoked = 1024
)

// noteRevoked remembers that bare's membership was just removed, so a member
// list read or a grant written around the same time cannot bring it back.
// A removal stays pending (remembered without a time limit) until Prosody
// confirms it (confirmRevoked); from then on it is remembered for
// revokedTTL. A removal lost with its connection thus stays known, and is
// sent again (see removals.go).
//
// It returns the removal's generation: only the answer to the latest
// removal of bare confirms it.
func (r *room) noteRevoked(bare string, now time.Time) uint64 {
	if r.revoked == nil {
		r.revoked = make(map[string]time.Time)
		r.revGen = make(map[string]uint64)
	}
	if _, ok := r.revoked[bare]; !ok && len(r.revoked) >= maxRevoked {
		oldest, ot := "", time.Time{}
		for b, t := range r.revoked {
			if t.IsZero() {
				continue // pending: never dropped for its age
			}
			if now.Sub(t) > revokedTTL {
				delete(r.revoked, b)
				delete(r.revGen, b)
				continue
			}
			if oldest == "" || t.Before(ot) {
				oldest, ot = b, t
			}
		}
		if len(r.revoked) >= maxRevoked {
			if oldest == "" { // every one pending: the bound wins
				for b := range r.revoked {
					oldest = b
					break
				}
			}
			delete(r.revoked, oldest)
			delete(r.revGen, oldest)
		}
	}
	r.gen++
	r.revoked[bare] = time.Time{}
	r.revGen[bare] = r.gen
	return r.gen
}

// confirmRevoked records that Prosody applied the removal of bare's
// membership of generation gen (0: whichever is latest) at now: it is
// remembered for revokedTTL from then on. The answer to an older removal
// confirms nothing: a newer one may still be on its way.
func (r *room) confirmRevoked(bare string, gen uint64, now time.Time) bool {
	if gen != 0 && r.revGen[bare] != gen {
		return false
	}
	if t, ok := r.revoked[bare]; ok && t.IsZero() {
		r.revoked[bare] = now
		return true
	}
	return false
}

// recentlyRevoked reports whether bare's membership was removed by the focus
// and the removal is not confirmed yet, or was confirmed within revokedTTL.
func (r *room) recentlyRevoked(bare string, now time.Time) bool {
	t, ok := r.revoked[bare]
	return ok && (t.IsZero() || now.Sub(t) <= revokedTTL)
}

func newRoom(jid, local string, now time.Time) *room {
	return &room{
		jid: jid, local: local, created: now,
		members:  make(map[string]*Member),
		admitted: make(map[string]*admission),
		removing: make(map[string]removal),
	}
}

func (r *room) view() Room {
	v := Room{Name: r.jid, Created: r.created, Members: make([]Member, 0, len(r.members))}
	for _, m := range r.members {
		v.Members = append(v.Members, *m)
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Joined.Before(v.Members[j].Joined) })
	return v
}

func (r *room) stopTimer() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// pendingJoin is how long an admission that was not followed by a join still
// holds a max-participants slot.
const pendingJoin = time.Minute

// inRoomWithKey counts people in the room admitted with keyID, plus recent
// admissions not yet followed by a join and requests waiting for the room to
// be set up (so parallel requests cannot overshoot). except (a bare JID) is
// not counted: asking again does not take a second slot.
func (r *room) inRoomWithKey(keyID, except string, now time.Time) int {
	n := 0
	counted := make(map[string]bool)
	for _, m := range r.members {
		bare := bareOf(m.JID)
		if a := r.admitted[bare]; a != nil && a.KeyID == keyID && bare != except && !counted[bare] {
			n++
			counted[bare] = true
		}
	}
	for bare, a := range r.admitted {
		if a.KeyID == keyID && !a.joined && !counted[bare] && bare != except && now.Sub(a.Time) < pendingJoin {
			n++
			counted[bare] = true
		}
	}
	for _, w := range r.waiters {
		if w.adm.KeyID == keyID && !counted[w.adm.JID] && w.adm.JID != except {
			n++
			counted[w.adm.JID] = true
		}
	}
	return n
}

func bareOf(full string) string {
	if i := strings.IndexByte(full, '/'); i >= 0 {
		return strings.ToLower(full[:i])
	}
	return strings.ToLower(full)
}

// Stanza builders.

func (f *Focus) joinPresence(r *room) *xmppEl {
	return newEl("", "presence", "from", f.cfg.Component+"/"+Nick, "to", r.jid+"/"+Nick).
		Add(newEl(nsMUC, "x"))
}

func (f *Focus) configIQ(r *room) *xmppEl {
	field := func(v, val string) *xmppEl {
		return newEl("", "field", "var", v).Add(newEl("", "value").SetText(val))
	}
	return newEl("", "iq", "type", "set", "from", f.cfg.Component+"/"+Nick, "to", r.jid).Add(
		newEl(nsMUCOwner, "query").Add(
			newEl(nsData, "x", "type", "submit").Add(
				newEl("", "field", "var", "FORM_TYPE", "type", "hidden").Add(newEl("", "value").SetText("http://jabber.org/protocol/muc#roomconfig")),
				field("muc#roomconfig_membersonly", "1"),
				field("muc#roomconfig_whois", "anyone"),
			)))
}

func (f *Focus) affiliationIQ(r *room, bare, affiliation, reason string) *xmppEl {
	item := newEl("", "item", "affiliation", affiliation, "jid", bare)
	if reason != "" {
		item.Add(newEl("", "reason").SetText(reason))
	}
	return newEl("", "iq", "type", "set", "from", f.cfg.Component+"/"+Nick, "to", r.jid).Add(
		newEl(nsMUCAdmin, "query").Add(item))
}

// kickIQ sets role none with a reason (status 307, which clients show). It
// must come from the full JID that joined.
func (f *Focus) kickIQ(r *room, nick, reason string) *xmppEl {
	return newEl("", "iq", "type", "set", "from", f.cfg.Component+"/"+Nick, "to", r.jid).Add(
		newEl(nsMUCAdmin, "query").Add(
			newEl("", "item", "nick", nick, "role", "none").Add(newEl("", "reason").SetText(reason))))
}

func (f *Focus) destroyIQ(r *room, reason string) *xmppEl {
	return newEl("", "iq", "type", "set", "from", f.cfg.Component+"/"+Nick, "to", r.jid).Add(
		newEl(nsMUCOwner, "query").Add(
			newEl("", "destroy").Add(newEl("", "reason").SetText(reason))))
}

// logIQResult tracks iq on c and logs it if it fails.
func (f *Focus) logIQResult(c *conn, iq *xmppEl, what string, attrs ...any) {
	c.track(iq, func(_ *xmppEl, err error) {
		if err != nil && err != errDisconnected {
			f.log.Warn(what+" failed", append(attrs, "err", err)...)
		}
	})
}

// setupRoom joins (creating if needed) and configures r, grants membership
// to every valid admission, then answers the requests waiting for it. All of
// it goes to Prosody in one write: the room is members-only before any other
// stanza can reach it.
func (f *Focus) setupRoom(c *conn, r *room, fresh bool) {
	defer f.creating.Done()
	f.mu.Lock()
	if !fresh && (f.rooms[r.jid] != r || r.ending) {
		// Ended while it waited for its turn to be joined again.
		f.mu.Unlock()
		return
	}
	snap := f.snap
	now := f.now()
	out := []*xmppEl{f.joinPresence(r)}
	cfg := f.configIQ(r)
	out = append(out, cfg)
	var grants []*xmppEl
	granted := make(map[string]*admission)
	for bare, a := range r.admitted {
		if a.KeyID != "" {
			if e := snap.ByID(a.KeyID); e == nil || e.Expired(now) || !e.AllowsRoom(a.Scope) {
				continue // enforce will drop it
			}
		}
		g := f.affiliationIQ(r, bare, "member", "")
		f.logIQResult(c, g, "re-granting membership", "room", f.logRoom(r.jid), "jid", bare)
		grants = append(grants, g)
		granted[bare] = a
	}
	waiters := r.waiters
	r.waiters = nil
	type wg struct {
		w  *pendingReq
		ch chan error
	}
	var wgs []wg
	for _, w := range waiters {
		ch := make(chan error, 1)
		if prev := r.admitted[w.adm.JID]; prev != nil && prev.KeyID == w.adm.KeyID {
			ch <- nil // its grant is among the re-grants above
		} else {
			r.admitted[w.adm.JID] = w.adm
			g := f.affiliationIQ(r, w.adm.JID, "member", "")
			c.track(g, func(_ *xmppEl, err error) { ch <- err })
			grants = append(grants, g)
			granted[w.adm.JID] = w.adm
		}
		wgs = append(wgs, wg{w, ch})
	}
	f.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cfgRes := make(chan error, 1)
	c.track(cfg, func(_ *xmppEl, err error) { cfgRes <- err })
	out = append(out, grants...)
	err := c.send(ctx, out...)
	if err == nil {
		select {
		case err = <-cfgRes:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	// Each waiter needs its own grant applied before it hears "ready".
	var admitted, refused []*pendingReq
	for _, x := range wgs {
		gerr := err
		if gerr == nil {
			select {
			case gerr = <-x.ch:
			case <-ctx.Done():
				gerr = ctx.Err()
			}
		}
		if gerr != nil {
			f.log.Warn("granting membership failed", "room", f.logRoom(r.jid), "jid", x.w.adm.JID, "err", gerr)
			refused = append(refused, x.w)
		} else {
			admitted = append(admitted, x.w)
		}
	}

	f.mu.Lock()
	// A revocation decided while these grants were on their way went out in
	// its own write, possibly ahead of them: remove those memberships again,
	// now that the grants are behind us on the wire.
	replies := f.reRevokeLocked(c, r, granted)
	for _, w := range refused {
		if r.admitted[w.adm.JID] == w.adm {
			delete(r.admitted, w.adm.JID)
		}
		replies = append(replies, f.setupFailedReplyLocked(w, err))
	}
	if err != nil {
		f.log.Error("could not set up room", "room", f.logRoom(r.jid), "err", err)
		if fresh && len(r.members) == 0 && f.rooms[r.jid] == r {
			delete(f.rooms, r.jid)
		}
		// Requests that queued meanwhile fail too.
		for _, w := range r.waiters {
			replies = append(replies, f.setupFailedReplyLocked(w, err))
		}
		r.waiters = nil
		f.mu.Unlock()
		_ = c.send(context.Background(), replies...)
		return
	}
	r.ready = true
	if fresh {
		f.log.Info("room opened", "room", f.logRoom(r.jid))
		f.publishLocked(Event{Kind: EvRoomOpened, Room: r.jid})
	} else {
		go f.resync(c, r)
	}
	for _, w := range admitted {
		replies = append(replies, f.admittedLocked(r, w))
	}
	// Requests that arrived while the room was being set up.
	late := r.waiters
	r.waiters = nil
	var lateOut []*xmppEl
	for _, w := range late {
		lateOut = append(lateOut, f.grantAndReplyLocked(c, r, w)...)
	}
	if len(r.members) == 0 && len(r.stale) == 0 {
		f.armEmptyTimerLocked(r)
	}
	f.markDirty()
	f.mu.Unlock()
	_ = c.send(context.Background(), append(replies, lateOut...)...)
}

// setupFailedReplyLocked answers a request whose room could not be set up.
// A name Prosody refuses for a room (its strict nodeprep) is a bad request;
// anything else is worth a retry.
func (f *Focus) setupFailedReplyLocked(w *pendingReq, err error) *xmppEl {
	echo := newEl(nsFocus, "conference", "room", w.iq.First().Get("room"))
	var ie *iqError
	if errors.As(err, &ie) && ie.Condition == "jid-malformed" {
		f.recordRefusalLocked(Rejection{Time: f.now(), Requester: w.iq.Get("from"), Room: w.iq.First().Get("room"), Reason: ReasonBadRequest, Fingerprint: w.adm.Fingerprint})
		return errorReply(w.iq, "modify", "bad-request", "This room name is not valid on this server", echo)
	}
	return errorReply(w.iq, "wait", "service-unavailable", "The conference could not be set up. Please Retry", echo)
}

// grantAndReplyLocked admits w to the ready room r: a new member gets the
// grant and the reply in one write (Prosody applies the grant before it
// routes the reply, and the client only joins after the reply); someone
// already a member gets the reply alone.
func (f *Focus) grantAndReplyLocked(c *conn, r *room, w *pendingReq) []*xmppEl {
	var out []*xmppEl
	prev := r.admitted[w.adm.JID]
	if prev == nil {
		r.admitted[w.adm.JID] = w.adm
		g := f.affiliationIQ(r, w.adm.JID, "member", "")
		f.trackGrant(c, r, w.adm, g)
		out = append(out, g)
		f.markDirty()
	} else if prev.KeyID != w.adm.KeyID {
		w.adm.joined = prev.joined
		r.admitted[w.adm.JID] = w.adm
		f.markDirty()
	}
	out = append(out, f.admittedLocked(r, w))
	return out
}

// trackGrant follows the grant g of adm's membership in r. Once Prosody has
// applied it, a revocation written while it was under way may have reached
// Prosody first, so the membership is removed again (reRevokeLocked). If it
// fails, the admission goes: without the grant Prosody refuses the join, and
// the requester must ask again (fails closed). It never takes f.mu before the
// answer arrives, so it may be called with f.mu held.
func (f *Focus) trackGrant(c *conn, r *room, adm *admission, g *xmppEl) {
	c.track(g, func(_ *xmppEl, err error) {
		if err == errDisconnected {
			return
		}
		if err == nil {
			f.mu.Lock()
			again := f.reRevokeLocked(c, r, map[string]*admission{adm.JID: adm})
			f.mu.Unlock()
			if len(again) > 0 {
				go func() { _ = c.send(context.Background(), again...) }()
			}
			return
		}
		f.log.Warn("granting membership failed; the requester cannot join", "room", f.logRoom(r.jid), "jid", adm.JID, "fingerprint", adm.Fingerprint, "err", err)
		f.mu.Lock()
		if r.admitted[adm.JID] == adm {
			delete(r.admitted, adm.JID)
			f.markDirty()
		}
		f.mu.Unlock()
	})
}

// reRevokeLocked returns an affiliation change to none for every bare JID in
// granted that has no admission any more because the focus revoked it: the
// grant was built before the revocation, and the revocation, sent in its own
// immediate write, may have reached Prosody before the grant. Sent after the
// grant has been written, the removal is last on the wire and stands.
func (f *Focus) reRevokeLocked(c *conn, r *room, granted map[string]*admission) []*xmppEl {
	now := f.now()
	var out []*xmppEl
	for bare := range granted {
		if r.admitted[bare] != nil || !r.recentlyRevoked(bare, now) {
			continue
		}
		f.log.Info("removing membership again: a grant written around its revocation", "room", f.logRoom(r.jid), "jid", bare)
		aff := f.affiliationIQ(r, bare, "none", "Your client key is no longer valid")
		f.trackRemoval(c, r, aff, bare, r.noteRevoked(bare, now), "removing membership")
		f.markDirty() // pending again: into the state file
		out = append(out, aff)
	}
	return out
}

// admittedLocked publishes an admission and returns the ready reply.
func (f *Focus) admittedLocked(r *room, w *pendingReq) *xmppEl {
	if len(r.members) == 0 {
		// Nobody is in yet: the grace runs from the last admission, so a
		// room whose admitted requesters never join still ends.
		f.armEmptyTimerLocked(r)
	}
	lat := time.Since(w.start)
	f.publishLocked(Event{Kind: EvAdmitted, Room: r.jid, Request: &Admission{
		Time: f.now(), Requester: w.iq.Get("from"), Room: r.jid,
		Fingerprint: w.adm.Fingerprint, Client: w.adm.Client, Latency: lat,
	}})
	f.log.Info("admitted", "room", f.logRoom(r.jid), "requester", w.iq.Get("from"), "fingerprint", w.adm.Fingerprint, "client", w.adm.Client)
	return f.readyReply(w.iq, r.jid)
}

func (f *Focus) armEmptyTimerLocked(r *room) {
	r.stopTimer()
	r.timer = time.AfterFunc(f.cfg.EmptyRoomGrace, func() {
		f.mu.Lock()
		if f.rooms[r.jid] != r || len(r.members) > 0 || r.ending || !r.ready {
			f.mu.Unlock()
			return
		}
		c := f.conn
		out := f.endRoomLocked(c, r, "The conference ended: everyone left", "empty")
		f.mu.Unlock()
		if c != nil {
			_ = c.send(context.Background(), out...)
		}
	})
}

// endRoomLocked forgets r and returns the destroy stanza.
func (f *Focus) endRoomLocked(c *conn, r *room, reason, actor string) []*xmppEl {
	r.ending = true
	r.stopTimer()
	delete(f.rooms, r.jid)
	f.keepEndedRemovalsLocked(r)
	for nick, m := range r.members {
		if rm, ok := r.removing[nick]; ok {
			// Being removed in the same write (the revocation that ends the room).
			f.publishLocked(Event{Kind: EvMemberRemoved, Room: r.jid, Member: ptr(*m), Reason: rm.reason, Actor: rm.actor})
		} else {
			f.publishLocked(Event{Kind: EvMemberLeft, Room: r.jid, Member: ptr(*m), Reason: "removed", Actor: actor})
		}
		delete(r.members, nick)
	}
	f.publishLocked(Event{Kind: EvRoomEnded, Room: r.jid, Reason: reason, Actor: actor})
	f.log.Info("room ended", "room", f.logRoom(r.jid), "reason", reason, "by", actor)
	f.markDirty()
	if c == nil {
		return nil
	}
	d := f.destroyIQ(r, reason)
	f.noteDestroyLocked(r.jid, reason)
	f.trackDestroy(c, r.jid, d)
	return []*xmppEl{d}
}

// handlePresence tracks occupants of managed rooms.
func (f *Focus) handlePresence(c *conn, el *xmppEl) {
	from := el.Get("from")
	slash := strings.IndexByte(from, '/')
	if slash < 0 {
		return
	}
	roomJID, nick := from[:slash], from[slash+1:]
	if at := strings.LastIndexByte(roomJID, '@'); at > 0 {
		roomJID = normLocal(roomJID[:at]) + "@" + strings.ToLower(roomJID[at+1:])
	}
	typ := el.Get("type")
	x := el.Child(nsMUCUser, "x")
	item := x.Child("", "item")
	codes := map[string]bool{}
	for _, s := range x.All("", "status") {
		codes[s.Get("code")] = true
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.rooms[roomJID]
	if r == nil {
		return
	}
	now := f.now()
	self := nick == Nick && (codes["110"] || strings.EqualFold(item.Get("jid"), f.cfg.Component+"/"+Nick) || typ == "error")
	if self {
		switch typ {
		case "error":
			f.log.Warn("joining room failed", "room", f.logRoom(r.jid), "err", stanzaError(el))
		case "unavailable":
			if !r.ending && !f.draining && f.conn == c {
				f.log.Warn("the focus was removed from the room; forgetting it", "room", f.logRoom(r.jid), "destroyed", el.Child(nsMUCUser, "x").Child("", "destroy") != nil)
				f.endRoomLocked(nil, r, "The focus was removed from the room", "prosody")
			}
		default:
			r.joined = true
			if codes["201"] {
				f.log.Debug("room created", "room", f.logRoom(r.jid))
			}
			for nick := range r.stale {
				m := r.members[nick]
				if m == nil {
					continue
				}
				delete(r.members, nick)
				if rm, ok := r.removing[nick]; ok {
					// Revoked while the focus was away from the room: the
					// change to none took them out before it came back.
					delete(r.removing, nick)
					f.publishLocked(Event{Kind: EvMemberRemoved, Room: r.jid, Member: m, Reason: rm.reason, Actor: rm.actor})
				} else {
					f.publishLocked(Event{Kind: EvMemberLeft, Room: r.jid, Member: m, Reason: "lost"})
				}
			}
			r.stale = nil
			if len(r.members) == 0 && r.ready {
				f.armEmptyTimerLocked(r)
			}
		}
		return
	}
	if typ == "error" {
		return
	}
	real := item.Get("jid")
	if typ == "unavailable" {
		m := r.members[nick]
		if m == nil {
			return
		}
		delete(r.members, nick)
		delete(r.stale, nick)
		reason := "left"
		switch {
		case codes["307"]:
			reason = "kicked"
		case codes["321"], codes["301"]:
			reason = "removed"
		case codes["333"]:
			reason = "lost"
		}
		if rm, ok := r.removing[nick]; ok {
			delete(r.removing, nick)
			f.publishLocked(Event{Kind: EvMemberRemoved, Room: r.jid, Member: m, Reason: rm.reason, Actor: rm.actor})
		} else {
			f.publishLocked(Event{Kind: EvMemberLeft, Room: r.jid, Member: m, Reason: reason})
		}
		if len(r.members) == 0 && r.ready && !r.ending {
			f.armEmptyTimerLocked(r)
		}
		return
	}
	role := item.Get("role")
	if m := r.members[nick]; m != nil {
		delete(r.stale, nick)
		m.Role = role
		if real != "" {
			m.JID = real
		}
		return
	}
	m := &Member{Nick: nick, JID: real, Role: role, Joined: now}
	if a := r.admitted[bareOf(real)]; a != nil {
		a.joined = true
		m.KeyID, m.Fingerprint, m.Client = a.KeyID, a.Fingerprint, a.Client
	}
	r.members[nick] = m
	r.stopTimer()
	f.publishLocked(Event{Kind: EvMemberJoined, Room: r.jid, Member: ptr(*m)})
}

// enforceLocked re-checks every admission against the snapshot in force and
// removes everyone whose key is gone, expired or no longer allowed in that
// room; rooms left with only the focus are ended. It also arms the timer of
// the next expiry. The removals go out in their own write, at once.
func (f *Focus) enforceLocked(actor string) {
	c, out := f.enforceCollectLocked(actor)
	if len(out) > 0 && c != nil {
		go func() {
			if err := c.send(context.Background(), out...); err != nil {
				f.log.Warn("sending revocations failed; they are applied again after the reconnect", "err", err)
			}
		}()
	}
}

// enforceCollectLocked is enforceLocked without the write: it returns the
// connection and the stanzas to send on it.
//
// A removal never waits for its room to be ready (joined and configured on
// the current connection): Prosody checks affiliation changes by bare JID
// and the component is a MUC admin, so the change to none is accepted from
// outside the room, and in a members-only room it takes the occupant out at
// once (status 321). The kick with a reason (status 307, which clients
// show) must come from the focus's occupant, so it goes along only where the
// focus is in the room and the member was seen there on this connection.
// Only while disconnected do removals wait: the admission is kept and
// enforcement looks again shortly.
func (f *Focus) enforceCollectLocked(actor string) (*conn, []*xmppEl) {
	snap := f.snap
	now := f.now()
	c := f.conn
	var out []*xmppEl
	var next time.Time
	retry := false
	for _, r := range f.rooms {
		if r.ending {
			continue
		}
		var roomOut []*xmppEl
		removedAny := false
		for bare, a := range r.admitted {
			if a.KeyID == "" {
				continue // admitted before a lost state file: key unknown
			}
			e := snap.ByID(a.KeyID)
			why, who := revocationReason(e, a, now, actor)
			if why == "" {
				if !e.Expires.IsZero() && (next.IsZero() || e.Expires.Before(next)) {
					next = e.Expires
				}
				continue
			}
			if c == nil {
				// Not connected: Prosody still holds this membership (a key
				// revoked while the focus is down). Keep the admission and
				// look again shortly, so the removal goes out on connecting.
				retry = true
				continue
			}
			if who == "expiry" && (e == nil || !e.Expired(now)) {
				who = "revocation" // a retry of a revocation runs on the expiry timer
			}
			delete(r.admitted, bare)
			gen := r.noteRevoked(bare, now)
			f.markDirty()
			removedAny = true
			f.log.Info("revoking membership", "room", f.logRoom(r.jid), "jid", bare, "fingerprint", a.Fingerprint, "client", a.Client, "reason", why, "room_ready", r.ready)
			seen := false
			for nick, m := range r.members {
				if bareOf(m.JID) != bare {
					continue
				}
				seen = true
				r.removing[nick] = removal{actor: who, reason: why}
				if r.joined && !r.stale[nick] {
					k := f.kickIQ(r, nick, why)
					f.logIQResult(c, k, "kicking", "room", f.logRoom(r.jid), "nick", nick)
					roomOut = append(roomOut, k)
				}
			}
			if !seen {
				f.publishLocked(Event{Kind: EvMembershipRevoked, Room: r.jid, Reason: why, Actor: who,
					Member: &Member{JID: bare, KeyID: a.KeyID, Fingerprint: a.Fingerprint, Client: a.Client}})
			}
			aff := f.affiliationIQ(r, bare, "none", why)
			f.trackRemoval(c, r, aff, bare, gen, "removing membership")
			roomOut = append(roomOut, aff)
		}
		if removedAny && r.ready {
			left := 0
			for nick := range r.members {
				if _, going := r.removing[nick]; !going {
					left++
				}
			}
			if left == 0 {
				roomOut = append(roomOut, f.endRoomLocked(c, r, "The conference ended: its keys were revoked", actor)...)
			}
		}
		out = append(out, roomOut...)
	}
	if f.expiry != nil {
		f.expiry.Stop()
		f.expiry, f.expiryAt = nil, time.Time{}
	}
	f.armExpiryLocked(next)
	if retry {
		f.armExpiryLocked(now.Add(250 * time.Millisecond))
	}
	return c, out
}

// armExpiryLocked makes sure enforcement runs again at t (zero: never), unless
// it is already due earlier.
func (f *Focus) armExpiryLocked(t time.Time) {
	if t.IsZero() || (!f.expiryAt.IsZero() && !t.Before(f.expiryAt)) {
		return
	}
	if f.expiry != nil {
		f.expiry.Stop()
	}
	d := t.Sub(f.now())
	if d < 0 {
		d = 0
	}
	f.expiryAt = t
	f.expiry = time.AfterFunc(d+10*time.Millisecond, func() {
		f.mu.Lock()
		f.expiry, f.expiryAt = nil, time.Time{}
		f.enforceLocked("expiry")
		f.mu.Unlock()
	})
}

func revocationReason(e *keys.Entry, a *admission, now time.Time, actor string) (why, who string) {
	switch {
	case e == nil:
		return "Your client key was revoked", actor
	case e.Expired(now):
		return "Your client key expired", "expiry"
	case !e.AllowsRoom(a.Scope):
		return "Your client key is no longer allowed in this room", actor
	}
	return "", ""
}

// findRoomLocked finds a room by its JID or by the name events and State
// show for it (see publishLocked).
func (f *Focus) findRoomLocked(name string) *room {
	if local, ok := roomLocal(name, f.cfg.MUC); ok {
		if r := f.rooms[local+"@"+f.cfg.MUC]; r != nil {
			return r
		}
	}
	for _, r := range f.rooms {
		if f.logRoom(r.jid) == name {
			return r
		}
	}
	return nil
}

// RemoveMember implements Source: kick one member (status 307 with reason)
// and drop their membership in the same write, so they must ask again.
func (f *Focus) RemoveMember(ctx context.Context, roomName, nick, reason string) error {
	f.mu.Lock()
	r := f.findRoomLocked(roomName)
	if r == nil {
		f.mu.Unlock()
		return fmt.Errorf("no room %q is managed by this focus", roomName)
	}
	m := r.members[nick]
	if m == nil {
		f.mu.Unlock()
		return fmt.Errorf("nobody with nickname %q is in %s", nick, roomName)
	}
	c := f.conn
	if c == nil {
		f.mu.Unlock()
		return errNotConnected
	}
	if reason == "" {
		reason = "Removed by the operator"
	}
	bare := bareOf(m.JID)
	r.removing[nick] = removal{actor: "operator", reason: reason}
	delete(r.admitted, bare)
	gen := r.noteRevoked(bare, f.now())
	f.markDirty()
	kick := f.kickIQ(r, nick, reason)
	aff := f.affiliationIQ(r, bare, "none", reason)
	f.mu.Unlock()
	f.trackRemoval(c, r, aff, bare, gen, "removing membership")
	res := make(chan error, 1)
	c.track(kick, func(_ *xmppEl, err error) { res <- err })
	if err := c.send(ctx, kick, aff); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// EndRoom implements Source: destroy the room with a reason.
func (f *Focus) EndRoom(ctx context.Context, roomName, reason string) error {
	f.mu.Lock()
	r := f.findRoomLocked(roomName)
	if r == nil {
		f.mu.Unlock()
		return fmt.Errorf("no room %q is managed by this focus", roomName)
	}
	c := f.conn
	if c == nil {
		f.mu.Unlock()
		return errNotConnected
	}
	if reason == "" {
		reason = "The conference was ended by the operator"
	}
	r.ending = true
	r.stopTimer()
	delete(f.rooms, r.jid)
	for nick, m := range r.members {
		f.publishLocked(Event{Kind: EvMemberRemoved, Room: r.jid, Member: ptr(*m), Reason: reason, Actor: "operator"})
		delete(r.members, nick)
	}
	f.publishLocked(Event{Kind: EvRoomEnded, Room: r.jid, Reason: reason, Actor: "operator"})
	f.markDirty()
	f.keepEndedRemovalsLocked(r)
	f.noteDestroyLocked(r.jid, reason)
	d := f.destroyIQ(r, reason)
	f.mu.Unlock()
	f.log.Info("room ended", "room", f.logRoom(r.jid), "reason", reason, "by", "operator")
	_, err := c.iq(ctx, d)
	f.destroyAnswered(r.jid, err)
	return err
}
