// Package xmppx holds the small XML helpers the focus needs on top of
// mellium: a stanza tree that is decoded once per incoming stanza and built for
// every outgoing one, so handlers never juggle token streams.
package xmppx

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Limits on one decoded element. Prosody already caps stanza sizes; these keep
// a hostile or broken peer from making one stanza expensive for us.
const (
	maxDepth    = 32
	maxChildren = 512
	maxText     = 64 << 10
)

// ErrTooComplex is returned by Decode for elements beyond the limits above.
var ErrTooComplex = errors.New("xmppx: element too deep, too wide or too long")

// Element is one XML element with its attributes, children and text.
// Namespaces are resolved: Name.Space is the namespace URI.
type Element struct {
	Name     xml.Name
	Attr     []xml.Attr
	Children []*Element
	Text     string
}

// New returns an element in namespace space (may be "") with attributes given
// as name, value pairs. Pairs with an empty value are left out.
func New(space, local string, attrs ...string) *Element {
	e := &Element{Name: xml.Name{Space: space, Local: local}}
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] != "" {
			e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
		}
	}
	return e
}

// Add appends children and returns e.
func (e *Element) Add(children ...*Element) *Element {
	for _, c := range children {
		if c != nil {
			e.Children = append(e.Children, c)
		}
	}
	return e
}

// SetText sets the element's text and returns e.
func (e *Element) SetText(s string) *Element {
	e.Text = s
	return e
}

// SetAttr sets (or adds) an attribute and returns e.
func (e *Element) SetAttr(name, value string) *Element {
	for i, a := range e.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			e.Attr[i].Value = value
			return e
		}
	}
	e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: name}, Value: value})
	return e
}

// Get returns the value of the attribute with the given local name and no
// namespace, or "".
func (e *Element) Get(name string) string {
	if e == nil {
		return ""
	}
	for _, a := range e.Attr {
		if a.Name.Local == name && (a.Name.Space == "" || a.Name.Space == e.Name.Space) {
			return a.Value
		}
	}
	return ""
}

// Has reports whether the attribute is present (even if empty).
func (e *Element) Has(name string) bool {
	if e == nil {
		return false
	}
	for _, a := range e.Attr {
		if a.Name.Local == name && (a.Name.Space == "" || a.Name.Space == e.Name.Space) {
			return true
		}
	}
	return false
}

// Child returns the first child with the given namespace and local name, or
// nil. An empty space matches any namespace.
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

// All returns every child with the given namespace and local name.
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

// First returns the first child element, or nil.
func (e *Element) First() *Element {
	if e == nil || len(e.Children) == 0 {
		return nil
	}
	return e.Children[0]
}

// Decode reads the element that start opened from r, up to and including its
// end element (an r that ends with io.EOF right after the content, as
// mellium's handler readers do, is accepted too).
func Decode(start xml.StartElement, r xml.TokenReader) (*Element, error) {
	if !startsName(start.Name.Local) {
		return nil, errBadName(start.Name.Local)
	}
	root := fromStart(start)
	stack := []*Element{root}
	var text strings.Builder
	texts := []*strings.Builder{&text}
	total := 0
	for len(stack) > 0 {
		tok, err := r.Token()
		if tok == nil && err != nil {
			if err == io.EOF {
				// Reader ended at the element's end: close what is open.
				for i := len(stack) - 1; i >= 0; i-- {
					stack[i].Text = texts[i].String()
				}
				return root, nil
			}
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= maxDepth {
				return nil, ErrTooComplex
			}
			parent := stack[len(stack)-1]
			if len(parent.Children) >= maxChildren {
				return nil, ErrTooComplex
			}
			if !startsName(t.Name.Local) {
				return nil, errBadName(t.Name.Local)
			}
			c := fromStart(t)
			parent.Children = append(parent.Children, c)
			stack = append(stack, c)
			texts = append(texts, &strings.Builder{})
		case xml.EndElement:
			top := len(stack) - 1
			stack[top].Text = texts[top].String()
			stack = stack[:top]
			texts = texts[:top]
		case xml.CharData:
			total += len(t)
			if total > maxText {
				return nil, ErrTooComplex
			}
			texts[len(texts)-1].Write(t)
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
	}
	return root, nil
}

// startsName reports whether local can stand alone as an element name.
// encoding/xml checks a prefixed name as a whole, so <p:0 xmlns:p='u'/> is
// read with the local name "0"; written back without its prefix that is
// <0 xmlns='u'/>, which no parser accepts. Such an element is malformed
// (not a namespace-well-formed name) and is refused here instead.
func startsName(local string) bool {
	if local == "" {
		return false
	}
	switch b := local[0]; {
	case b == '_' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z':
		return true
	case b < utf8.RuneSelf:
		return false
	}
	// Rare: let encoding/xml's own tables decide for a non-ASCII start.
	_, err := xml.NewDecoder(strings.NewReader("<" + local + "/>")).Token()
	return err == nil
}

func errBadName(local string) error {
	return fmt.Errorf("xmppx: %q is not a valid element name", local)
}

func fromStart(s xml.StartElement) *Element {
	e := &Element{Name: s.Name}
	for _, a := range s.Attr {
		// Namespace declarations are already resolved into names.
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		e.Attr = append(e.Attr, a)
	}
	return e
}

// Tokens appends the element's tokens to dst and returns it.
func (e *Element) Tokens(dst []xml.Token) []xml.Token {
	start := xml.StartElement{Name: e.Name, Attr: e.Attr}
	dst = append(dst, start)
	if e.Text != "" {
		dst = append(dst, xml.CharData(e.Text))
	}
	for _, c := range e.Children {
		dst = c.Tokens(dst)
	}
	return append(dst, start.End())
}

// TokenReader returns a reader over the element's tokens.
func (e *Element) TokenReader() xml.TokenReader {
	return &sliceReader{toks: e.Tokens(nil)}
}

type sliceReader struct {
	toks []xml.Token
	i    int
}

func (r *sliceReader) Token() (xml.Token, error) {
	if r.i >= len(r.toks) {
		return nil, io.EOF
	}
	t := r.toks[r.i]
	r.i++
	return t, nil
}

// String renders the element as XML, for tests and debugging. Never log the
// rendering of a stanza that may carry a client key.
func (e *Element) String() string {
	var b strings.Builder
	enc := xml.NewEncoder(&b)
	for _, t := range e.Tokens(nil) {
		if err := enc.EncodeToken(t); err != nil {
			return "<!-- " + err.Error() + " -->"
		}
	}
	_ = enc.Flush()
	return b.String()
}

// Parse decodes one element from s (tests, fixtures).
func Parse(s string) (*Element, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if st, ok := tok.(xml.StartElement); ok {
			return Decode(st, d)
		}
	}
}
