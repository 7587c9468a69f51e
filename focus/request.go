package focus

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/keyfocus/keyfocus/keys"
)

// pendingReq is an admitted conference request waiting for its reply.
type pendingReq struct {
	iq    *xmppEl
	adm   *admission
	start time.Time
}

// handle is called by the read loop for every iq get/set, presence and
// message. It never blocks on Prosody: replies are written at once and slow
// work (room setup) runs in a goroutine.
func (f *Focus) handle(c *conn, el *xmppEl) {
	switch el.Name.Local {
	case "presence":
		f.handlePresence(c, el)
	case "iq":
		out := f.handleIQ(c, el)
		if len(out) > 0 {
			if err := c.send(context.Background(), out...); err != nil {
				f.log.Debug("reply not sent", "err", err)
			}
		}
	}
}

// handleIQ answers every iq get/set addressed to the component.
func (f *Focus) handleIQ(c *conn, iq *xmppEl) []*xmppEl {
	typ := iq.Get("type")
	if typ != "get" && typ != "set" {
		return nil
	}
	if iq.Get("id") == "" || iq.Get("from") == "" {
		return nil // nothing we could address an answer to
	}
	if iq.Get("kf-malformed") != "" {
		return []*xmppEl{errorReply(iq, "modify", "bad-request", "Malformed request", nil)}
	}
	payload := iq.First()
	if payload == nil || len(iq.Children) != 1 {
		return []*xmppEl{errorReply(iq, "modify", "bad-request", "An IQ carries exactly one payload element", nil)}
	}
	switch {
	case payload.Name.Space == nsFocus && payload.Name.Local == "conference" && typ == "set":
		return f.conference(c, iq, payload)
	case payload.Name.Space == nsDiscoInfo && payload.Name.Local == "query" && typ == "get":
		return []*xmppEl{f.discoInfo(iq, payload)}
	case payload.Name.Space == nsDiscoItem && payload.Name.Local == "query" && typ == "get":
		r := reply(iq, "result")
		return []*xmppEl{r.Add(newEl(nsDiscoItem, "query", "node", payload.Get("node")))}
	case payload.Name.Space == nsPing && payload.Name.Local == "ping" && typ == "get":
		return []*xmppEl{reply(iq, "result")}
	}
	return []*xmppEl{errorReply(iq, "cancel", "service-unavailable", "", nil)}
}

func reply(iq *xmppEl, typ string) *xmppEl {
	return newEl("", "iq", "type", typ, "id", iq.Get("id"), "to", iq.Get("from"), "from", iq.Get("to"))
}

// errorReply builds an error IQ answering iq; payload (if any) is echoed
// before the error, as PROTOCOL.md §3 shows.
func errorReply(iq *xmppEl, typ, cond, text string, payload *xmppEl, extra ...*xmppEl) *xmppEl {
	e := newEl("", "error", "type", typ).Add(newEl(nsStanzas, cond))
	if text != "" {
		e.Add(newEl(nsStanzas, "text").SetText(text))
	}
	e.Add(extra...)
	return reply(iq, "error").Add(payload, e)
}

func (f *Focus) discoInfo(iq, q *xmppEl) *xmppEl {
	res := newEl(nsDiscoInfo, "query", "node", q.Get("node")).Add(
		newEl("", "identity", "category", "component", "type", "generic", "name", "keyfocus"),
	)
	for _, feat := range []string{nsDiscoInfo, nsFocus, nsPing} {
		res.Add(newEl("", "feature", "var", feat))
	}
	return reply(iq, "result").Add(res)
}

func (f *Focus) readyReply(iq *xmppEl, roomJID string) *xmppEl {
	return reply(iq, "result").Add(
		newEl(nsFocus, "conference", "room", roomJID, "ready", "true", "focusjid", f.cfg.Component).Add(
			newEl("", "property", "name", "authentication", "value", "false")))
}

// Refusal texts. The first two are the seed's own wording, verbatim.
const (
	textNoKey      = "Client Name / Client Key is not Supplied. Please Retry"
	textUnknownKey = "Client Name / Client Key pair mismatch. Please Retry"
)

// keySource says where a request's key came from.
type keySource int

const (
	keyNone keySource = iota
	keyProperty
	keyRoomPrefix
	keyToken
)

// extractKey finds the key of a conference request in the order of
// PROTOCOL.md §2: the clientKey property, the room's KEY<sep>NAME local part,
// the token attribute. scope is the room name the key's patterns apply to
// (NAME in the room-prefix form, else the whole local part).
func extractKey(conf *xmppEl, local, sep string) (key string, src keySource, scope string) {
	scope = local
	for _, p := range conf.All("", "property") {
		if p.Get("name") == "clientKey" {
			if v := p.Get("value"); v != "" {
				return v, keyProperty, scope
			}
		}
	}
	if i := strings.Index(local, sep); i > 0 {
		return local[:i], keyRoomPrefix, local[i+len(sep):]
	}
	if t := conf.Get("token"); t != "" {
		return t, keyToken, scope
	}
	return "", keyNone, scope
}

// conference decides a conference request (PROTOCOL.md §2-3).
func (f *Focus) conference(c *conn, iq, conf *xmppEl) []*xmppEl {
	start := time.Now()
	from := iq.Get("from")
	echo := newEl(nsFocus, "conference", "room", conf.Get("room"))
	roomAttr := conf.Get("room")
	if roomAttr == "" {
		f.refuseLog(from, "", ReasonBadRequest, 0, "")
		return []*xmppEl{errorReply(iq, "modify", "bad-request", "The conference request has no room attribute", echo)}
	}
	local, ok := roomLocal(roomAttr, f.cfg.MUC)
	if !ok {
		f.refuseLog(from, roomAttr, ReasonBadRequest, 0, "")
		return []*xmppEl{errorReply(iq, "modify", "bad-request", "The room must be a bare room JID on "+f.cfg.MUC, echo)}
	}
	bare := bareOf(from)
	if bare == "" || strings.HasPrefix(bare, "@") {
		return []*xmppEl{errorReply(iq, "modify", "bad-request", "Bad sender address", echo)}
	}
	roomJID := local + "@" + f.cfg.MUC
	now := f.now()

	refuse := func(reason string, code int, text, fp string) []*xmppEl {
		f.mu.Lock()
		f.recordRefusalLocked(Rejection{Time: now, Requester: from, Room: roomJID, Reason: reason, Code: code, Fingerprint: fp})
		f.mu.Unlock()
		return []*xmppEl{errorReply(iq, "cancel", "service-unavailable", text, echo,
			newEl(nsFocus, "reservation-error", "error-code", fmt.Sprint(code)))}
	}

	if wait := f.limiter.blocked(bare, now); wait > 0 {
		return refuse(ReasonRateLimited, 429, retryText(wait), "")
	}
	key, src, scope := extractKey(conf, local, f.cfg.RoomKeySeparator)
	if src == keyNone {
		return f.failed(c, refuse, bare, now, ReasonNoKey, 401, textNoKey, "")
	}
	f.mu.Lock()
	snap := f.snap
	f.mu.Unlock()
	var e *keys.Entry
	if src == keyRoomPrefix {
		e = snap.LookupFold(key)
	} else {
		e = snap.Lookup(key)
	}
	if e == nil {
		return f.failed(c, refuse, bare, now, ReasonUnknownKey, 403, textUnknownKey, keys.Fingerprint(key))
	}
	if e.Expired(now) {
		return f.failed(c, refuse, bare, now, ReasonExpired, 403,
			"Client Key expired on "+e.Expires.UTC().Format("2006-01-02 15:04 MST")+". Please contact the organiser for a new key", e.Fingerprint)
	}
	if !e.AllowsRoom(scope) {
		return f.failed(c, refuse, bare, now, ReasonRoomNotAllow, 403,
			"This Client Key may only open rooms matching: "+strings.Join(e.Rooms, ", "), e.Fingerprint)
	}
	adm := &admission{JID: bare, KeyID: e.ID, Fingerprint: e.Fingerprint, Client: e.Name, Scope: scope, Time: now}
	w := &pendingReq{iq: iq, adm: adm, start: start}

	f.mu.Lock()
	f.armExpiryLocked(e.Expires)
	r := f.rooms[roomJID]
	if e.MaxParticipants > 0 && r != nil && r.inRoomWithKey(e.ID, bare, now) >= e.MaxParticipants {
		f.mu.Unlock()
		return refuse(ReasonRoomFull, 403, fmt.Sprintf("This room is full for this Client Key (limit %d participants)", e.MaxParticipants), e.Fingerprint)
	}
	switch {
	case f.leaving:
		f.recordRefusalLocked(Rejection{Time: now, Requester: from, Room: roomJID, Reason: ReasonShutdown, Fingerprint: e.Fingerprint})
		f.mu.Unlock()
		return []*xmppEl{errorReply(iq, "cancel", "service-unavailable", "The focus is shutting down. Please Retry", echo,
			newEl(nsColibri, "graceful-shutdown"))}
	case r != nil && r.ready:
		out := f.grantAndReplyLocked(c, r, w)
		f.mu.Unlock()
		return out
	case r != nil:
		r.waiters = append(r.waiters, w)
		f.mu.Unlock()
		return nil
	case f.draining:
		f.recordRefusalLocked(Rejection{Time: now, Requester: from, Room: roomJID, Reason: ReasonShutdown, Fingerprint: e.Fingerprint})
		f.mu.Unlock()
		return []*xmppEl{errorReply(iq, "cancel", "service-unavailable", "The focus is shutting down. Please Retry", echo,
			newEl(nsColibri, "graceful-shutdown"))}
	}
	r = newRoom(roomJID, local, now)
	r.waiters = []*pendingReq{w}
	f.rooms[roomJID] = r
	f.creating.Add(1)
	f.mu.Unlock()
	go f.setupRoom(c, r, true)
	return nil
}

// tarpit is how long a failed attempt waits for its answer during a flood;
// maxTarpitted bounds the answers waiting at once (past it they go at once).
const (
	tarpit       = time.Second
	maxTarpitted = 4096
)

// failed records a failed attempt for the brute-force limits and refuses.
// During a flood (GlobalFailuresPerSecond exceeded) the refusal is a 429 sent
// after the tarpit delay.
func (f *Focus) failed(c *conn, refuse func(string, int, string, string) []*xmppEl, bare string, now time.Time, reason string, code int, text, fp string) []*xmppEl {
	if !f.limiter.fail(bare, now) {
		return refuse(reason, code, text, fp)
	}
	out := refuse(ReasonRateLimited, 429, retryText(tarpit), fp)
	if f.tarpitted.Add(1) > maxTarpitted {
		f.tarpitted.Add(-1)
		return out
	}
	time.AfterFunc(tarpit, func() {
		defer f.tarpitted.Add(-1)
		_ = c.send(context.Background(), out...)
	})
	return nil
}

func retryText(wait time.Duration) string {
	secs := int((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return fmt.Sprintf("Too many failed attempts. Please Retry in %d seconds", secs)
}

// recordRefusalLocked keeps, logs and publishes one refusal.
func (f *Focus) recordRefusalLocked(rej Rejection) {
	rej.Room = f.logRoom(rej.Room) // a guessed key in the room-prefix form stays out of State and logs
	f.rejected = append(f.rejected, Rejection{})
	copy(f.rejected[1:], f.rejected)
	f.rejected[0] = rej
	if len(f.rejected) > maxRejected {
		f.rejected = f.rejected[:maxRejected]
	}
	if f.limiter.logRefusal(rej.Time) {
		f.log.Info("refused", "room", rej.Room, "requester", rej.Requester, "reason", rej.Reason, "code", rej.Code, "fingerprint", rej.Fingerprint)
	}
	f.publishLocked(Event{Kind: EvRefused, Room: rej.Room, Rejection: ptr(rej)})
}

func (f *Focus) refuseLog(from, room, reason string, code int, fp string) {
	f.mu.Lock()
	f.recordRefusalLocked(Rejection{Time: f.now(), Requester: from, Room: room, Reason: reason, Code: code, Fingerprint: fp})
	f.mu.Unlock()
}

// roomLocal checks that room is a bare JID on the MUC host and returns its
// local part as Prosody stores it (lower case, NFKC: what nodeprep does to
// the names Jitsi uses). Any Unicode a Jitsi room name may hold is fine;
// what a JID local part may not contain is refused.
func roomLocal(room, muc string) (string, bool) {
	at := strings.LastIndexByte(room, '@')
	if at <= 0 || !strings.EqualFold(room[at+1:], muc) {
		return "", false
	}
	local := normLocal(room[:at])
	if local == "" || len(local) > 1023 || !utf8.ValidString(local) {
		return "", false
	}
	for _, r := range local {
		if strings.ContainsRune("\"&'/:<>@", r) || unicode.IsSpace(r) || unicode.IsControl(r) ||
			unicode.Is(unicode.Cf, r) || mappedToNothing(r) {
			// Format characters and what nodeprep silently drops would make
			// the room we manage differ from the room Prosody holds.
			return "", false
		}
	}
	return local, true
}

// mappedToNothing: the non-format characters of RFC 3454 table B.1.
func mappedToNothing(r rune) bool {
	return r == 0x034F || (r >= 0x180B && r <= 0x180D) || (r >= 0xFE00 && r <= 0xFE0F)
}

func normLocal(s string) string { return norm.NFKC.String(strings.ToLower(s)) }

// logRoom is how a room appears in logs: in the room-prefix form the local
// part starts with a client key, which is replaced by that key's fingerprint.
func (f *Focus) logRoom(roomJID string) string {
	local, host, _ := strings.Cut(roomJID, "@")
	key, name, ok := strings.Cut(local, f.cfg.RoomKeySeparator)
	if !ok || key == "" || strings.HasPrefix(key, "[key ") {
		return roomJID // no key, or shown this way already
	}
	return "[key " + keys.Fingerprint(strings.ToLower(key)) + "]" + f.cfg.RoomKeySeparator + name + "@" + host
}
