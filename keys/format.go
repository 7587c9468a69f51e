package keys

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Spec is what an operator sets on a key: everything but the key itself.
type Spec struct {
	Name            string    // client name (required; no ';')
	Rooms           []string  // glob patterns; nil means every room
	Expires         time.Time // zero means never
	MaxParticipants int       // 0 means no limit
}

// SpecOf returns the spec of an existing entry: a starting point for Edit.
func SpecOf(e *Entry) Spec {
	return Spec{Name: e.Name, Rooms: slices.Clone(e.Rooms), Expires: e.Expires, MaxParticipants: e.MaxParticipants}
}

// normalized is the spec as it will read back from the file: names and
// patterns trimmed.
func (sp Spec) normalized() Spec {
	sp.Name = strings.TrimSpace(sp.Name)
	if sp.Rooms != nil {
		rooms := make([]string, len(sp.Rooms))
		for i, r := range sp.Rooms {
			rooms[i] = strings.TrimSpace(r)
		}
		sp.Rooms = rooms
	}
	sp.Expires = sp.Expires.Round(0) // no monotonic reading
	return sp
}

// equal reports whether two specs mean the same.
func (sp Spec) equal(o Spec) bool {
	return sp.Name == o.Name && slices.Equal(sp.Rooms, o.Rooms) && sp.Expires.Equal(o.Expires) && sp.MaxParticipants == o.MaxParticipants
}

// Validate says what is wrong with a spec, in words an operator can act on.
func (sp Spec) Validate() error {
	name := strings.TrimSpace(sp.Name)
	switch {
	case name == "":
		return errors.New("the client name is empty; give one (e.g. --name \"Acme Corp\")")
	case strings.Contains(name, ";"):
		return fmt.Errorf("the client name %q contains ';', which separates attributes; leave it out", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("the client name %q contains control characters", name)
	}
	if len(sp.Rooms) > 0 {
		for _, r := range sp.Rooms {
			if strings.Contains(r, ",") || strings.TrimSpace(r) == "" {
				return fmt.Errorf("room pattern %q: one pattern per item, not empty, no ','", r)
			}
		}
		if _, err := ParseRooms(strings.Join(sp.Rooms, ",")); err != nil {
			return err
		}
	}
	if !sp.Expires.IsZero() {
		// The expiry must survive being written and read back.
		if t, err := ParseExpires(FormatExpires(sp.Expires)); err != nil || !t.Equal(sp.Expires) {
			return fmt.Errorf("expiry %v is out of range (years 0001 to 9999)", sp.Expires)
		}
	}
	if sp.MaxParticipants < 0 {
		return fmt.Errorf("max participants %d is negative; use 0 for no limit", sp.MaxParticipants)
	}
	return nil
}

func (sp Spec) roomsAttr() string   { return attrRooms + "=" + strings.Join(sp.Rooms, ",") }
func (sp Spec) expiresAttr() string { return attrExpires + "=" + FormatExpires(sp.Expires) }
func (sp Spec) maxAttr() string     { return attrMax + "=" + strconv.Itoa(sp.MaxParticipants) }

// value is the value text of a new entry with this spec.
func (sp Spec) value() string {
	parts := []string{strings.TrimSpace(sp.Name)}
	if len(sp.Rooms) > 0 {
		parts = append(parts, sp.roomsAttr())
	}
	if !sp.Expires.IsZero() {
		parts = append(parts, sp.expiresAttr())
	}
	if sp.MaxParticipants > 0 {
		parts = append(parts, sp.maxAttr())
	}
	return strings.Join(parts, "; ")
}

// editValue returns the value of rec after setting the known attributes to
// sp. Parts whose meaning does not change keep their text; unknown
// attributes are kept in place.
func editValue(rec *record, sp Spec) string {
	e := rec.entry
	old := splitValue(rec.value)
	parts := []string{old[0]}
	if strings.TrimSpace(sp.Name) != e.Name {
		parts[0] = strings.TrimSpace(sp.Name)
	}
	done := map[string]bool{}
	for _, p := range old[1:] {
		name, _, _ := strings.Cut(p, "=")
		switch lname := strings.ToLower(strings.TrimSpace(name)); lname {
		case attrRooms:
			done[lname] = true
			switch {
			case slices.Equal(sp.Rooms, e.Rooms):
				parts = append(parts, p)
			case len(sp.Rooms) > 0:
				parts = append(parts, sp.roomsAttr())
			}
		case attrExpires:
			done[lname] = true
			switch {
			case sp.Expires.Equal(e.Expires):
				parts = append(parts, p)
			case !sp.Expires.IsZero():
				parts = append(parts, sp.expiresAttr())
			}
		case attrMax:
			done[lname] = true
			switch {
			case sp.MaxParticipants == e.MaxParticipants:
				parts = append(parts, p)
			case sp.MaxParticipants > 0:
				parts = append(parts, sp.maxAttr())
			}
		default:
			parts = append(parts, p)
		}
	}
	if !done[attrRooms] && len(sp.Rooms) > 0 {
		parts = append(parts, sp.roomsAttr())
	}
	if !done[attrExpires] && !sp.Expires.IsZero() {
		parts = append(parts, sp.expiresAttr())
	}
	if !done[attrMax] && sp.MaxParticipants > 0 {
		parts = append(parts, sp.maxAttr())
	}
	return strings.Join(parts, "; ")
}

// escapeValue writes v so that the parser reads v back.
func escapeValue(v string) string {
	var sb strings.Builder
	for i, r := range v {
		switch {
		case r == '\\':
			sb.WriteString(`\\`)
		case i == 0 && (r == ' ' || r == '=' || r == ':'):
			sb.WriteByte('\\')
			sb.WriteRune(r)
		default:
			writeEscapedRune(&sb, r)
		}
	}
	return sb.String()
}

// escapeKey writes a plaintext key so that the parser reads it back.
func escapeKey(k string) string {
	var sb strings.Builder
	for i, r := range k {
		switch {
		case r == '\\' || r == '=' || r == ':' || r == ' ':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case i == 0 && (r == '#' || r == '!'):
			sb.WriteByte('\\')
			sb.WriteRune(r)
		default:
			writeEscapedRune(&sb, r)
		}
	}
	return sb.String()
}

func writeEscapedRune(sb *strings.Builder, r rune) {
	switch r {
	case '\t':
		sb.WriteString(`\t`)
	case '\n':
		sb.WriteString(`\n`)
	case '\r':
		sb.WriteString(`\r`)
	case '\f':
		sb.WriteString(`\f`)
	default:
		if r < 0x20 || r == 0x7f || r == '\uFEFF' {
			fmt.Fprintf(sb, `\u%04X`, r)
			return
		}
		sb.WriteRune(r)
	}
}
