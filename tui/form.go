package tui

import (
	"errors"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/keyfocus/keyfocus/keys"
	"github.com/keyfocus/keyfocus/tui/common"
)

// FormKeyMap is the key form's keys. Every other key goes to the focused field.
type FormKeyMap struct {
	Next   key.Binding
	Prev   key.Binding
	Submit key.Binding
	Cancel key.Binding
}

// DefaultFormKeyMap returns the key form's keys.
func DefaultFormKeyMap() FormKeyMap {
	return FormKeyMap{
		Next:   key.NewBinding(key.WithKeys("tab", "down"), key.WithHelp("tab/↓", "next field")),
		Prev:   key.NewBinding(key.WithKeys("shift+tab", "up"), key.WithHelp("shift+tab/↑", "previous field")),
		Submit: key.NewBinding(key.WithKeys("enter", "ctrl+s"), key.WithHelp("enter", "next / save")),
		Cancel: key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "cancel")),
	}
}

// Form fields.
const (
	fieldName = iota
	fieldRooms
	fieldExpires
	fieldMax
	fieldCount
)

var fieldLabels = [fieldCount]string{"Client name", "Rooms", "Expires", "Max participants"}
var fieldHints = [fieldCount]string{
	"who the key is for, e.g. Acme Corp",
	"comma-separated globs, e.g. acme-*,board; empty = every room",
	"YYYY-MM-DD (end of that day, UTC) or RFC 3339; empty = never",
	"people admitted with this key in one room at once; empty = no limit",
}

// keyForm adds a key or edits one's attributes.
type keyForm struct {
	c      *common.Common
	km     FormKeyMap
	editID string // "" when adding
	title  string
	inputs [fieldCount]textinput.Model
	errs   [fieldCount]string
	err    string // an error that is not one field's (save failed, conflict)
	focus  int
	saving bool
}

func newKeyForm(c *common.Common, title, editID string, spec keys.Spec) *keyForm {
	f := &keyForm{c: c, km: DefaultFormKeyMap(), editID: editID, title: title}
	r := c.Renderer
	for i := range f.inputs {
		ti := textinput.New()
		ti.Prompt = ""
		ti.Placeholder = fieldHints[i]
		ti.PlaceholderStyle = c.Styles.Dim
		ti.TextStyle = r.NewStyle()
		ti.PromptStyle = r.NewStyle()
		ti.CompletionStyle = c.Styles.Dim
		ti.Cursor.Style = r.NewStyle().Reverse(true)
		ti.Cursor.TextStyle = r.NewStyle()
		ti.Cursor.SetMode(cursor.CursorStatic)
		ti.CharLimit = 200
		f.inputs[i] = ti
	}
	f.inputs[fieldName].SetValue(spec.Name)
	f.inputs[fieldRooms].SetValue(strings.Join(spec.Rooms, ","))
	if !spec.Expires.IsZero() {
		f.inputs[fieldExpires].SetValue(keys.FormatExpires(spec.Expires))
	}
	if spec.MaxParticipants > 0 {
		f.inputs[fieldMax].SetValue(strconv.Itoa(spec.MaxParticipants))
	}
	f.setFocus(0)
	return f
}

func (f *keyForm) setFocus(i int) {
	f.focus = (i + fieldCount) % fieldCount
	for j := range f.inputs {
		if j == f.focus {
			f.inputs[j].Focus()
			f.inputs[j].CursorEnd()
		} else {
			f.inputs[j].Blur()
		}
	}
}

func (f *keyForm) SetWidth(w int) {
	for i := range f.inputs {
		f.inputs[i].Width = max(w-25, 10) // marker, label, brackets, cursor
	}
}

// spec validates the fields; the errors land beside their fields.
func (f *keyForm) spec() (keys.Spec, bool) {
	f.errs = [fieldCount]string{}
	f.err = ""
	var sp keys.Spec
	ok := true
	sp.Name = strings.TrimSpace(f.inputs[fieldName].Value())
	if sp.Name == "" {
		f.errs[fieldName] = "required"
		ok = false
	}
	if s := strings.TrimSpace(f.inputs[fieldRooms].Value()); s != "" {
		rooms, err := keys.ParseRooms(s)
		if err != nil {
			f.errs[fieldRooms] = err.Error()
			ok = false
		}
		sp.Rooms = rooms
	}
	if s := strings.TrimSpace(f.inputs[fieldExpires].Value()); s != "" {
		t, err := keys.ParseExpires(s)
		if err != nil {
			f.errs[fieldExpires] = err.Error()
			ok = false
		}
		sp.Expires = t
	}
	if s := strings.TrimSpace(f.inputs[fieldMax].Value()); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			f.errs[fieldMax] = "a whole number, 0 or more (empty = no limit)"
			ok = false
		}
		sp.MaxParticipants = n
	}
	if ok {
		if err := sp.Validate(); err != nil {
			f.err = err.Error()
			ok = false
		}
	}
	if !ok {
		for i := range f.errs {
			if f.errs[i] != "" {
				f.setFocus(i)
				break
			}
		}
	}
	return sp, ok
}

// formSubmitMsg asks the keys view to save the form.
type formSubmitMsg struct{ spec keys.Spec }

// formCancelMsg closes the form.
type formCancelMsg struct{}

// Update handles a key: the form's own keys first, everything else goes to
// the focused field (so "q", "1" or "/" are text here).
func (f *keyForm) Update(msg tea.Msg) tea.Cmd {
	km, ok := msg.(tea.KeyMsg)
	if !ok {
		var cmd tea.Cmd
		f.inputs[f.focus], cmd = f.inputs[f.focus].Update(msg)
		return cmd
	}
	if f.saving {
		return nil
	}
	s := km.String()
	switch {
	case matchStr(s, f.km.Cancel):
		return func() tea.Msg { return formCancelMsg{} }
	case matchStr(s, f.km.Next):
		f.setFocus(f.focus + 1)
		return nil
	case matchStr(s, f.km.Prev):
		f.setFocus(f.focus - 1)
		return nil
	case matchStr(s, f.km.Submit):
		if s == "enter" && f.focus < fieldCount-1 {
			f.setFocus(f.focus + 1)
			return nil
		}
		sp, ok := f.spec()
		if !ok {
			return nil
		}
		f.saving = true
		return func() tea.Msg { return formSubmitMsg{spec: sp} }
	}
	var cmd tea.Cmd
	f.inputs[f.focus], cmd = f.inputs[f.focus].Update(msg)
	f.errs[f.focus] = ""
	return cmd
}

// saved reports the outcome of a save; on error the form stays open.
func (f *keyForm) saved(err error) {
	f.saving = false
	switch {
	case err == nil:
	case errors.Is(err, keys.ErrConflict):
		f.err = "The key file changed on disk while you were editing. It has been reloaded (nothing was overwritten): check the list, then press enter to save again."
	default:
		f.err = err.Error()
	}
}

func (f *keyForm) View(width int) string {
	st := f.c.Styles
	var b strings.Builder
	b.WriteString(st.Title.Render(f.title))
	b.WriteString("\n\n")
	for i := range f.inputs {
		marker := "  "
		label := st.Label
		if i == f.focus {
			marker = "> "
			label = st.Title
		}
		b.WriteString(marker + label.Render(fit(fieldLabels[i], 17, false)) + " [" + fit(f.inputs[i].View(), f.inputs[i].Width+1, false) + "]\n")
		if f.errs[i] != "" {
			for _, l := range strings.Split(wrap("! "+f.errs[i], max(width-21, 20)), "\n") {
				b.WriteString(st.Error.Render(strings.Repeat(" ", 20)+l) + "\n")
			}
		}
	}
	b.WriteString("\n")
	if f.err != "" {
		b.WriteString(st.Error.Render(wrap("! "+f.err, width)) + "\n")
	}
	if f.saving {
		b.WriteString(st.Dim.Render("saving...") + "\n")
	} else if f.editID == "" {
		b.WriteString(st.Dim.Render("enter on the last field (or ctrl+s) generates the key and saves it; esc cancels") + "\n")
	} else {
		b.WriteString(st.Dim.Render("enter on the last field (or ctrl+s) saves; esc cancels") + "\n")
	}
	return b.String()
}

// wrap breaks s into lines of at most w cells at spaces.
func wrap(s string, w int) string {
	if w <= 0 || len(s) <= w {
		return s
	}
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > w {
			lines = append(lines, line)
			line = word
			continue
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

func (f *keyForm) ShortHelp() []key.Binding {
	return []key.Binding{f.km.Next, f.km.Prev, f.km.Submit, f.km.Cancel}
}

func (f *keyForm) FullHelp() [][]key.Binding { return [][]key.Binding{f.ShortHelp()} }
