package simulate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Element is a parsed XML element: what tests inspect when a typed field is
// not enough. Names carry the resolved namespace (not the prefix).
//
// It deliberately does not reuse focus/xmppx, the focus's own stanza tree:
// the simulator is the client side that tests check the focus with, so a
// decoding or rendering mistake shared by both could not show up in a test.
type Element struct {
	Name     xml.Name
	Attrs    []xml.Attr
	Children []*Element
	Text     string // character data directly inside, concatenated
}

// Attr returns the value of the attribute with this local name (any
// namespace), and whether it is present.
func (e *Element) Attr(local string) (string, bool) {
	if e == nil {
		return "", false
	}
	for _, a := range e.Attrs {
		if a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// AttrValue is Attr without the presence flag.
func (e *Element) AttrValue(local string) string {
	v, _ := e.Attr(local)
	return v
}

// Child returns the first child with this namespace and local name; an
// empty space matches any namespace.
func (e *Element) Child(space, local string) *Element {
	if e == nil {
		return nil
	}
	for _, c := range e.Children {
		if c.Name.Local == local && (space == "" || c.Name.Space == space) {
			return c
		}
	}
	return nil
}

// All returns every child with this namespace and local name (empty space: any).
func (e *Element) All(space, local string) []*Element {
	if e == nil {
		return nil
	}
	var out []*Element
	for _, c := range e.Children {
		if c.Name.Local == local && (space == "" || c.Name.Space == space) {
			out = append(out, c)
		}
	}
	return out
}

// String renders the element as XML (for logs and failure messages).
func (e *Element) String() string {
	if e == nil {
		return "<nil>"
	}
	var b strings.Builder
	e.write(&b, "")
	return b.String()
}

func (e *Element) write(b *strings.Builder, parentNS string) {
	b.WriteByte('<')
	b.WriteString(e.Name.Local)
	if e.Name.Space != parentNS {
		fmt.Fprintf(b, " xmlns=%s", quoteAttr(e.Name.Space))
	}
	for _, a := range e.Attrs {
		if a.Name.Local == "xmlns" || a.Name.Space == "xmlns" {
			continue
		}
		name := a.Name.Local
		if a.Name.Space == "http://www.w3.org/XML/1998/namespace" {
			name = "xml:" + name
		}
		fmt.Fprintf(b, " %s=%s", name, quoteAttr(a.Value))
	}
	if len(e.Children) == 0 && e.Text == "" {
		b.WriteString("/>")
		return
	}
	b.WriteByte('>')
	xml.EscapeText(stringWriter{b}, []byte(e.Text))
	for _, c := range e.Children {
		c.write(b, e.Name.Space)
	}
	fmt.Fprintf(b, "</%s>", e.Name.Local)
}

type stringWriter struct{ b *strings.Builder }

func (w stringWriter) Write(p []byte) (int, error) { return w.b.Write(p) }

func quoteAttr(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	xml.EscapeText(stringWriter{&b}, []byte(s))
	b.WriteByte('\'')
	return b.String()
}

// readElement reads one whole element from r: the first start token and
// everything up to its matching end. Tokens after it are not consumed.
func readElement(r xml.TokenReader) (*Element, error) {
	var stack []*Element
	var root *Element
	for {
		tok, err := r.Token()
		if tok != nil {
			switch t := tok.(type) {
			case xml.StartElement:
				if err := checkNames(t); err != nil {
					return nil, err
				}
				el := &Element{Name: t.Name, Attrs: append([]xml.Attr(nil), t.Attr...)}
				if len(stack) > 0 {
					p := stack[len(stack)-1]
					p.Children = append(p.Children, el)
				} else if root == nil {
					root = el
				}
				stack = append(stack, el)
			case xml.EndElement:
				if len(stack) == 0 {
					break
				}
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return root, nil
				}
			case xml.CharData:
				if len(stack) > 0 {
					stack[len(stack)-1].Text += string(t)
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && root != nil {
				// Some readers end at the element's end without returning it.
				return root, nil
			}
			if errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// checkNames refuses a start element whose local name, or an attribute's,
// cannot stand alone. encoding/xml checks a prefixed name as a whole, so
// <p:0 xmlns:p='u'/> and <a p:0='x'/> are read with the local name "0"; this
// package writes names without their prefixes, and "0" alone is no name.
func checkNames(t xml.StartElement) error {
	names := []string{t.Name.Local}
	for _, a := range t.Attr {
		names = append(names, a.Name.Local)
	}
	for _, n := range names {
		if n == "" {
			return errors.New("an empty XML name")
		}
		switch c := n[0]; {
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			continue
		case c < utf8.RuneSelf:
			return fmt.Errorf("%q cannot start an XML name", n)
		}
		if _, err := xml.NewDecoder(strings.NewReader("<" + n + "/>")).Token(); err != nil {
			return fmt.Errorf("%q cannot start an XML name", n)
		}
	}
	return nil
}

// parseXML parses a string holding one element.
func parseXML(s string) (*Element, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	el, err := readElement(d)
	if err != nil {
		return nil, fmt.Errorf("parse XML: %w", err)
	}
	return el, nil
}

// tokens turns an element back into tokens for sending.
func (e *Element) tokens() xml.TokenReader {
	var toks []xml.Token
	var walk func(*Element)
	walk = func(el *Element) {
		start := xml.StartElement{Name: el.Name}
		for _, a := range el.Attrs {
			if a.Name.Local == "xmlns" && a.Name.Space == "" || a.Name.Space == "xmlns" {
				continue
			}
			start.Attr = append(start.Attr, a)
		}
		toks = append(toks, start)
		if el.Text != "" {
			toks = append(toks, xml.CharData(el.Text))
		}
		for _, c := range el.Children {
			walk(c)
		}
		toks = append(toks, start.End())
	}
	walk(e)
	i := 0
	return tokenReaderFunc(func() (xml.Token, error) {
		if i >= len(toks) {
			return nil, io.EOF
		}
		i++
		return toks[i-1], nil
	})
}

type tokenReaderFunc func() (xml.Token, error)

func (f tokenReaderFunc) Token() (xml.Token, error) { return f() }

// Namespaces used by the participant.
const (
	nsFocus     = "http://jitsi.org/protocol/focus"
	nsColibri   = "http://jitsi.org/protocol/colibri"
	nsStanzas   = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsMUC       = "http://jabber.org/protocol/muc"
	nsMUCUser   = "http://jabber.org/protocol/muc#user"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	nsPing      = "urn:xmpp:ping"
	nsNick      = "http://jabber.org/protocol/nick"
)

// StanzaError is an XMPP stanza error as received: a refused conference
// request, a refused MUC join, an error reply to any IQ.
type StanzaError struct {
	Type      string // cancel, auth, modify, wait, continue
	Condition string // e.g. service-unavailable, registration-required
	Text      string
	// Code is the error-code of a Jitsi <reservation-error/> (401, 403,
	// 429, ...), 0 when there is none.
	Code int
	// GracefulShutdown is set when the error carries the colibri
	// <graceful-shutdown/> element (the focus is draining).
	GracefulShutdown bool
	// App lists the local names of application-specific children (other
	// than text and the condition), e.g. "reservation-error".
	App []string
}

func (e *StanzaError) Error() string {
	var b strings.Builder
	b.WriteString(e.Condition)
	if e.Type != "" {
		fmt.Fprintf(&b, " (%s)", e.Type)
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, " code %d", e.Code)
	}
	if e.GracefulShutdown {
		b.WriteString(" graceful-shutdown")
	}
	if e.Text != "" {
		fmt.Fprintf(&b, ": %s", e.Text)
	}
	return b.String()
}

// parseStanzaError reads the <error/> child of a stanza; nil if there is none.
func parseStanzaError(stanza *Element) *StanzaError {
	el := stanza.Child("", "error")
	if el == nil {
		return nil
	}
	se := &StanzaError{Type: el.AttrValue("type")}
	for _, c := range el.Children {
		switch {
		case c.Name.Space == nsStanzas && c.Name.Local == "text":
			se.Text = c.Text
		case c.Name.Space == nsStanzas:
			if se.Condition == "" {
				se.Condition = c.Name.Local
			}
		case c.Name.Local == "reservation-error":
			se.App = append(se.App, c.Name.Local)
			se.Code, _ = strconv.Atoi(c.AttrValue("error-code"))
		case c.Name.Local == "graceful-shutdown":
			se.App = append(se.App, c.Name.Local)
			se.GracefulShutdown = true
		default:
			se.App = append(se.App, c.Name.Local)
		}
	}
	if se.Condition == "" {
		se.Condition = "undefined-condition"
	}
	return se
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
