// Interop checks: an independent XMPP client library does what lib-jitsi-meet
// does against a real Prosody with keyfocus as its focus, and reads the
// answers the way lib-jitsi-meet reads them.
//
//   KEYFOCUS_INTEROP_CONFIG='{...}' node interop.mjs xmpp.js|strophe.js
//
// The configuration (JSON, in the environment so that keys never reach argv):
//   c2s        host:port of Prosody's c2s (xmpp.js)
//   websocket  ws://host:port/xmpp-websocket (strophe.js)
//   domain, muc, focus   the guest domain, the MUC host, the focus component
//   keysFile   the key file keyfocus watches (the revocation edits it)
//   separator  the room-key separator of the focus (default "=")
//   keys       { good, prefix, revoke, wrong }: good and revoke are valid
//              keys, prefix a valid lower-case key for the room-prefix form
//   tag        a suffix that keeps room names apart between runs
//
// It prints progress on stderr and, last, one line on stdout:
//   INTEROP-RESULT {"client":"xmpp.js","checks":[{"name":..,"ok":..,"detail":..}],"notes":[..]}
// (notes: single timings, for reading, never asserted).
// Keys appear nowhere in the output: they are replaced by <key:FINGERPRINT>,
// the first 8 hex characters of their SHA-256, as keyfocus shows them.

import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

import {
    conferenceIq, discoInfo, el, isFocusJid, joinPresence, mucUser, NS_DISCO_INFO, parseConferenceResult,
    parseKick, parseReservationError, randomNick, statusCodes
} from './lib/jitsi.js';

const WAIT = 10000;
const TEXT_MISMATCH = 'Client Name / Client Key pair mismatch. Please Retry';
const TEXT_MISSING = 'Client Name / Client Key is not Supplied. Please Retry';

const cfg = JSON.parse(process.env.KEYFOCUS_INTEROP_CONFIG ?? 'null');
const which = process.argv[2];

if (!cfg || !which) {
    console.error('usage: KEYFOCUS_INTEROP_CONFIG=JSON node interop.mjs xmpp.js|strophe.js');
    process.exit(2);
}
cfg.separator ??= '=';

const fingerprint = k => createHash('sha256').update(k).digest('hex').slice(0, 8);
const secrets = Object.values(cfg.keys).filter(Boolean);

// redact replaces every key (any case: the room-prefix form is lower-cased
// by clients) with its fingerprint.
function redact(text) {
    let out = String(text);

    for (const k of secrets) {
        out = out.replace(new RegExp(k.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gi'), `<key:${fingerprint(k)}>`);
    }

    return out;
}

const checks = [];
const notes = [];
const log = (...a) => console.error(redact(a.join(' ')));

function check(name, ok, detail = '') {
    checks.push({ name, ok: Boolean(ok), detail: redact(detail) });
    log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail && !ok ? `: ${detail}` : ''}`);

    return Boolean(ok);
}

async function connect() {
    if (which === 'xmpp.js') {
        const { XmppJsDriver } = await import('./lib/xmppjs.js');

        return XmppJsDriver.connect(cfg, redact);
    }
    if (which === 'strophe.js') {
        const { StropheDriver } = await import('./lib/strophe.js');

        return StropheDriver.connect(cfg, redact);
    }
    throw new Error(`unknown client ${which}: use xmpp.js or strophe.js`);
}

const room = name => `${name}-${which.replace('.', '')}-${cfg.tag}@${cfg.muc}`;

// join sends lib-jitsi-meet's join presence and waits for our own presence
// back (status 110) or an error. It returns the occupants seen before.
async function join(d, roomJid) {
    const nick = randomNick();
    const me = `${roomJid}/${nick}`;

    d.sendDesc(joinPresence({ room: roomJid, nick, displayName: `Interop ${which}` }));
    // Prosody folds the room's local part to lower case (our nicks are
    // lower case already), so compare without case.
    const self = await d.waitFor(s => s.name === 'presence' && s.attrs.from?.toLowerCase() === me.toLowerCase()
        && (s.attrs.type === 'error' || statusCodes(s).includes('110')), WAIT, `presence back from ${me}`);

    if (self.attrs.type === 'error') {
        const err = self.getChild('error');
        const cond = err?.children.find(c => typeof c !== 'string' && c.name !== 'text')?.name;

        return { ok: false, nick, me, self, error: cond, errorType: err?.attrs.type, text: err?.getChildText('text') };
    }
    const occupants = d.inbox.filter(s => s.name === 'presence' && s.attrs.from?.toLowerCase().startsWith(`${roomJid.toLowerCase()}/`)
        && s.attrs.type !== 'unavailable' && s.attrs.type !== 'error')
        .map(s => {
            const item = mucUser(s)?.getChild('item');

            return { nick: s.attrs.from.slice(roomJid.length + 1), jid: item?.attrs.jid,
                role: item?.attrs.role, affiliation: item?.attrs.affiliation };
        });

    return { ok: true, nick, me: self.attrs.from, self, occupants };
}

const show = s => (s ? s.toString() : '(nothing)');

async function scenario(name, fn) {
    let d;
    const clients = [];
    const open = async () => {
        d = await connect();
        clients.push(d);

        return d;
    };

    try {
        await fn(open);
    } catch (err) {
        check(`${name}: ran to the end`, false, `${err.message}\n${clients.map(c => c.lastTrace()).join('\n')}`);
    } finally {
        await Promise.all(clients.map(c => c.close()));
    }
}

// request sends the conference request and returns the reply.
async function request(d, roomJid, opts = {}) {
    return d.iq(conferenceIq({ focus: cfg.focus, room: roomJid, ...opts }));
}

function expectAdmitted(name, rep) {
    if (!check(`${name}: the request gets a result`, rep.attrs.type === 'result', show(rep))) {
        return undefined;
    }
    const c = parseConferenceResult(rep);

    check(`${name}: ready='true'`, c.ready, show(rep));
    check(`${name}: focusjid is the focus component`, c.focusJid === cfg.focus,
        `focusjid=${c.focusJid} want ${cfg.focus}: ${show(rep)}`);
    check(`${name}: authentication property is not 'true' (no login loop)`, !c.authentication, show(rep));

    return c;
}

function expectRefused(name, rep, code, text) {
    log(`${name}: the refusal as the client got it: ${show(rep)}`);
    if (!check(`${name}: the request gets an error`, rep.attrs.type === 'error', show(rep))) {
        return;
    }
    const e = parseReservationError(rep);

    check(`${name}: <reservation-error error-code='${code}'> (RESERVATION_ERROR, no retry)`,
        e.reservation && e.code === String(code), show(rep));
    if (text !== undefined) {
        check(`${name}: text is "${text}"`, e.text === text, `text=${JSON.stringify(e.text)}`);
    } else {
        check(`${name}: a text for the user`, Boolean(e.text), show(rep));
    }
    check(`${name}: not not-authorized (would start a login loop)`, !e.notAuthorized, show(rep));
    check(`${name}: not session-invalid/not-acceptable (would retry)`, !e.sessionInvalid, show(rep));
}

// revokeInFile removes the line of key from the key file the way an editor
// saves: write a new file beside it, rename it over the old one. The line's
// left side is the key itself or, as keyfocus writes it, sha256:<hex>.
function revokeInFile(key) {
    const hashed = `sha256:${createHash('sha256').update(key).digest('hex')}`;
    const lines = readFileSync(cfg.keysFile, 'utf8').split('\n');
    const left = l => (l.startsWith('sha256:') ? l.split('=')[0] : l.split(/[=:]/)[0]).trim();
    const kept = lines.filter(l => left(l) !== key && left(l) !== hashed);

    if (kept.length === lines.length) {
        throw new Error('the key to revoke is not in the key file');
    }
    writeFileSync(`${cfg.keysFile}.interop-tmp`, kept.join('\n'), { mode: 0o600 });
    renameSync(`${cfg.keysFile}.interop-tmp`, cfg.keysFile);
}

async function main() {
    log(`client ${which}`);
    const admittedRoom = room('admitted');

    // The admitted participant stays in its room while the refusals below
    // try to get in, so "room exists" cases are real.
    let admitted;

    await scenario('admitted (clientKey property)', async open => {
        const d = await open();

        check('admitted (clientKey property): anonymous login', Boolean(d.jid), `jid=${d.jid}`);
        let sentAt = performance.now();
        const c = expectAdmitted('admitted (clientKey property)', await request(d, admittedRoom, { key: cfg.keys.good }));

        notes.push(`request for a new room -> ready='true': ${(performance.now() - sentAt).toFixed(1)} ms`);
        sentAt = performance.now();
        await request(d, admittedRoom, { key: cfg.keys.good });
        notes.push(`request for an existing room -> ready='true': ${(performance.now() - sentAt).toFixed(1)} ms`);

        if (!c) {
            return;
        }
        const j = await join(d, admittedRoom);

        if (!check('admitted (clientKey property): MUC join succeeds', j.ok, `${j.error} ${show(j.self)}`)) {
            return;
        }
        const focus = j.occupants.find(o => o.nick === 'focus');

        check('admitted: the focus occupant has nick "focus"', Boolean(focus), JSON.stringify(j.occupants));
        check('admitted: the focus occupant\'s real JID starts with focusjid + "/" (isFocusJid)',
            isFocusJid(c.focusJid, focus?.jid), `jid=${focus?.jid} focusjid=${c.focusJid}`);
        const mine = mucUser(j.self)?.getChild('item');

        check('admitted: participant is a member, not owner or admin',
            mine?.attrs.affiliation === 'member', show(j.self));
        for (const to of [ `${c.focusJid}/focus`, `${admittedRoom}/focus` ]) {
            const rep = await d.iq(discoInfo(to));
            const q = rep.getChild('query', NS_DISCO_INFO);
            const id = q?.getChildren('identity') ?? [];
            const feats = (q?.getChildren('feature') ?? []).map(f => f.attrs.var);

            check(`admitted: disco#info to ${to === admittedRoom + '/focus' ? 'room/focus' : 'focusjid/focus'} is answered with a result`,
                rep.attrs.type === 'result', show(rep));
            check(`admitted: disco#info to ${to === admittedRoom + '/focus' ? 'room/focus' : 'focusjid/focus'} has identity component/generic and feature disco#info`,
                id.some(i => i.attrs.category === 'component' && i.attrs.type === 'generic')
                && feats.includes(NS_DISCO_INFO), show(rep));
        }
        const ping = await d.iq(el('iq', { type: 'get', to: c.focusJid }, el('ping', { xmlns: 'urn:xmpp:ping' })));

        check('admitted: an XEP-0199 ping to the focus is answered', [ 'result', 'error' ].includes(ping.attrs.type),
            show(ping));
        // Every IQ to the component gets an answer (PROTOCOL §3), or a
        // client's sendIQ waits for its timeout.
        for (const [ what, iq ] of [
            [ 'an unknown payload', el('iq', { type: 'get', to: c.focusJid }, el('query', { xmlns: 'urn:example:unknown' })) ],
            [ 'a conference IQ of type get', el('iq', { type: 'get', to: c.focusJid },
                el('conference', { xmlns: 'http://jitsi.org/protocol/focus', room: admittedRoom })) ],
            [ 'a conference IQ without room', el('iq', { type: 'set', to: c.focusJid },
                el('conference', { xmlns: 'http://jitsi.org/protocol/focus' })) ],
            [ 'a logout IQ (lib-jitsi-meet Moderator.logout)', el('iq', { type: 'set', to: c.focusJid },
                el('logout', { xmlns: 'http://jitsi.org/protocol/focus', 'session-id': 'x' })) ]
        ]) {
            const rep = await d.iq(iq);

            check(`admitted: ${what} gets an error reply`, rep.attrs.type === 'error', show(rep));
        }
        admitted = d;

        // Scenarios below run while this participant is in the room.
        await refusals(admittedRoom);
    });
    if (!admitted) {
        log('the admitted participant never got in; refusals ran without it');
    }

    await scenario('admitted (room-prefix form)', async open => {
        const d = await open();
        const roomJid = `${cfg.keys.prefix}${cfg.separator}${room('prefix')}`.toLowerCase();
        const c = expectAdmitted('admitted (room-prefix form)', await request(d, roomJid));

        if (c) {
            const j = await join(d, roomJid);

            check('admitted (room-prefix form): MUC join succeeds', j.ok, `${j.error} ${show(j.self)}`);
        }
    });

    await scenario('admitted (2016 request shape)', async open => {
        const d = await open();
        const roomJid = room('shape2016');
        const c = expectAdmitted('admitted (2016 request shape)',
            await request(d, roomJid, { key: cfg.keys.good, style: '2016' }));

        if (c) {
            const j = await join(d, roomJid);

            check('admitted (2016 request shape): MUC join succeeds', j.ok, `${j.error} ${show(j.self)}`);
        }
    });

    // lib-jitsi-meet 2025+ puts its JWT in the token attribute; a deployment
    // that hands out keys as the "jwt" URL parameter gets them there.
    await scenario('admitted (token attribute)', async open => {
        const d = await open();
        const roomJid = room('token');
        const c = expectAdmitted('admitted (token attribute)', await request(d, roomJid, { token: cfg.keys.good }));

        if (c) {
            const j = await join(d, roomJid);

            check('admitted (token attribute): MUC join succeeds', j.ok, `${j.error} ${show(j.self)}`);
        }
    });

    // Two people in one room, one of whose key is revoked: the room stays
    // (the other is still in it), so the rejoin meets the members-only gate
    // rather than a room that no longer exists.
    await scenario('revoked', async open => {
        const stays = await open();
        const d = await open();
        const roomJid = room('revoked');

        if (!expectAdmitted('revoked: the one who stays', await request(stays, roomJid, { key: cfg.keys.good }))
            || !expectAdmitted('revoked: before', await request(d, roomJid, { key: cfg.keys.revoke }))) {
            return;
        }
        const js = await join(stays, roomJid);
        const j = await join(d, roomJid);

        if (!check('revoked: before: both MUC joins succeed', j.ok && js.ok, `${show(js.self)} ${show(j.self)}`)) {
            return;
        }
        const revokedAt = performance.now();

        revokeInFile(cfg.keys.revoke);
        const gone = await d.waitFor(s => s.name === 'presence' && s.attrs.from === j.me
            && s.attrs.type === 'unavailable', WAIT, 'unavailable presence after the revocation');

        notes.push(`revoked: key file renamed -> the client holds its 307: ${(performance.now() - revokedAt).toFixed(1)} ms`);
        const k = parseKick(gone);

        check('revoked: self-presence unavailable has status 110 and 307 (KICKED, shown to the user)',
            k.self && k.kicked, show(gone));
        check('revoked: the kick has a <reason> that says why', Boolean(k.reason), show(gone));
        log(`revoked: the kick as the client got it: ${show(gone)}`);
        const seen = await stays.waitFor(s => s.name === 'presence' && s.attrs.from === j.me
            && s.attrs.type === 'unavailable', WAIT, 'the others see the revoked member leave');

        check('revoked: the others see the member leave as kicked (307)', parseKick(seen).kicked, show(seen));
        check('revoked: the one with a valid key is still in the room',
            !stays.inbox.some(s => s.name === 'presence' && s.attrs.from === js.me && s.attrs.type === 'unavailable'),
            stays.lastTrace(10));
        expectRefused('revoked: new request', await request(d, roomJid, { key: cfg.keys.revoke }), 403, TEXT_MISMATCH);
        const again = await join(d, roomJid);

        check('revoked: rejoin without a request is refused', !again.ok, show(again.self));
        check('revoked: rejoin refused with registration-required (members-only)',
            again.error === 'registration-required', show(again.self));
    });

    // XMPP clients other than lib-jitsi-meet may write the room with capital
    // letters; Prosody folds the local part to lower case (nodeprep), so the
    // room the client ends up in is the lower-case one. The gate must hold on
    // that room all the same: admitted, and removed on revocation.
    await scenario('mixed-case room', async open => {
        const d = await open();
        const local = room('MixedCase').split('@')[0];
        const asSent = `${local}@${cfg.muc}`;

        if (!expectAdmitted('mixed-case room', await request(d, asSent, { key: cfg.keys.revokecase }))) {
            return;
        }
        const j = await join(d, asSent);

        if (!check('mixed-case room: MUC join succeeds', j.ok, `${j.error} ${show(j.self)}`)) {
            return;
        }
        log(`mixed-case room: sent ${asSent.split('@')[0]}, joined as ${j.self.attrs.from}`);
        revokeInFile(cfg.keys.revokecase);
        const gone = await d.waitFor(s => s.name === 'presence' && s.attrs.from === j.self.attrs.from
            && s.attrs.type === 'unavailable', WAIT, 'unavailable presence after the revocation');

        check('mixed-case room: the revocation removes the member (307)', parseKick(gone).kicked, show(gone));
    });

    return checks;
}

// refusals run while an admitted participant is in existingRoom.
async function refusals(existingRoom) {
    await scenario('wrong key', async open => {
        const d = await open();

        expectRefused('wrong key', await request(d, existingRoom, { key: cfg.keys.wrong }), 403, TEXT_MISMATCH);
        const j = await join(d, existingRoom);

        check('wrong key: joining anyway is refused', !j.ok, show(j.self));
    });
    await scenario('no key', async open => {
        const d = await open();

        expectRefused('no key', await request(d, room('nokey')), 401, TEXT_MISSING);
    });
    await scenario('room elsewhere', async open => {
        const d = await open();

        for (const [ what, jid ] of [
            [ 'on another MUC host', `elsewhere-${cfg.tag}@conference.other.example` ],
            [ 'with a resource', `${room('resource')}/nick` ],
            [ 'without a local part', cfg.muc ]
        ]) {
            const rep = await request(d, jid, { key: cfg.keys.good });

            check(`room elsewhere: a room ${what} is refused, even with a valid key`, rep.attrs.type === 'error', show(rep));
        }
    });
    await scenario('skipped request', async open => {
        const d = await open();
        const j = await join(d, existingRoom);

        check('skipped request: joining an admitted room is refused', !j.ok, show(j.self));
        check('skipped request: refused with registration-required (members-only)',
            j.error === 'registration-required', show(j.self));
        const n = await join(d, room('neverrequested'));

        check('skipped request: creating a room is refused', !n.ok, show(n.self));
    });
}

main().then(cs => {
    process.stdout.write(`INTEROP-RESULT ${JSON.stringify({ client: which, checks: cs, notes: notes.map(redact) })}\n`);
    process.exit(0);
}, err => {
    check('the script ran to the end', false, err.stack ?? String(err));
    process.stdout.write(`INTEROP-RESULT ${JSON.stringify({ client: which, checks })}\n`);
    process.exit(1);
});
