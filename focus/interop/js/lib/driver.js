// The part of a client driver that does not depend on the XMPP library:
// every incoming stanza (as an ltx element) goes into a log that waitFor
// searches, so a check never misses a stanza that arrived before it looked.

let nextId = 0;

export class Driver {
    constructor(name, redact) {
        this.name = name;
        this.redact = redact;
        this.inbox = [];
        this.waiters = new Set();
        this.trace = [];
    }

    // received is called by the concrete driver for each incoming stanza.
    received(stanza) {
        this.inbox.push(stanza);
        this.note('in', stanza.toString());
        for (const w of [ ...this.waiters ]) {
            if (w.pred(stanza)) {
                this.waiters.delete(w);
                clearTimeout(w.timer);
                w.resolve(stanza);
            }
        }
    }

    note(dir, text) {
        this.trace.push(`${dir} ${this.redact(text)}`);
        if (this.trace.length > 200) {
            this.trace.shift();
        }
    }

    // waitFor resolves with the first stanza (already received or to come)
    // that matches pred, or rejects after ms.
    waitFor(pred, ms, what) {
        const seen = this.inbox.find(pred);

        if (seen) {
            return Promise.resolve(seen);
        }

        return new Promise((resolve, reject) => {
            const w = { pred, resolve };

            w.timer = setTimeout(() => {
                this.waiters.delete(w);
                reject(new Error(`${this.name}: no ${what} within ${ms} ms`));
            }, ms);
            this.waiters.add(w);
        });
    }

    // iq sends an IQ description and waits for the result or error with its id.
    async iq(desc, ms = 10000) {
        const id = `kfi${++nextId}`;

        desc.attrs.id = id;
        this.sendDesc(desc);

        return this.waitFor(s => s.name === 'iq' && s.attrs.id === id
            && (s.attrs.type === 'result' || s.attrs.type === 'error'), ms, `reply to iq ${id}`);
    }

    // sendDesc builds desc with the library's own builder and sends it.
    sendDesc(_desc) {
        throw new Error('not implemented by this driver');
    }

    // lastTrace is the recent stanza log with keys redacted.
    lastTrace(n = 30) {
        return this.trace.slice(-n).join('\n');
    }
}
