// Driver for xmpp.js (@xmpp/client): plain c2s TCP, SASL ANONYMOUS.

import { client, xml } from '@xmpp/client';

import { Driver } from './driver.js';

function build(desc) {
    const kids = desc.children.map(build);

    if (desc.text !== undefined) {
        kids.push(desc.text);
    }

    return xml(desc.name, { ...desc.attrs }, ...kids);
}

export class XmppJsDriver extends Driver {
    static async connect(cfg, redact) {
        const d = new XmppJsDriver('xmpp.js', redact);

        // No username: @xmpp/client picks SASL ANONYMOUS.
        d.xmpp = client({ service: `xmpp://${cfg.c2s}`, domain: cfg.domain });
        d.xmpp.on('error', err => d.note('error', String(err)));
        d.xmpp.on('stanza', s => d.received(s));
        // No automatic reconnect: a dropped stream must fail the test.
        d.xmpp.reconnect.stop();
        const address = await d.xmpp.start();

        d.jid = address.toString();

        return d;
    }

    sendDesc(desc) {
        const s = build(desc);

        this.note('out', s.toString());
        this.xmpp.send(s).catch(err => this.note('error', String(err)));
    }

    async close() {
        try {
            await this.xmpp.stop();
        } catch (err) {
            this.note('error', `stop: ${err}`);
        }
    }
}
