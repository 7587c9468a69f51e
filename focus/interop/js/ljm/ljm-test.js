// lib-jitsi-meet itself in a real browser against Prosody over BOSH and
// keyfocus, in two stock builds (neither sends a clientKey property, so the
// key travels in the room-prefix form):
//   2016: npm lib-jitsi-meet 1.0.6 (November 2016) with jQuery 2, Strophe 1.2
//         and strophejs-plugins disco and caps, as jitsi-meet loaded it then;
//   2021: npm @lyno/lib-jitsi-meet 2.6726.2, a build of lib-jitsi-meet of
//         December 2021 (jQuery 3.6 beside it).
// The page is /2016.html or /2021.html; /config says which (generation).
// It reports each step to the Go test with POST /event and the verdict with
// POST /result ({checks: [{name, ok, detail}], notes: [...]}). The Go test
// redacts keys from everything it prints.
'use strict';

(async function main() {
    const checks = [];
    const notes = [];
    const post = (path, body) => fetch(path, { method: 'POST', body: JSON.stringify(body) });
    const check = (name, ok, detail = '') => {
        checks.push({ name, ok: Boolean(ok), detail: String(detail) });
        document.getElementById('out').textContent += `${ok ? 'ok  ' : 'FAIL'} ${name}\n`;

        return Boolean(ok);
    };
    const cfg = await (await fetch('/config')).json();
    const J = window.JitsiMeetJS;
    const CE = J.events.conference;
    const RESERVATION_ERROR = J.errors.conference.RESERVATION_ERROR;
    const timeout = (ms, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms));

    J.setLogLevel(J.logLevels.WARN);
    try {
        await J.init({ disableAudioLevels: true });
    } catch (err) {
        check('JitsiMeetJS.init', false, err);
    }

    function connect() {
        // 2016 reads options.bosh, 2021 options.serviceUrl (or bosh).
        const conn = new J.JitsiConnection(null, null, {
            hosts: { domain: cfg.domain, muc: cfg.muc, focus: cfg.focus },
            bosh: '/http-bind',
            serviceUrl: '/http-bind'
        });

        return new Promise((resolve, reject) => {
            conn.addEventListener(J.events.connection.CONNECTION_ESTABLISHED, () => resolve(conn));
            conn.addEventListener(J.events.connection.CONNECTION_FAILED, (e, msg) => reject(new Error(`connection failed: ${e} ${msg}`)));
            conn.connect();
        });
    }

    // enter joins a conference and resolves with how that ended:
    //   {joined}                         CONFERENCE_JOINED
    //   {failed, error, args}            CONFERENCE_FAILED (error = a JitsiConferenceErrors value)
    //   {reservation: {event, code, text}} the library's moderator read a
    //       reservation error (Moderator._allocateConferenceFocusError emits
    //       XMPPEvents.RESERVATION_ERROR with code and text), whether or not it
    //       reached the application as CONFERENCE_FAILED.
    function enter(conn, name) {
        const conf = conn.initJitsiConference(name, { openSctp: true, disableAudioLevels: true });
        const outcome = new Promise(resolve => {
            let reservation;

            conf.on(CE.CONFERENCE_JOINED, () => resolve({ joined: true, conf }));
            conf.on(CE.CONFERENCE_FAILED, (error, ...args) => resolve({ failed: true, error, args, reservation, conf }));

            // Watch the moderator's own emitter: what the library made of the
            // focus's answer before the application sees it.
            const em = conf.room && conf.room.moderator && conf.room.moderator.eventEmitter;

            if (em) {
                const emit = em.emit.bind(em);

                em.emit = (event, ...args) => {
                    const isReservation = args.length === 2 && /^\d{3}$/.test(String(args[0]))
                        && (event === 'xmpp.room_reservation_error' || event === undefined);

                    if (isReservation) {
                        reservation = { event: String(event), code: String(args[0]), text: args[1] };
                    }
                    const r = emit(event, ...args);

                    if (isReservation) {
                        // CONFERENCE_FAILED, if it comes, came synchronously
                        // inside emit; this resolve is a no-op then.
                        resolve({ reservation, conf });
                    }

                    return r;
                };
            }
        });

        conf.join();

        return Promise.race([ outcome, timeout(15000, `outcome of joining ${name}`) ]);
    }

    const describe = r => (r.joined ? 'CONFERENCE_JOINED'
        : JSON.stringify({ failed: r.failed ? [ r.error, ...r.args ] : undefined, reservation: r.reservation }));

    // expectRefused checks a refusal as lib-jitsi-meet handles it: the
    // moderator reads code and text, and the application gets
    // CONFERENCE_FAILED(RESERVATION_ERROR, code, text) and stops.
    function expectRefused(name, r, code, text) {
        check(`${name}: the library reads reservation-error code ${code}`,
            r.reservation && r.reservation.code === String(code), describe(r));
        if (text !== undefined) {
            check(`${name}: the library reads the text "${text}"`, r.reservation && r.reservation.text === text, describe(r));
        }
        const reached = r.failed && r.error === RESERVATION_ERROR && String(r.args[0]) === String(code);

        if (r.reservation && r.reservation.event === 'undefined' && !r.failed) {
            // The build emits the event under an undefined name (its
            // moderator's XMPPEvents import is broken), so the application
            // never hears of it: a defect of that build, not of the answer.
            notes.push(`${name}: this build's moderator read the refusal (${r.reservation.code}) but emitted it `
                + 'as event "undefined" (XMPPEvents import broken in the build), so no CONFERENCE_FAILED reaches '
                + 'the application: the join hangs');
        } else {
            check(`${name}: CONFERENCE_FAILED(RESERVATION_ERROR, ${code}) reaches the application`, reached, describe(r));
        }
    }

    const step = async (name, fn) => {
        try {
            await fn();
        } catch (err) {
            check(`${name}: ran to the end`, false, err && err.stack || err);
        }
    };
    const room = what => `ljm${cfg.generation}-${what}-${cfg.tag}`;

    await step('admitted', async () => {
        const conn = await connect();

        check('admitted: anonymous BOSH login', true);
        const begin = performance.now();
        const r = await enter(conn, `${cfg.keys.prefix}${cfg.separator}${room('admitted')}`);

        notes.push(`join() -> CONFERENCE_JOINED (request, new room, MUC join): ${(performance.now() - begin).toFixed(0)} ms`);

        check('admitted: CONFERENCE_JOINED', r.joined, describe(r));
        if (r.joined) {
            // The focus must not be listed as a participant (isFocusJid).
            const ps = r.conf.getParticipants().map(p => p.getId());

            check('admitted: the focus is not among the participants', !ps.includes('focus'), JSON.stringify(ps));
            check('admitted: the local role is not moderator (nobody is owner but the focus)',
                !r.conf.isModerator(), String(r.conf.isModerator()));
            r.conf.leave();
        }
        conn.disconnect();
    });

    await step('wrong key', async () => {
        const conn = await connect();

        expectRefused('wrong key', await enter(conn, `${cfg.keys.wrong}${cfg.separator}${room('wrong')}`), 403,
            'Client Name / Client Key pair mismatch. Please Retry');
        conn.disconnect();
    });

    await step('no key', async () => {
        const conn = await connect();

        expectRefused('no key', await enter(conn, room('nokey')), 401,
            'Client Name / Client Key is not Supplied. Please Retry');
        conn.disconnect();
    });

    await step('revoked', async () => {
        const conn = await connect();
        const roomName = `${cfg.keys.revoke}${cfg.separator}${room('revoked')}`;
        const r = await enter(conn, roomName);

        if (!check('revoked: before: CONFERENCE_JOINED', r.joined, describe(r))) {
            return;
        }
        const kicked = new Promise(resolve => r.conf.on(CE.KICKED, (...args) => resolve(args)));

        // The Go test revokes the key when it sees this event.
        const asked = performance.now();

        await post('/event', { event: 'joined-revoke' });
        const args = await Promise.race([ kicked, timeout(15000, 'KICKED after the revocation') ]);

        notes.push(`revocation asked (keys revoke through the store) -> KICKED in the browser: ${(performance.now() - asked).toFixed(0)} ms`);

        check('revoked: KICKED', true);
        if (cfg.generation !== '2016') {
            // KICKED(actorParticipant, reason, isReplaced); the 2016 build
            // emits KICKED without arguments.
            check('revoked: KICKED carries the reason', args[1] === 'Your client key was revoked',
                JSON.stringify(args.slice(1)));
        }
        const conn2 = await connect();

        expectRefused('revoked: joining again', await enter(conn2, roomName), 403);
        conn.disconnect();
        conn2.disconnect();
    });

    // Media. keyfocus replaces Jicofo, so no videobridge is ever allocated
    // and no focus sends a Jingle session-initiate. Two people still get
    // audio and video: lib-jitsi-meet (2017+) opens a peer-to-peer Jingle
    // session between them through the room, which the members-only gate
    // must let through. (A third person ends P2P and nobody gets media:
    // see the report in README.md.)
    if (cfg.generation !== '2016') {
        await step('p2p media', async () => {
            const roomName = `${cfg.keys.prefix}${cfg.separator}${room('p2p')}`;
            const people = [];

            for (let i = 0; i < 2; i++) {
                const conn = await connect();
                const tracks = await J.createLocalTracks({ devices: [ 'audio', 'video' ] });
                const conf = conn.initJitsiConference(roomName, { p2p: { enabled: true, stunServers: [] } });
                const p = { conn, conf, kinds: new Set(), p2p: false };

                p.ready = new Promise(resolve => {
                    const maybe = () => p.p2p && p.kinds.has('audio') && p.kinds.has('video') && resolve();

                    conf.on(CE.TRACK_ADDED, t => {
                        if (!t.isLocal()) {
                            p.kinds.add(t.getType());
                            maybe();
                        }
                    });
                    conf.on(CE.P2P_STATUS, (c, on) => {
                        p.p2p = on;
                        maybe();
                    });
                });
                const joined = new Promise(resolve => conf.on(CE.CONFERENCE_JOINED, resolve));

                for (const t of tracks) {
                    await conf.addTrack(t);
                }
                conf.join();
                await Promise.race([ joined, timeout(15000, `CONFERENCE_JOINED of person ${i + 1}`) ]);
                people.push(p);
            }
            try {
                await Promise.race([ Promise.all(people.map(p => p.ready)), timeout(30000, 'P2P media both ways') ]);
            } catch (err) {
                // report below what each one got
            }
            check('p2p media: two admitted people get a P2P session', people.every(p => p.p2p),
                JSON.stringify(people.map(p => ({ p2p: p.p2p, remote: [ ...p.kinds ] }))));
            check('p2p media: each receives the other\'s audio and video',
                people.every(p => p.kinds.has('audio') && p.kinds.has('video')),
                JSON.stringify(people.map(p => [ ...p.kinds ])));
            for (const p of people) {
                p.conf.leave();
                p.conn.disconnect();
            }
        });
    }

    // By hand only (KEYFOCUS_INTEROP_THREE=1): a third person joins the P2P
    // call. It is an observation over a fixed 10 s, so it reports notes, not
    // checks.
    if (cfg.three && cfg.generation !== '2016') {
        await step('three people', async () => {
            const roomName = `${cfg.keys.prefix}${cfg.separator}${room('three')}`;
            const people = [];

            for (let i = 0; i < 3; i++) {
                const conn = await connect();
                const tracks = await J.createLocalTracks({ devices: [ 'audio', 'video' ] });
                const conf = conn.initJitsiConference(roomName, { p2p: { enabled: true, stunServers: [] } });
                const p = { conn, conf, remote: 0, p2p: false };

                conf.on(CE.TRACK_ADDED, t => !t.isLocal() && p.remote++);
                conf.on(CE.TRACK_REMOVED, t => !t.isLocal() && p.remote--);
                conf.on(CE.P2P_STATUS, (c, on) => {
                    p.p2p = on;
                });
                const joined = new Promise(resolve => conf.on(CE.CONFERENCE_JOINED, resolve));

                for (const t of tracks) {
                    await conf.addTrack(t);
                }
                conf.join();
                await joined;
                people.push(p);
                await new Promise(resolve => setTimeout(resolve, 5000));
                notes.push(`three people: ${i + 1} in the room: ${JSON.stringify(people.map(q => ({ p2p: q.p2p, remoteTracks: q.remote })))}`);
            }
            await new Promise(resolve => setTimeout(resolve, 10000));
            notes.push(`three people: 10 s later: ${JSON.stringify(people.map(q => ({ p2p: q.p2p, remoteTracks: q.remote })))}`);
            for (const p of people) {
                p.conf.leave();
                p.conn.disconnect();
            }
        });
    }

    // Last, as it takes the focus away: keyfocus shuts down gracefully (it
    // leaves the rooms without ending them) while someone is in a meeting.
    // lib-jitsi-meet treats the focus occupant leaving as the end of the
    // conference (ChatRoom: "Focus has left the room - leaving conference",
    // CONFERENCE_FAILED with FOCUS_LEFT; jitsi-meet then reloads, which
    // sends a new conference request).
    await step('focus shutdown', async () => {
        const conn = await connect();
        const r = await enter(conn, `${cfg.keys.prefix}${cfg.separator}${room('shutdown')}`);

        if (!check('focus shutdown: before: CONFERENCE_JOINED', r.joined, describe(r))) {
            return;
        }
        const ended = new Promise(resolve => {
            r.conf.on(CE.CONFERENCE_FAILED, (error, ...args) => resolve({ failed: error, args }));
            r.conf.on(CE.CONFERENCE_LEFT, () => resolve({ left: true }));
            r.conf.on(CE.KICKED, () => resolve({ kicked: true }));

            // Where the room hands the departure on: if that does not end
            // the conference synchronously, resolve with what it was told.
            const room = r.conf.room;

            if (room && typeof room.onParticipantLeft === 'function') {
                const orig = room.onParticipantLeft.bind(room);

                room.onParticipantLeft = (jid, isFocus, ...rest) => {
                    let threw;

                    try {
                        return orig(jid, isFocus, ...rest);
                    } catch (err) {
                        threw = String(err);
                        throw err;
                    } finally {
                        if (/\/focus$/.test(jid)) {
                            resolve({ participantLeft: 'focus', threw });
                        }
                    }
                };
            }
        });

        await post('/event', { event: 'joined-shutdown' });
        const how = await Promise.race([ ended, timeout(15000, 'reaction to the focus leaving') ]);

        if (how.participantLeft && cfg.generation === '2021') {
            // That build's moderator recognises the focus leaving by its nick
            // ("Focus has left the room - leaving conference") but emits
            // FOCUS_LEFT under an undefined name, which lands on unrelated
            // listeners registered under the same broken name.
            notes.push(`focus shutdown: this build saw the focus leave but does not tell the application `
                + `(FOCUS_LEFT emitted as "undefined"; ${how.threw ? `a handler then threw ${how.threw}` : 'nothing listens'}): `
                + 'the client stays in the room without a focus');
        } else {
            notes.push(`focus shutdown: lib-jitsi-meet ended the conference when the focus left: ${JSON.stringify(how)}`);
            check('focus shutdown: the client sees the focus go (CONFERENCE_FAILED with FOCUS_LEFT)',
                how.failed === J.errors.conference.FOCUS_LEFT, JSON.stringify(how));
        }
        conn.disconnect();
    });

    await post('/result', { checks, notes });
})().catch(err => fetch('/result', { method: 'POST',
    body: JSON.stringify({ checks: [ { name: 'the page ran', ok: false, detail: String(err && err.stack || err) } ] }) }));
