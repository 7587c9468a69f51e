package xmppx

import "testing"

// A prefixed name whose local part cannot start a name is read by
// encoding/xml but cannot be written back: Parse refuses it.
func TestParseRefusesLocalNamesThatCannotStandAlone(t *testing.T) {
	for _, s := range []string{
		`<A:0 xmlns:A="u"/>`,
		`<a><A:-b xmlns:A="u"/></a>`,
		`<a><A:.b xmlns:A="u"/></a>`,
		"<a><A:\u0300b xmlns:A=\"u\"/></a>", // a combining mark
	} {
		if el, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %s, want an error", s, el)
		}
	}
	for _, s := range []string{
		`<A:b xmlns:A="u"/>`,
		`<a><A:_b xmlns:A="u"/></a>`,
		`<a><A:é xmlns:A="u"/></a>`,
		`<a A:0="x" xmlns:A="u"/>`, // attributes keep their prefix when written
	} {
		el, err := Parse(s)
		if err != nil {
			t.Errorf("Parse(%q): %v", s, err)
			continue
		}
		if _, err := Parse(el.String()); err != nil {
			t.Errorf("Parse(%q) wrote %s, which does not parse: %v", s, el, err)
		}
	}
}
