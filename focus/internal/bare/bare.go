// Package bare is the baseline of the benchmarks: an XEP-0114 component that
// answers every conference request at once with ready='true' (and disco#info
// with a component identity) and does no room work at all. Run beside
// keyfocus on the same Prosody, it shows what the XMPP round trip itself costs.
package bare

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
)

const (
	nsFocus     = "http://jitsi.org/protocol/focus"
	nsStanzas   = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
)

// Config says where the component connects and as what.
type Config struct {
	Addr   string // Prosody's component port, host:port
	Name   string // component address, e.g. bare.meet.example
	Secret string
	Logger *slog.Logger
}

// Component is a connected bare component.
type Component struct {
	name     string
	sess     *xmpp.Session
	conn     net.Conn
	done     chan struct{}
	err      error
	log      *slog.Logger
	answered atomic.Uint64
}

// Start connects and handshakes, then serves in the background until Close
// or the connection drops.
func Start(ctx context.Context, cfg Config) (*Component, error) {
	name, err := jid.Parse(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("bare: component name %q: %w", cfg.Name, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("bare: connect to %s: %w", cfg.Addr, err)
	}
	sess, err := component.NewSession(ctx, name, []byte(cfg.Secret), conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("bare: handshake as %s at %s: %w", cfg.Name, cfg.Addr, err)
	}
	c := &Component{name: name.String(), sess: sess, conn: conn, done: make(chan struct{}), log: cfg.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	go func() {
		c.err = sess.Serve(xmpp.HandlerFunc(c.handle))
		conn.Close()
		close(c.done)
	}()
	return c, nil
}

// Answered is how many conference requests got ready='true'.
func (c *Component) Answered() uint64 { return c.answered.Load() }

// Done is closed when the stream has ended.
func (c *Component) Done() <-chan struct{} { return c.done }

// Close ends the stream and waits for the serve loop.
func (c *Component) Close() error {
	err := c.sess.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

type iqIn struct {
	XMLName xml.Name
	ID      string `xml:"id,attr"`
	Type    string `xml:"type,attr"`
	From    string `xml:"from,attr"`
	Conf    *struct {
		Room string `xml:"room,attr"`
	} `xml:"http://jitsi.org/protocol/focus conference"`
	Disco *struct{} `xml:"http://jabber.org/protocol/disco#info query"`
}

func attr(k, v string) xml.Attr { return xml.Attr{Name: xml.Name{Local: k}, Value: v} }

// handle answers in the serve loop itself: no round trips, nothing slow.
func (c *Component) handle(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local != "iq" {
		return nil
	}
	var iq iqIn
	d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), t))
	if err := d.Decode(&iq); err != nil {
		c.log.Debug("bare: unreadable IQ", "err", err)
		return nil // Serve answers service-unavailable for an unanswered get/set
	}
	if iq.Type != "set" && iq.Type != "get" {
		return nil
	}
	out := xml.StartElement{Name: xml.Name{Local: "iq"}, Attr: []xml.Attr{attr("id", iq.ID), attr("from", c.name), attr("to", iq.From)}}
	var body []xml.Token
	switch {
	case iq.Type == "set" && iq.Conf != nil && iq.Conf.Room != "":
		out.Attr = append(out.Attr, attr("type", "result"))
		conf := xml.StartElement{Name: xml.Name{Space: nsFocus, Local: "conference"},
			Attr: []xml.Attr{attr("room", iq.Conf.Room), attr("ready", "true"), attr("focusjid", c.name)}}
		prop := xml.StartElement{Name: xml.Name{Space: nsFocus, Local: "property"},
			Attr: []xml.Attr{attr("name", "authentication"), attr("value", "false")}}
		body = []xml.Token{conf, prop, prop.End(), conf.End()}
		c.answered.Add(1)
	case iq.Type == "get" && iq.Disco != nil:
		// What lib-jitsi-meet asks <focusjid>/focus right after joining.
		out.Attr = append(out.Attr, attr("type", "result"))
		q := xml.StartElement{Name: xml.Name{Space: nsDiscoInfo, Local: "query"}}
		id := xml.StartElement{Name: xml.Name{Space: nsDiscoInfo, Local: "identity"},
			Attr: []xml.Attr{attr("category", "component"), attr("type", "generic"), attr("name", "bare")}}
		f := xml.StartElement{Name: xml.Name{Space: nsDiscoInfo, Local: "feature"}, Attr: []xml.Attr{attr("var", nsDiscoInfo)}}
		body = []xml.Token{q, id, id.End(), f, f.End(), q.End()}
	default:
		cond := "service-unavailable"
		typ := "cancel"
		if iq.Conf != nil {
			cond, typ = "bad-request", "modify"
		}
		out.Attr = append(out.Attr, attr("type", "error"))
		e := xml.StartElement{Name: xml.Name{Local: "error"}, Attr: []xml.Attr{attr("type", typ)}}
		ce := xml.StartElement{Name: xml.Name{Space: nsStanzas, Local: cond}}
		body = []xml.Token{e, ce, ce.End(), e.End()}
	}
	if err := t.EncodeToken(out); err != nil {
		return err
	}
	for _, tok := range body {
		if err := t.EncodeToken(tok); err != nil {
			return err
		}
	}
	return t.EncodeToken(out.End())
}
