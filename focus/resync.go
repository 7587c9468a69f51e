package focus

import (
	"context"
	"strings"
	"time"
)

// resync asks Prosody for the room's member list (muc#admin) after a
// re-join and records members the focus has no admission for: people
// admitted before a state file was lost. Their key is unknown, so a key
// revocation cannot find them; they show without a fingerprint and get one
// again when they next ask for the conference. Members the focus removed
// itself (room.revoked) are never taken back: when the list still holds
// them (the removal was on its way, or lost with a connection), the
// removal is sent again.
func (f *Focus) resync(c *conn, r *room) {
	q := newEl("", "iq", "type", "get", "from", f.cfg.Component+"/"+Nick, "to", r.jid).Add(
		newEl(nsMUCAdmin, "query").Add(newEl("", "item", "affiliation", "member")))
	// The removals pending when the list is asked for: one the list does
	// not hold was applied (only its answer was lost). A removal written
	// later has a newer generation and is left alone.
	f.mu.Lock()
	asked := make(map[string]uint64)
	for bare, t := range r.revoked {
		if t.IsZero() {
			asked[bare] = r.revGen[bare]
		}
	}
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := c.iq(ctx, q)
	if err != nil {
		if err != errDisconnected {
			f.log.Warn("reading the member list failed", "room", f.logRoom(r.jid), "err", err)
		}
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rooms[r.jid] != r {
		return
	}
	now := f.now()
	var unknown []string
	var again []*xmppEl
	listed := make(map[string]bool)
	for _, it := range res.Child(nsMUCAdmin, "query").All("", "item") {
		listed[strings.ToLower(it.Get("jid"))] = true
	}
	// A pending removal of someone the list does not hold is done: Prosody
	// applied it, and only its answer was lost.
	for bare, gen := range asked {
		if !listed[bare] && r.confirmRevoked(bare, gen, now) {
			f.markDirty()
		}
	}
	for _, it := range res.Child(nsMUCAdmin, "query").All("", "item") {
		bare := strings.ToLower(it.Get("jid"))
		if bare == "" || strings.ContainsRune(bare, '/') || r.admitted[bare] != nil {
			continue
		}
		if r.recentlyRevoked(bare, now) {
			// Not an unknown member but a removed one whose removal Prosody
			// had not applied when it listed the members: still on its way,
			// or lost with the connection it was written on. Send it again
			// (setting none twice is harmless), never take them back.
			aff := f.affiliationIQ(r, bare, "none", "Your membership was withdrawn")
			f.trackRemoval(c, r, aff, bare, r.noteRevoked(bare, now), "removing membership again")
			f.markDirty()
			again = append(again, aff)
			continue
		}
		r.admitted[bare] = &admission{JID: bare, Time: now, joined: true}
		unknown = append(unknown, bare)
	}
	if len(again) > 0 {
		f.log.Info("member list still held members the focus removed; removing them again", "room", f.logRoom(r.jid), "members", len(again))
		go func() {
			if err := c.send(context.Background(), again...); err != nil {
				f.log.Warn("sending removals failed; they are sent again after the reconnect", "room", f.logRoom(r.jid), "err", err)
			}
		}()
	}
	if len(unknown) > 0 {
		f.markDirty()
		f.log.Warn("room has members keyfocus has no admission for (state lost?): they stay, but a key revocation cannot find them until they ask again",
			"room", f.logRoom(r.jid), "members", len(unknown))
	}
}

// rediscover finds the rooms of the MUC (disco#items) after the state file
// was lost, and manages them again: join, members-only, member list.
func (f *Focus) rediscover(c *conn) {
	q := newEl("", "iq", "type", "get", "from", f.cfg.Component, "to", f.cfg.MUC).Add(newEl(nsDiscoItem, "query"))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := c.iq(ctx, q)
	if err != nil {
		f.log.Warn("listing the rooms of the MUC failed; rooms from before the restart stay unmanaged", "muc", f.cfg.MUC, "err", err)
		return
	}
	f.mu.Lock()
	var found []*room
	for _, it := range res.Child(nsDiscoItem, "query").All("", "item") {
		j := strings.ToLower(it.Get("jid"))
		local, host, ok := strings.Cut(j, "@")
		if !ok || local == "" || host != f.cfg.MUC || strings.ContainsRune(host, '/') || f.rooms[j] != nil {
			continue
		}
		r := newRoom(j, local, f.now())
		r.ready = false
		f.rooms[j] = r
		f.creating.Add(1)
		found = append(found, r)
	}
	f.mu.Unlock()
	f.log.Info("re-derived rooms from the MUC after the state was lost", "rooms", len(found))
	for _, r := range found {
		go f.setupRoom(c, r, false)
	}
}
