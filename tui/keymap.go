package tui

import (
	"slices"

	"github.com/charmbracelet/bubbles/key"
)

// KeyMap is the console's global keys. Each view has its own keymap for its
// actions; help shows the focused view's keys beside these.
type KeyMap struct {
	NextView key.Binding
	PrevView key.Binding
	Rooms    key.Binding
	Rejected key.Binding
	Keys     key.Binding
	Filter   key.Binding
	Help     key.Binding
	Quit     key.Binding
}

// DefaultKeyMap returns the global keys.
func DefaultKeyMap() KeyMap {
	return KeyMap{
		NextView: key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "next view")),
		PrevView: key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous view")),
		Rooms:    key.NewBinding(key.WithKeys("1"), key.WithHelp("1", "rooms")),
		Rejected: key.NewBinding(key.WithKeys("2"), key.WithHelp("2", "rejected")),
		Keys:     key.NewBinding(key.WithKeys("3"), key.WithHelp("3", "keys")),
		Filter:   key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Help:     key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:     key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
	}
}

// navKeys move a cursor in a list; every list view embeds them.
type navKeys struct {
	Up       key.Binding
	Down     key.Binding
	PageUp   key.Binding
	PageDown key.Binding
	Home     key.Binding
	End      key.Binding
}

func defaultNavKeys() navKeys {
	return navKeys{
		Up:       key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:     key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		PageUp:   key.NewBinding(key.WithKeys("pgup", "ctrl+b", "ctrl+u"), key.WithHelp("pgup", "page up")),
		PageDown: key.NewBinding(key.WithKeys("pgdown", "ctrl+f", "ctrl+d"), key.WithHelp("pgdn", "page down")),
		Home:     key.NewBinding(key.WithKeys("home", "g"), key.WithHelp("g/home", "first")),
		End:      key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("G/end", "last")),
	}
}

func (k navKeys) bindings() []key.Binding {
	return []key.Binding{k.Up, k.Down, k.PageUp, k.PageDown, k.Home, k.End}
}

// bound reports whether the key string s is one of b's keys, enabled or not:
// a disabled action still answers why it is disabled.
func bound(s string, b key.Binding) bool {
	return slices.Contains(b.Keys(), s)
}

// matchStr reports whether the key string s (tea.KeyMsg.String()) triggers b.
func matchStr(s string, b key.Binding) bool {
	if !b.Enabled() {
		return false
	}
	for _, k := range b.Keys() {
		if k == s {
			return true
		}
	}
	return false
}
