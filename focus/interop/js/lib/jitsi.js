// What lib-jitsi-meet puts on the wire and how it reads the answers, written
// down once so that every client library under test sends exactly the same
// thing. Quotes are from jitsi/lib-jitsi-meet (modules/xmpp/moderator.ts and
// modules/xmpp/ChatRoom.ts, 2025) unless they say 2016; the 2016 forms are
// from lib-jitsi-meet 1.0.6 on npm (a build of November 2016).
//
// Stanzas are described as plain trees {name, attrs, children, text} and
// each driver builds them with its own library's builder (xml() in xmpp.js,
// $iq/$pres in strophe.js, as lib-jitsi-meet does).

import { randomBytes, randomUUID } from 'node:crypto';

export const NS_FOCUS = 'http://jitsi.org/protocol/focus';
export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

export function el(name, attrs = {}, ...children) {
    const kids = [];
    let text;

    for (const c of children) {
        if (typeof c === 'string') {
            text = (text ?? '') + c;
        } else if (c) {
            kids.push(c);
        }
    }

    return { name, attrs, children: kids, text };
}

// conferenceIq is the conference request of current lib-jitsi-meet
// (Moderator._createConferenceIq):
//
//     elem.c('conference', {
//         'machine-uid': conferenceRequest.machineUid,
//         room: roomJid,
//         token: this.xmpp.token,
//         xmlns: 'http://jitsi.org/protocol/focus'
//     });
//     ...
//     for (const k in conferenceRequest.properties) { elem.c('property', { name: k, value: ... }).up(); }
//
// with the properties of _createConferenceRequest: rtcstatsEnabled=false
// ("the client defaults to false ... we only signal if false") and
// 'visitors-version'=1 for a normal participant. Strophe drops attributes
// whose value is undefined, so without a JWT there is no token attribute.
// The seed's patched client adds <property name='clientKey' value=KEY/>.
export function conferenceIq({ focus, room, key, token, style = 'current' }) {
    const attrs = { xmlns: NS_FOCUS, room, 'machine-uid': machineUid() };

    if (token !== undefined) {
        attrs.token = token;
    }
    const props = [];

    if (style === '2016') {
        // lib-jitsi-meet 1.0.6, Moderator.prototype.createConferenceIq:
        //   elem.c('property', { name: 'disableRtx', value: true }).up();
        //   elem.c('property', { name: 'enableLipSync', value: false !== ...enableLipSync }).up();
        //   elem.c('property', { name: 'simulcastMode', value: 'rewriting' }).up();
        // plus openSctp, channelLastN, ... when configured.
        props.push(el('property', { name: 'disableRtx', value: 'true' }));
        props.push(el('property', { name: 'enableLipSync', value: 'true' }));
        props.push(el('property', { name: 'openSctp', value: 'true' }));
        props.push(el('property', { name: 'simulcastMode', value: 'rewriting' }));
    } else {
        props.push(el('property', { name: 'rtcstatsEnabled', value: 'false' }));
        props.push(el('property', { name: 'visitors-version', value: '1' }));
    }
    if (key !== undefined) {
        props.push(el('property', { name: 'clientKey', value: key }));
    }

    return el('iq', { type: 'set', to: focus }, el('conference', attrs, ...props));
}

// joinPresence is the first presence of ChatRoom.sendPresence(fromJoin=true):
//
//     const pres = $pres({ to });          // to = room@muc/<nick>
//     if (fromJoin) { ... pres.c('x', { xmlns: this.presMap.xns }); ... pres.up(); }
//     parser.json2packet(this.presMap.nodes, pres);
//
// where presMap.nodes starts with <stats-id> and
// <jitsi_participant_clientVersion> (initPresenceMap) and JitsiConference
// adds the rest before joining: the nick (XEP-0172), the caps hash, the
// codec list, the muted states and the region, each a bare element in
// jabber:client, as Jitsi Meet clients send them.
export function joinPresence({ room, nick, displayName }) {
    return el('presence', { to: `${room}/${nick}` },
        el('x', { xmlns: NS_MUC }),
        el('stats-id', {}, 'Interop-Tester'),
        el('jitsi_participant_clientVersion', {}, 'keyfocus-interop'),
        el('region', { xmlns: 'http://jitsi.org/jitsi-meet', id: 'local' }),
        el('c', { xmlns: 'http://jabber.org/protocol/caps', hash: 'sha-1',
            node: 'https://jitsi.org/jitsi-meet', ver: 'cvjWXufsg4xT62Ec2mlATkFZ9lk=' }),
        el('jitsi_participant_codecList', {}, 'vp9,vp8,h264'),
        el('nick', { xmlns: 'http://jabber.org/protocol/nick' }, displayName),
        el('audiomuted', {}, 'true'),
        el('videomuted', {}, 'true'));
}

// discoInfo is the disco#info query a client sends to the focus.
export function discoInfo(to) {
    return el('iq', { type: 'get', to }, el('query', { xmlns: NS_DISCO_INFO }));
}

// A Jitsi MUC nick: the first 8 hex characters of a random UUID
// (JitsiConference: `this.myUserId()` / Strophe resource).
export function randomNick() {
    return randomUUID().slice(0, 8);
}

function machineUid() {
    return randomBytes(16).toString('hex');
}

// ---------------------------------------------------------------------------
// Reading the answers the way lib-jitsi-meet does. Elements here are ltx
// elements (name, attrs, children, getChild, getChildText, text()).

// parseConferenceResult mirrors Moderator._parseConferenceIq:
//     conferenceRequest.focusJid = $(resultIq).find('conference').attr('focusjid');
//     conferenceRequest.ready = $(resultIq).find('conference').attr('ready') === 'true';
//     if ($(resultIq).find('>conference>property[name=\'authentication\'][value=\'true\']').length > 0) ...
export function parseConferenceResult(iq) {
    const conf = iq.getChild('conference', NS_FOCUS) ?? iq.getChild('conference');

    if (!conf) {
        return { ok: false, why: 'no <conference> in the result' };
    }
    const auth = conf.getChildren('property').find(p => p.attrs.name === 'authentication');

    return {
        ok: true,
        focusJid: conf.attrs.focusjid,
        ready: conf.attrs.ready === 'true',
        authentication: auth?.attrs.value === 'true',
        room: conf.attrs.room
    };
}

// parseReservationError mirrors Moderator._handleIqError:
//     const reservationErr = $(error).find('>error>reservation-error');
//     if (reservationErr.length) {
//         const errorCode = reservationErr.attr('error-code');
//         const errorTextNode = $(error).find('>error>text');
//         ... errorMsg = errorTextNode.text();
//         this.eventEmitter.emit(XMPPEvents.RESERVATION_ERROR, errorCode, errorMsg);
//         errorCallback(); return;   // no retry
//     }
//     ... notAuthorized = $(error).find('>error>not-authorized').length > 0;  // login loop
//
// The 2016 build (_allocateConferenceFocusError) reads the same two nodes.
export function parseReservationError(iq) {
    const err = iq.getChild('error');

    if (!err) {
        return { reservation: false, why: 'no <error> child' };
    }
    const res = err.getChildren('reservation-error')[0];
    const text = err.getChildren('text')[0];
    const condition = err.children.find(c => typeof c !== 'string' && c.attrs.xmlns === NS_STANZAS
        && c.name !== 'text')?.name;

    return {
        reservation: Boolean(res),
        code: res?.attrs['error-code'],
        text: text ? text.text() : undefined,
        condition,
        notAuthorized: Boolean(err.getChild('not-authorized')),
        sessionInvalid: Boolean(err.getChild('session-invalid') || err.getChild('not-acceptable')),
        gracefulShutdown: Boolean(err.getChild('graceful-shutdown'))
    };
}

// mucUser returns the muc#user <x/> of a presence, or undefined.
export function mucUser(pres) {
    return pres.getChild('x', NS_MUC_USER);
}

export function statusCodes(pres) {
    const x = mucUser(pres);

    return x ? x.getChildren('status').map(s => s.attrs.code) : [];
}

// isFocusJid mirrors Moderator.isFocusJid: the occupant whose real JID
// (<item jid=.../>) starts with focusjid + '/' is the focus.
//     if (jid.indexOf(`${focusJid}/`) === 0) return true;
export function isFocusJid(focusJid, jid) {
    return Boolean(jid) && Boolean(focusJid) && jid.indexOf(`${focusJid}/`) === 0;
}

// parseKick mirrors ChatRoom.onPresenceUnavailable:
//     const isSelfPresence = exists(pres, ':scope>x[...muc#user]>status[code="110"]');
//     const isKick = exists(pres, ':scope>x[...muc#user]>status[code="307"]');
//     reasonSelect = findFirst(pres, ':scope>x[...muc#user]>item>reason');
//     this.eventEmitter.emit(XMPPEvents.KICKED, isSelfPresence, actorNick, ..., reason, ...);
export function parseKick(pres) {
    const codes = statusCodes(pres);
    const item = mucUser(pres)?.getChild('item');
    const reason = item?.getChild('reason');

    return {
        self: codes.includes('110'),
        kicked: codes.includes('307'),
        removed: codes.includes('321'),
        reason: reason ? reason.text() : undefined,
        actor: item?.getChild('actor')?.attrs.nick,
        codes
    };
}
