package simulate

import "testing"

// FuzzElement: any input either fails to parse or parses into an element
// whose rendering parses back to the same rendering; reading a stanza error
// from it never panics.
func FuzzElement(f *testing.F) {
	for _, seed := range []string{
		`<iq type='error' id='a7'><conference xmlns='http://jitsi.org/protocol/focus' room='r@c'/><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>No</text><reservation-error xmlns='http://jitsi.org/protocol/focus' error-code='403'/></error></iq>`,
		`<presence from='r@c/n' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><item role='none'><reason>bye &amp; &lt;</reason></item><status code='307'/></x></presence>`,
		`<a xml:lang='en' b="'"><b xmlns='urn:x'>t<c/>u</b></a>`,
		`<error><reservation-error error-code='x'/></error>`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		el, err := parseXML(in)
		if err != nil {
			return
		}
		_ = parseStanzaError(el)
		_ = parseStanzaError(&Element{Children: []*Element{el}})
		out := el.String()
		back, err := parseXML(out)
		if err != nil {
			t.Fatalf("rendering does not parse: %v\n in: %q\nout: %q", err, in, out)
		}
		if again := back.String(); again != out {
			t.Fatalf("rendering not stable:\n in: %q\nout: %q\nagain: %q", in, out, again)
		}
	})
}
