package simulate

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// KeyForm is where a conference request carries the client key (PROTOCOL.md §2).
type KeyForm string

const (
	// FormProperty sends <property name='clientKey' value='KEY'/>.
	FormProperty KeyForm = "property"
	// FormRoom puts the key in the room's local part: KEY<sep>NAME.
	FormRoom KeyForm = "room"
	// FormToken sends the key in the token attribute (lib-jitsi-meet's jwt).
	FormToken KeyForm = "token"
	// FormNone sends no key at all.
	FormNone KeyForm = "none"
)

// ParseKeyForm accepts property, room, token or none.
func ParseKeyForm(s string) (KeyForm, error) {
	switch f := KeyForm(strings.ToLower(s)); f {
	case FormProperty, FormRoom, FormToken, FormNone:
		return f, nil
	}
	return "", fmt.Errorf("key form %q: want property, room, token or none", s)
}

// Property is one <property/> of a conference request. NoValue sends the
// property without a value attribute, as some clients do (openSctp).
type Property struct {
	Name    string
	Value   string
	NoValue bool
}

// RealisticProperties is what lib-jitsi-meet clients of several years send
// besides the key; the focus must ignore all of it.
func RealisticProperties() []Property {
	return []Property{
		{Name: "rtcstatsEnabled", Value: "false"},
		{Name: "visitors-version", Value: "1"},
		{Name: "startAudioMuted", Value: "9"},
		{Name: "startVideoMuted", Value: "9"},
		{Name: "channelLastN", Value: "-1"},
		{Name: "disableRtx", Value: "false"},
		{Name: "openSctp", NoValue: true},
	}
}

// Request is one conference request.
type Request struct {
	// Room is the bare room JID the client wants (name@conference.domain).
	// With FormRoom the key is prefixed to its local part.
	Room string
	// Key is the client key to present (never logged).
	Key string
	// Form says where the key goes; default FormProperty, or FormNone when
	// Key is empty.
	Form KeyForm
	// Separator between key and room name in FormRoom; default "=".
	Separator string
	// Lowercase lowercases the room's local part, as the jitsi-meet web app does.
	Lowercase bool
	// Focus is the focus component's address; default focus.<domain>.
	Focus string
	// Properties are sent besides the key; nil sends RealisticProperties().
	Properties []Property
	// NoExtras sends no property and no machine-uid besides the key.
	NoExtras bool
	// OmitRoom sends no room attribute (a malformed request).
	OmitRoom bool
}

// RoomJID is the room the request asks for: Room, with the key prefixed in
// FormRoom. Join this room after an admitted request.
func (r Request) RoomJID() string {
	if r.form() != FormRoom {
		return r.Room
	}
	local, domain, ok := strings.Cut(r.Room, "@")
	if !ok {
		return r.Room
	}
	sep := r.Separator
	if sep == "" {
		sep = "="
	}
	local = r.Key + sep + local
	if r.Lowercase {
		local = strings.ToLower(local)
	}
	return local + "@" + domain
}

func (r Request) form() KeyForm {
	if r.Form == "" {
		if r.Key == "" {
			return FormNone
		}
		return FormProperty
	}
	return r.Form
}

// Reply is the focus's answer to a conference request.
type Reply struct {
	// Error is set when the request was refused (or failed): condition, text,
	// reservation-error code. Nil for a result.
	Error *StanzaError
	// Ready, FocusJID, Room and Properties are those of the result's <conference/>.
	Ready      bool
	FocusJID   string
	Room       string
	Properties map[string]string
	// RTT is the time from sending the request to reading the reply.
	RTT time.Duration
	// IQ is the whole reply stanza.
	IQ *Element
}

// Admitted reports a result with ready='true'.
func (r *Reply) Admitted() bool { return r != nil && r.Error == nil && r.Ready }

// RequestConference sends the conference request and waits for the reply.
// The error is for transport problems and timeouts only: a refusal is a
// Reply with Error set.
func (p *Participant) RequestConference(ctx context.Context, req Request) (*Reply, error) {
	focus := req.Focus
	if focus == "" {
		focus = "focus." + p.domain
	}
	if _, err := jid.Parse(focus); err != nil {
		return nil, fmt.Errorf("simulate: focus address %q: %w", focus, err)
	}
	conf := &Element{Name: xml.Name{Space: nsFocus, Local: "conference"}}
	attr := func(el *Element, k, v string) {
		el.Attrs = append(el.Attrs, xml.Attr{Name: xml.Name{Local: k}, Value: v})
	}
	if !req.OmitRoom {
		attr(conf, "room", req.RoomJID())
	}
	if !req.NoExtras {
		attr(conf, "machine-uid", p.uid)
	}
	prop := func(pr Property) {
		el := &Element{Name: xml.Name{Space: nsFocus, Local: "property"}}
		attr(el, "name", pr.Name)
		if !pr.NoValue {
			attr(el, "value", pr.Value)
		}
		conf.Children = append(conf.Children, el)
	}
	switch req.form() {
	case FormProperty:
		prop(Property{Name: "clientKey", Value: req.Key})
	case FormToken:
		attr(conf, "token", req.Key)
	case FormRoom, FormNone:
	default:
		return nil, fmt.Errorf("simulate: unknown key form %q", req.Form)
	}
	if !req.NoExtras {
		props := req.Properties
		if props == nil {
			props = RealisticProperties()
		}
		for _, pr := range props {
			prop(pr)
		}
	}
	iq := &Element{Name: xml.Name{Local: "iq"}, Attrs: []xml.Attr{
		{Name: xml.Name{Local: "type"}, Value: "set"},
		{Name: xml.Name{Local: "to"}, Value: focus},
	}, Children: []*Element{conf}}

	begin := time.Now()
	el, err := p.sendIQ(ctx, iq)
	rtt := time.Since(begin)
	if err != nil {
		return nil, fmt.Errorf("simulate: conference request to %s: %w", focus, err)
	}
	if el == nil {
		return nil, errors.New("simulate: conference request: no reply")
	}
	rep := &Reply{RTT: rtt, IQ: el, Properties: map[string]string{}}
	if c := el.Child(nsFocus, "conference"); c != nil {
		rep.Ready = c.AttrValue("ready") == "true"
		rep.FocusJID = c.AttrValue("focusjid")
		rep.Room = c.AttrValue("room")
		for _, pr := range c.All(nsFocus, "property") {
			rep.Properties[pr.AttrValue("name")] = pr.AttrValue("value")
		}
	}
	if rep.Admitted() && rep.FocusJID != "" && el.AttrValue("type") != "error" {
		// Remember the focus of the room, as lib-jitsi-meet does, to notice
		// when it leaves.
		if room, err := normRoom(req.RoomJID()); err == nil {
			p.mu.Lock()
			p.focusOf[room] = rep.FocusJID
			p.mu.Unlock()
		}
	}
	if el.AttrValue("type") == "error" {
		rep.Error = parseStanzaError(el)
		if rep.Error == nil {
			rep.Error = &StanzaError{Condition: "undefined-condition"}
		}
	}
	return rep, nil
}
