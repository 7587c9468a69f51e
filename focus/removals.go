package focus

import (
	"context"
	"errors"
)

// A removal is an affiliation change to none. It is written at once, and the
// admission is gone from then on, so a removal lost on the way (written on a
// connection that died, or left unanswered when keyfocus stopped) would leave
// Prosody's membership in place with nothing to revoke any more. Every
// removal therefore stays pending until Prosody answers it:
//
//   - in its room's revoked set with a zero time (room.noteRevoked), or in
//     f.endedRemovals once the room has ended;
//   - saved in the state file, so a restart keeps it;
//   - sent again on every connect, ahead of the re-joins (pendingRemovalsLocked),
//     and by resync when the member list still holds the person.
//
// Prosody's answer ends it: a result, or item-not-found (the room is gone,
// and its memberships with it). If the person was admitted again in the
// meantime (a new valid key), the answer also re-grants their membership:
// the removal may have reached Prosody after the new grant.

// trackRemoval follows a change of bare's affiliation to none in r. It never
// takes f.mu before the answer arrives, so it may be called with f.mu held.
// gen is the removal's generation (room.noteRevoked; 0 for a room that ended).
func (f *Focus) trackRemoval(c *conn, r *room, aff *xmppEl, bare string, gen uint64, what string) {
	c.track(aff, func(_ *xmppEl, err error) {
		var se *iqError
		switch {
		case err == nil:
		case errors.As(err, &se) && se.Condition == "item-not-found":
			// No such room any more: no membership either.
		case err == errDisconnected:
			return // still pending: sent again on the next connect
		default:
			f.log.Warn(what+" failed; sent again on the next connect", "room", f.logRoom(r.jid), "jid", bare, "err", err)
			return
		}
		f.mu.Lock()
		dirty := r.confirmRevoked(bare, gen, f.now())
		if set := f.endedRemovals[r.jid]; set[bare] {
			delete(set, bare)
			if len(set) == 0 {
				delete(f.endedRemovals, r.jid)
			}
			dirty = true
		}
		var regrant *xmppEl
		if cur := f.rooms[r.jid]; cur != nil && !cur.ending && cur.admitted[bare] != nil && f.conn == c {
			regrant = f.affiliationIQ(cur, bare, "member", "")
			// Its answer removes once more if they were revoked in between.
			f.trackGrant(c, cur, cur.admitted[bare], regrant)
		}
		if dirty {
			f.markDirty()
		}
		f.mu.Unlock()
		if regrant != nil {
			// Admitted again while the removal was on its way: the removal may
			// have reached Prosody after the new grant. Grant it once more.
			go func() { _ = c.send(context.Background(), regrant) }()
		}
	})
}

// keepEndedRemovalsLocked moves the pending removals of a room that ends into
// f.endedRemovals: the destroy that ends it may be lost as well.
func (f *Focus) keepEndedRemovalsLocked(r *room) {
	for bare, t := range r.revoked {
		if !t.IsZero() {
			continue
		}
		if f.endedRemovals == nil {
			f.endedRemovals = make(map[string]map[string]bool)
		}
		if f.endedRemovals[r.jid] == nil {
			f.endedRemovals[r.jid] = make(map[string]bool)
		}
		f.endedRemovals[r.jid][bare] = true
	}
}

// pendingRemovalsLocked returns the removals not confirmed yet, tracked on
// c: those of managed rooms (unless the person was admitted again) and those
// of rooms that ended.
func (f *Focus) pendingRemovalsLocked(c *conn) []*xmppEl {
	const reason = "Your membership was withdrawn"
	var out []*xmppEl
	for _, r := range f.rooms {
		for bare, t := range r.revoked {
			if !t.IsZero() || r.admitted[bare] != nil {
				continue
			}
			aff := f.affiliationIQ(r, bare, "none", reason)
			f.trackRemoval(c, r, aff, bare, r.noteRevoked(bare, f.now()), "removing membership again")
			out = append(out, aff)
		}
	}
	for jid, set := range f.endedRemovals {
		cur := f.rooms[jid]
		stub := &room{jid: jid}
		for bare := range set {
			if cur != nil && cur.admitted[bare] != nil {
				delete(set, bare) // admitted again to the room of that name
				continue
			}
			aff := f.affiliationIQ(stub, bare, "none", reason)
			f.trackRemoval(c, stub, aff, bare, 0, "removing membership again")
			out = append(out, aff)
		}
		if len(set) == 0 {
			delete(f.endedRemovals, jid)
		}
	}
	removals := len(out)
	for jid, reason := range f.endedDestroys {
		if f.rooms[jid] != nil {
			// Opened again under the same name since: that room is managed,
			// and its members are those admitted to it.
			delete(f.endedDestroys, jid)
			continue
		}
		d := f.destroyIQ(&room{jid: jid}, reason)
		f.trackDestroy(c, jid, d)
		out = append(out, d)
	}
	if len(out) > 0 {
		f.log.Info("sending again what Prosody has not confirmed", "removals", removals, "room_ends", len(out)-removals)
	}
	return out
}

// noteDestroyLocked records that the room jid is being destroyed: pending
// until Prosody answers (see destroyAnswered), saved in the state file.
func (f *Focus) noteDestroyLocked(jid, reason string) {
	if f.endedDestroys == nil {
		f.endedDestroys = make(map[string]string)
	}
	f.endedDestroys[jid] = reason
}

// trackDestroy follows the destroy of room jid on c. It never takes f.mu
// before the answer arrives, so it may be called with f.mu held.
func (f *Focus) trackDestroy(c *conn, jid string, d *xmppEl) {
	c.track(d, func(_ *xmppEl, err error) {
		if err == errDisconnected {
			return // still pending: sent again on the next connect
		}
		f.destroyAnswered(jid, err)
	})
}

// destroyAnswered ends the pending destroy of room jid once Prosody has
// answered it. A room that is gone (item-not-found) counts as destroyed;
// another error is logged and not retried, since asking again would get the
// same answer.
func (f *Focus) destroyAnswered(jid string, err error) {
	var se *iqError
	switch {
	case err == nil, errors.As(err, &se) && se.Condition == "item-not-found":
	case err == errDisconnected || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return
	default:
		f.log.Warn("ending room failed", "room", f.logRoom(jid), "err", err)
	}
	f.mu.Lock()
	if _, ok := f.endedDestroys[jid]; ok {
		delete(f.endedDestroys, jid)
		f.markDirty()
	}
	f.mu.Unlock()
}
