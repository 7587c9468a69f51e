// lib-jitsi-meet itself (the npm package lib-jitsi-meet 1.0.6, a build of
// November 2016, stock: no clientKey property, so the key travels in the
// room-prefix form) in a real browser against Prosody over BOSH and keyfocus.
// It reports each step to the Go test with POST /event and the verdict with
// POST /result ({checks: [{name, ok, detail}]}). The Go test redacts keys from
// everything it prints.
'use strict';

(async function main() {
    const checks = [];
    const post = (path, body) => fetch(path, { method: 'POST', body: JSON.stringify(body) });
    const check = (name, ok, detail = '') => {
        checks.push({ name, ok: Boolean(ok), detail: String(detail) });
        document.getElementById('out').textContent += `${ok ? 'ok  ' : 'FAIL'} ${name}\n`;

        return Boolean(ok);
    };
    const cfg = await (await fetch('/config')).json();
    const J = window.JitsiMeetJS;
    const CE = J.events.conference;
    const timeout = (ms, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms));

    J.setLogLevel(J.logLevels.WARN);
    try {
        await J.init({ disableAudioLevels: true });
    } catch (err) {
        check('JitsiMeetJS.init', false, err);
    }

    function connect() {
        const conn = new J.JitsiConnection(null, null, {
            hosts: { domain: cfg.domain, muc: cfg.muc, focus: cfg.focus },
            bosh: '/http-bind'
        });

        return new Promise((resolve, reject) => {
            conn.addEventListener(J.events.connection.CONNECTION_ESTABLISHED, () => resolve(conn));
            conn.addEventListener(J.events.connection.CONNECTION_FAILED, (e, msg) => reject(new Error(`connection failed: ${e} ${msg}`)));
            conn.connect();
        });
    }

    // enter joins a conference and resolves with the first of CONFERENCE_JOINED
    // or CONFERENCE_FAILED (as {joined} or {failed, error, args}).
    function enter(conn, name) {
        const conf = conn.initJitsiConference(name, { openSctp: true, disableAudioLevels: true });
        const outcome = new Promise(resolve => {
            conf.on(CE.CONFERENCE_JOINED, () => resolve({ joined: true, conf }));
            conf.on(CE.CONFERENCE_FAILED, (error, ...args) => resolve({ failed: true, error, args, conf }));
        });

        conf.join();

        return Promise.race([ outcome, timeout(15000, `outcome of joining ${name}`) ]);
    }

    // describe says how joining ended, for check details.
    const describe = r => (r.failed ? JSON.stringify([ r.error, ...r.args ]) : 'CONFERENCE_JOINED');

    const step = async (name, fn) => {
        try {
            await fn();
        } catch (err) {
            check(`${name}: ran to the end`, false, err && err.stack || err);
        }
    };

    await step('admitted', async () => {
        const conn = await connect();

        check('admitted: anonymous BOSH login', true);
        const r = await enter(conn, `${cfg.keys.prefix}${cfg.separator}ljm-${cfg.tag}`);

        check('admitted: CONFERENCE_JOINED', r.joined, describe(r));
        if (r.joined) {
            // The focus must not be listed as a participant (isFocusJid).
            await new Promise(res => setTimeout(res, 300));
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
        const r = await enter(conn, `${cfg.keys.wrong}${cfg.separator}ljm-wrong-${cfg.tag}`);

        check('wrong key: CONFERENCE_FAILED with RESERVATION_ERROR', r.failed && r.error === J.errors.conference.RESERVATION_ERROR,
            describe(r));
        check('wrong key: error code 403', r.failed && String(r.args[0]) === '403', JSON.stringify(r.args));
        check('wrong key: the seed\'s text', r.failed && r.args[1] === 'Client Name / Client Key pair mismatch. Please Retry',
            JSON.stringify(r.args));
        conn.disconnect();
    });

    await step('no key', async () => {
        const conn = await connect();
        const r = await enter(conn, `ljm-nokey-${cfg.tag}`);

        check('no key: CONFERENCE_FAILED with RESERVATION_ERROR 401',
            r.failed && r.error === J.errors.conference.RESERVATION_ERROR && String(r.args[0]) === '401',
            describe(r));
        conn.disconnect();
    });

    await step('revoked', async () => {
        const conn = await connect();
        const roomName = `${cfg.keys.revoke}${cfg.separator}ljm-revoked-${cfg.tag}`;
        const r = await enter(conn, roomName);

        if (!check('revoked: before: CONFERENCE_JOINED', r.joined, describe(r))) {
            return;
        }
        const kicked = new Promise(resolve => r.conf.on(CE.KICKED, (...args) => resolve(args)));

        // The Go test revokes the key when it sees this event.
        await post('/event', { event: 'joined-revoke' });
        const args = await Promise.race([ kicked, timeout(15000, 'KICKED after the revocation') ]);

        check('revoked: KICKED', true, JSON.stringify(args));
        const conn2 = await connect();
        const again = await enter(conn2, roomName);

        check('revoked: joining again fails with RESERVATION_ERROR 403',
            again.failed && again.error === J.errors.conference.RESERVATION_ERROR && String(again.args[0]) === '403',
            describe(again));
        conn.disconnect();
        conn2.disconnect();
    });

    await post('/result', { checks });
})().catch(err => fetch('/result', { method: 'POST',
    body: JSON.stringify({ checks: [ { name: 'the page ran', ok: false, detail: String(err && err.stack || err) } ] }) }));
