package focus

import (
	"context"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"

	"github.com/keyfocus/keyfocus/focus/xmppx"
)

// Namespaces the focus speaks.
const (
	nsFocus     = "http://jitsi.org/protocol/focus"
	nsColibri   = "http://jitsi.org/protocol/colibri"
	nsStanzas   = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	nsDiscoItem = "http://jabber.org/protocol/disco#items"
	nsPing      = "urn:xmpp:ping"
	nsMUC       = "http://jabber.org/protocol/muc"
	nsMUCUser   = "http://jabber.org/protocol/muc#user"
	nsMUCAdmin  = "http://jabber.org/protocol/muc#admin"
	nsMUCOwner  = "http://jabber.org/protocol/muc#owner"
	nsData      = "jabber:x:data"
)

// errDisconnected is what waiting IQs get when the connection drops.
var errDisconnected = errors.New("focus: disconnected from Prosody")

// iqError is an error reply to one of our IQs.
type iqError struct {
	Type, Condition, Text string
}

func (e *iqError) Error() string {
	s := "xmpp error " + e.Type + "/" + e.Condition
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// conn is one component session to Prosody. It tracks the IQs we send itself
// (replies come through the handler like any stanza), so no goroutine ever
// waits inside mellium's Serve loop and no response reader can be left open.
type conn struct {
	s       *xmpp.Session
	netConn net.Conn
	self    string // component JID

	mu      sync.Mutex
	pending map[string]func(*xmppx.Element, error)
	from    map[string]string // id -> where its reply must come from
	closed  bool
	seq     atomic.Uint64
	prefix  string
}

func dialConn(ctx context.Context, addr, component_ string, secret []byte) (*conn, error) {
	cj, err := jid.Parse(component_)
	if err != nil {
		return nil, fmt.Errorf("component address %q: %w", component_, err)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A peer that accepts and stays silent must not hold the dial (and
	// shutdown) forever: when hctx ends (timeout or cancel) the connection is
	// closed, which ends any read in progress. Not a deadline: mellium's own
	// cancel handling sets a past deadline and at once clears it again, which
	// races with ours and can leave the read blocked with no deadline at all.
	stopCut := context.AfterFunc(hctx, func() { _ = nc.Close() })
	s, err := component.NewSession(hctx, cj, secret, nc)
	cut := !stopCut()
	if err != nil || cut {
		nc.Close()
		if err == nil {
			err = hctx.Err()
		}
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return &conn{
		s:       s,
		netConn: nc,
		self:    cj.String(),
		pending: make(map[string]func(*xmppx.Element, error)),
		from:    make(map[string]string),
		prefix:  "kf" + rand.Text()[:12] + "-", // unguessable: replies cannot be forged by id
	}, nil
}

// serve runs the session until it ends, handing every top-level element to h.
// Errors returned by h would end the stream, so h never returns one.
func (c *conn) serve(h func(*xmppx.Element)) error {
	handler := xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		el, err := xmppx.Decode(*start, t)
		if err != nil || el == nil {
			// A malformed or oversized stanza: answer IQs, never end the stream.
			el = &xmppx.Element{Name: start.Name, Attr: start.Attr}
			el.SetAttr("kf-malformed", "1")
		}
		if el.Name.Space != component.NSAccept && el.Name.Space != "" {
			return nil // not a stanza of this stream
		}
		if el.Name.Local == "iq" {
			if typ := el.Get("type"); typ == "result" || typ == "error" {
				c.deliver(el)
				return nil
			}
		}
		h(el)
		return nil
	})
	// Not mellium's mux: its IQ router returns an error (which ends the
	// stream) for an IQ without payload or with unparsable addresses, and no
	// stanza may end our stream. handler sees every top-level element of the
	// jabber:component:accept stream and decodes it whole.
	err := c.s.Serve(handler)
	c.failAll()
	return err
}

func (c *conn) deliver(el *xmppx.Element) {
	id := el.Get("id")
	c.mu.Lock()
	cb := c.pending[id]
	if cb != nil && !strings.EqualFold(el.Get("from"), c.from[id]) {
		cb = nil // a reply from someone else: not ours, leave ours waiting
	}
	if cb != nil {
		delete(c.pending, id)
		delete(c.from, id)
	}
	c.mu.Unlock()
	if cb == nil {
		return
	}
	if el.Get("type") == "error" {
		cb(el, stanzaError(el))
		return
	}
	cb(el, nil)
}

// stanzaError extracts the error of an error stanza.
func stanzaError(el *xmppx.Element) *iqError {
	e := &iqError{Type: "cancel", Condition: "undefined-condition"}
	if x := el.Child("", "error"); x != nil {
		if t := x.Get("type"); t != "" {
			e.Type = t
		}
		for _, c := range x.Children {
			if c.Name.Space == nsStanzas {
				if c.Name.Local == "text" {
					e.Text = c.Text
				} else {
					e.Condition = c.Name.Local
				}
			}
		}
	}
	return e
}

func (c *conn) failAll() {
	c.mu.Lock()
	p := c.pending
	c.pending = make(map[string]func(*xmppx.Element, error))
	c.from = make(map[string]string)
	c.closed = true
	c.mu.Unlock()
	for _, cb := range p {
		cb(nil, errDisconnected)
	}
}

// newID returns a fresh stanza id.
func (c *conn) newID() string {
	return c.prefix + strconv.FormatUint(c.seq.Add(1), 36)
}

// track registers cb for the reply to the IQ el (which gets an id if it has
// none). cb runs on the read loop: it must not block.
func (c *conn) track(el *xmppx.Element, cb func(*xmppx.Element, error)) {
	id := el.Get("id")
	if id == "" {
		id = c.newID()
		el.SetAttr("id", id)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cb(nil, errDisconnected)
		return
	}
	c.pending[id] = cb
	c.from[id] = el.Get("to")
	c.mu.Unlock()
}

func (c *conn) untrack(el *xmppx.Element) {
	c.mu.Lock()
	delete(c.pending, el.Get("id"))
	delete(c.from, el.Get("id"))
	c.mu.Unlock()
}

// send writes the stanzas in one flush: Prosody reads them in one chunk and
// handles them back to back, with nothing from other connections between.
func (c *conn) send(ctx context.Context, els ...*xmppx.Element) error {
	if len(els) == 0 {
		return nil
	}
	w := c.s.TokenWriter()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.netConn.SetWriteDeadline(dl)
	} else {
		_ = c.netConn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	}
	var err error
	var toks []xml.Token
	for _, el := range els {
		toks = el.Tokens(toks[:0])
		for _, t := range toks {
			if err = w.EncodeToken(t); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// iq sends el (type get or set) and waits for its reply.
func (c *conn) iq(ctx context.Context, el *xmppx.Element) (*xmppx.Element, error) {
	type res struct {
		el  *xmppx.Element
		err error
	}
	ch := make(chan res, 1)
	c.track(el, func(r *xmppx.Element, err error) { ch <- res{r, err} })
	if err := c.send(ctx, el); err != nil {
		c.untrack(el)
		return nil, err
	}
	select {
	case r := <-ch:
		return r.el, r.err
	case <-ctx.Done():
		c.untrack(el)
		return nil, ctx.Err()
	}
}

// close ends the stream and the connection.
func (c *conn) close() {
	_ = c.s.Close()
	_ = c.netConn.Close()
}

type xmppEl = xmppx.Element

var newEl = xmppx.New

// closeStream sends the closing stream tag; the connection stays open until
// Prosody closes its side (Serve then returns) or close is called.
func (c *conn) closeStream() { _ = c.s.Close() }
