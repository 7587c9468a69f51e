// Driver for strophe.js, the library lib-jitsi-meet is built on, over
// websocket (Prosody's mod_websocket), SASL ANONYMOUS. Stanzas are built with
// $iq/$pres and .c()/.t()/.up() as lib-jitsi-meet builds them.

import { parse as parseXML } from 'ltx';
import { $build, Strophe } from 'strophe.js';

import { Driver } from './driver.js';

function build(desc, b) {
    if (!b) {
        b = $build(desc.name, desc.attrs);
    } else {
        b.c(desc.name, desc.attrs);
    }
    if (desc.text !== undefined) {
        b.t(desc.text);
    }
    for (const c of desc.children) {
        build(c, b);
        b.up();
    }

    return b;
}

const statusName = s => Object.keys(Strophe.Status).find(k => Strophe.Status[k] === s) ?? String(s);

export class StropheDriver extends Driver {
    static connect(cfg, redact) {
        const d = new StropheDriver('strophe.js', redact);

        d.onStatus = [];
        d.conn = new Strophe.Connection(cfg.websocket, { protocol: 'ws' });
        d.conn.addHandler(elem => {
            d.received(parseXML(Strophe.serialize(elem)));

            return true; // keep the handler
        });

        return new Promise((resolve, reject) => {
            // connect(jid=domain, pass=null): anonymous login, as
            // lib-jitsi-meet's XMPP.connect does for guests.
            d.conn.connect(cfg.domain, null, status => {
                d.note('status', statusName(status));
                for (const f of d.onStatus) {
                    f(status);
                }
                if (status === Strophe.Status.CONNECTED) {
                    d.jid = d.conn.jid;
                    resolve(d);
                } else if (status === Strophe.Status.CONNFAIL || status === Strophe.Status.AUTHFAIL
                        || status === Strophe.Status.ERROR) {
                    reject(new Error(`strophe.js: connection failed (${statusName(status)})`));
                }
            });
        });
    }

    sendDesc(desc) {
        const b = build(desc);

        this.note('out', Strophe.serialize(b.tree()));
        this.conn.send(b.tree());
        this.conn.flush();
    }

    close() {
        return new Promise(resolve => {
            if (!this.conn.connected) {
                resolve();

                return;
            }
            const done = setTimeout(resolve, 3000);

            this.onStatus.push(status => {
                if (status === Strophe.Status.DISCONNECTED) {
                    clearTimeout(done);
                    resolve();
                }
            });
            this.conn.disconnect('interop test done');
        });
    }
}
