package tui

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/keyfocus/keyfocus/keys"
	"github.com/keyfocus/keyfocus/tui/common"
)

// KeysKeyMap is the Keys view's keys.
type KeysKeyMap struct {
	navKeys
	Add    key.Binding
	Edit   key.Binding
	Revoke key.Binding
	Reload key.Binding
	Copy   key.Binding
	Close  key.Binding
}

// DefaultKeysKeyMap returns the Keys view's keys.
func DefaultKeysKeyMap() KeysKeyMap {
	return KeysKeyMap{
		navKeys: defaultNavKeys(),
		Add:     key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "add key")),
		Edit:    key.NewBinding(key.WithKeys("e"), key.WithHelp("e", "edit")),
		Revoke:  key.NewBinding(key.WithKeys("d"), key.WithHelp("d", "revoke")),
		Reload:  key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "reload file")),
		Copy:    key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "copy key")),
		Close:   key.NewBinding(key.WithKeys("enter", "esc"), key.WithHelp("enter/esc", "close")),
	}
}

// keySavedMsg is the outcome of an add or edit.
type keySavedMsg struct {
	key   string // the new key, only after an add
	entry *keys.Entry
	err   error
	added bool
}

// keyRevokedMsg is the outcome of a revocation.
type keyRevokedMsg struct {
	entry *keys.Entry
	err   error
}

// keysView lists the keys of the key file and edits them through the store.
type keysView struct {
	c  *common.Common
	d  *data
	km KeysKeyMap

	tbl    *table
	rows   []*keys.Entry
	filter string
	snap   *keys.Snapshot // the snapshot rows were built from
	built  bool
	width  int
	height int
	// auditRows is the height of the audit pane under the table (audit.go).
	auditRows int

	form *keyForm
	// newKey is a key just generated, shown once; cleared when closed.
	newKey   string
	newEntry *keys.Entry
	// copyFn copies text to the operator's clipboard (OSC 52).
	copyFn func(string) error
	// mouse: the program reports the mouse (turned off while a new key shows).
	mouse bool
}

func newKeysView(c *common.Common, d *data, copyFn func(string) error) *keysView {
	v := &keysView{c: c, d: d, km: DefaultKeysKeyMap(), copyFn: copyFn, tbl: newTable(
		column{Title: "CLIENT", Flex: true, Min: 10},
		column{Title: "KEY", Width: 8},
		column{Title: "ROOMS", Flex: true, Min: 8},
		column{Title: "EXPIRES", Width: 16},
		column{Title: "LIMIT", Width: 5, Right: true},
		column{Title: "NOW", Width: 4, Right: true},
	)}
	if c.ReadOnly || d.store == nil {
		v.km.Add.SetEnabled(false)
		v.km.Edit.SetEnabled(false)
		v.km.Revoke.SetEnabled(false)
	}
	if d.store == nil {
		v.km.Reload.SetEnabled(false)
	}
	return v
}

func (v *keysView) Init() tea.Cmd { return nil }

func (v *keysView) SetSize(w, h int) {
	v.width, v.height = w, h
	v.auditRows = auditPaneRows(v.d, h)
	v.tbl.SetSize(w, h-v.auditRows)
	if v.form != nil {
		v.form.SetWidth(w)
	}
}

func (v *keysView) SetFilter(f string) {
	if f != v.filter {
		v.filter = f
		v.built = false
		v.Refresh()
	}
}

// Capturing reports whether the view takes every key (a form or the new key
// panel is open).
func (v *keysView) Capturing() bool { return v.form != nil || v.newKey != "" }

func (v *keysView) Refresh() {
	if v.built && v.snap == v.d.snap {
		return
	}
	v.built, v.snap = true, v.d.snap
	var sel string
	if e := v.selected(); e != nil {
		sel = e.ID
	}
	v.rows = v.rows[:0]
	f := strings.ToLower(v.filter)
	for _, e := range v.d.snap.Entries() {
		if f == "" || strings.Contains(strings.ToLower(e.Name), f) || strings.HasPrefix(e.Fingerprint, f) ||
			strings.Contains(strings.ToLower(strings.Join(e.Rooms, ",")), f) {
			v.rows = append(v.rows, e)
		}
	}
	sort.SliceStable(v.rows, func(i, j int) bool {
		return strings.ToLower(v.rows[i].Name) < strings.ToLower(v.rows[j].Name)
	})
	v.tbl.SetRows(len(v.rows))
	for i, e := range v.rows {
		if e.ID == sel {
			v.tbl.Select(i)
		}
	}
}

func (v *keysView) selected() *keys.Entry {
	if len(v.rows) == 0 {
		return nil
	}
	return v.rows[v.tbl.Cursor()]
}

func (v *keysView) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case formCancelMsg:
		v.form = nil
		return v, nil
	case formSubmitMsg:
		if v.form == nil {
			return v, nil
		}
		return v, v.save(v.form.editID, msg.spec)
	case keySavedMsg:
		if v.form != nil {
			v.form.saved(msg.err)
		}
		if msg.err != nil {
			if errors.Is(msg.err, keys.ErrConflict) {
				return v, reloadStore(v.d.store)
			}
			return v, nil
		}
		v.form = nil
		if msg.added {
			v.newKey, v.newEntry = msg.key, msg.entry
			// Let the terminal select the key with the mouse while it shows.
			return v, tea.Batch(tea.DisableMouse, reloadedFrom(v.d.store), flash("key added for "+msg.entry.Name+" ("+msg.entry.Fingerprint+"); the focus picks it up from the file", false))
		}
		return v, tea.Batch(reloadedFrom(v.d.store), flash("key of "+msg.entry.Name+" ("+msg.entry.Fingerprint+") saved", false))
	case keyRevokedMsg:
		if msg.err != nil {
			if errors.Is(msg.err, keys.ErrConflict) {
				return v, tea.Batch(reloadStore(v.d.store), flash("The key file changed on disk meanwhile: reloaded it, nothing was revoked. Check the list and revoke again.", true))
			}
			return v, flash("revoke failed: "+msg.err.Error(), true)
		}
		return v, tea.Batch(reloadedFrom(v.d.store), flash("revoked the key of "+msg.entry.Name+" ("+msg.entry.Fingerprint+"); the focus removes its members as soon as it sees the file", false))
	case tea.KeyMsg:
		return v, v.handleKey(msg)
	case tea.MouseMsg:
		if v.Capturing() {
			return v, nil
		}
		switch msg.Button {
		case tea.MouseButtonWheelUp:
			v.tbl.Move(-1)
		case tea.MouseButtonWheelDown:
			v.tbl.Move(1)
		}
	}
	if v.form != nil {
		return v, v.form.Update(msg)
	}
	return v, nil
}

func (v *keysView) handleKey(msg tea.KeyMsg) tea.Cmd {
	k := msg.String()
	if v.newKey != "" {
		switch {
		case matchStr(k, v.km.Copy):
			key, copyFn := v.newKey, v.copyFn
			return func() tea.Msg {
				if err := copyFn(key); err != nil {
					return flashMsg{text: "copy failed: " + err.Error(), err: true}
				}
				return flashMsg{text: "sent the key to your terminal's clipboard (OSC 52); if it is not there, select it with the mouse"}
			}
		case matchStr(k, v.km.Close):
			v.newKey, v.newEntry = "", nil
			if v.mouse {
				return tea.EnableMouseCellMotion
			}
		}
		return nil
	}
	if v.form != nil {
		return v.form.Update(msg)
	}
	if v.tbl.nav(v.km.navKeys, k) {
		return nil
	}
	edit := bound(k, v.km.Add) || bound(k, v.km.Edit) || bound(k, v.km.Revoke)
	if v.d.store == nil && (edit || bound(k, v.km.Reload)) {
		return flash("the key file is not available to this console: start it with --keys FILE", true)
	}
	if edit && v.c.ReadOnly {
		return flash("read-only console: key edits are disabled", true)
	}
	switch {
	case matchStr(k, v.km.Add):
		v.form = newKeyForm(v.c, "Add a key", "", keys.Spec{})
		v.form.SetWidth(v.width)
	case matchStr(k, v.km.Edit):
		e := v.selected()
		if e == nil {
			return flash("no key selected", true)
		}
		v.form = newKeyForm(v.c, "Edit the key of "+e.Name+" ("+e.Fingerprint+")", e.ID, keys.SpecOf(e))
		v.form.SetWidth(v.width)
	case matchStr(k, v.km.Revoke):
		e := v.selected()
		if e == nil {
			return flash("no key selected", true)
		}
		return v.confirmRevoke(e)
	case matchStr(k, v.km.Reload):
		return reloadStore(v.d.store)
	}
	return nil
}

func (v *keysView) save(id string, spec keys.Spec) tea.Cmd {
	store := v.d.store
	if id == "" {
		return func() tea.Msg {
			key, e, err := store.Add(spec)
			return keySavedMsg{key: key, entry: e, err: err, added: true}
		}
	}
	return func() tea.Msg {
		e, err := store.Edit(id, spec)
		return keySavedMsg{entry: e, err: err}
	}
}

// confirmRevoke names the members the revocation will remove.
func (v *keysView) confirmRevoke(e *keys.Entry) tea.Cmd {
	type who struct{ nick, room string }
	var ws []who
	for _, r := range v.d.st.Rooms {
		for i := range r.Members {
			if r.Members[i].Fingerprint == e.Fingerprint {
				ws = append(ws, who{r.Members[i].Nick, r.Display})
			}
		}
	}
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].room != ws[j].room {
			return ws[i].room < ws[j].room
		}
		return ws[i].nick < ws[j].nick
	})
	var body string
	if len(ws) == 0 {
		body = "Nobody is in a room with this key now. The key is removed from " + filepath.Base(v.d.store.Path()) + " and refused from now on."
	} else {
		var names []string
		for i, w := range ws {
			if i == 10 {
				names = append(names, "and "+strconv.Itoa(len(ws)-10)+" more")
				break
			}
			names = append(names, w.nick+" in "+w.room)
		}
		body = fmt.Sprintf("The key is removed from %s. The focus then removes its %d member(s) at once: %s.",
			filepath.Base(v.d.store.Path()), len(ws), strings.Join(names, ", "))
	}
	store, id, name, fp := v.d.store, e.ID, e.Name, e.Fingerprint
	return func() tea.Msg {
		return confirmMsg{
			title: "Revoke the key of " + name + " (" + fp + ")?",
			body:  body,
			yes: func() tea.Msg {
				e, err := store.Revoke(id)
				if e == nil {
					e = &keys.Entry{Name: name, Fingerprint: fp}
				}
				return keyRevokedMsg{entry: e, err: err}
			},
		}
	}
}

// reloadStore re-reads the key file (after a conflict, or on request).
func reloadStore(s KeyStore) tea.Cmd {
	if s == nil {
		return nil
	}
	return func() tea.Msg {
		u := s.Reload()
		return storeMsg{snap: u.Snapshot, err: u.Err, notice: u.Notice}
	}
}

// reloadedFrom takes the store's snapshot after its own edit.
func reloadedFrom(s KeyStore) tea.Cmd {
	return func() tea.Msg { return storeMsg{snap: s.Snapshot()} }
}

func (v *keysView) View() string {
	st := v.c.Styles
	if v.newKey != "" {
		return v.newKeyView()
	}
	if v.form != nil {
		return v.form.View(v.width)
	}
	if v.d.snap == nil && v.d.store != nil {
		msg := "the key file " + v.d.store.Path() + " is not loaded in this console"
		if v.d.storeErr != "" {
			msg += ": " + v.d.storeErr
		}
		return st.Dim.Render(wrap(msg+". Once it is fixed (keyfocus keys check lists the problems), the console reads it on the focus's next reload, or press r.", v.width))
	}
	if v.d.snap == nil {
		msg := "the key file is not available to this console"
		if v.d.storeErr != "" {
			msg += ": " + v.d.storeErr
		}
		return st.Dim.Render(wrap(msg+". Start the console with --keys FILE to see and edit keys.", v.width))
	}
	now := v.c.Now()
	tbl := v.tbl.View(st, func(row, col int) string {
		e := v.rows[row]
		switch col {
		case 0:
			return e.Name
		case 1:
			return e.Fingerprint
		case 2:
			if len(e.Rooms) == 0 {
				return "all"
			}
			return strings.Join(e.Rooms, ",")
		case 3:
			switch {
			case e.Expires.IsZero():
				return "never"
			case e.Expired(now):
				return "EXPIRED"
			}
			return expiresText(e.Expires)
		case 4:
			if e.MaxParticipants == 0 {
				return "-"
			}
			return strconv.Itoa(e.MaxParticipants)
		default:
			return strconv.Itoa(v.d.st.ByKey[e.Fingerprint])
		}
	}, emptyText(v.filter, "no keys yet: press a to add one"))
	if v.auditRows > 0 {
		tbl += "\n" + auditPaneView(v.c, v.d, v.width, v.auditRows)
	}
	return tbl
}

func (v *keysView) newKeyView() string {
	st := v.c.Styles
	e := v.newEntry
	var b strings.Builder
	b.WriteString(st.Title.Render("New key for "+e.Name+" ("+e.Fingerprint+")") + "\n\n")
	b.WriteString("  " + st.SecretKey.Render(v.newKey) + "\n\n")
	b.WriteString(wrap("This is the only time the key is shown: keyfocus stores only its hash. Give it to "+
		e.Name+" now, over a private channel. "+
		"Press c to copy it to your clipboard (OSC 52, works over ssh in most terminals), or select it with the mouse.", v.width) + "\n\n")
	b.WriteString(st.Dim.Render("c copy · enter/esc close (the key is then gone from this screen)"))
	return b.String()
}

func (v *keysView) ShortHelp() []key.Binding {
	switch {
	case v.newKey != "":
		return []key.Binding{v.km.Copy, v.km.Close}
	case v.form != nil:
		return v.form.ShortHelp()
	}
	return []key.Binding{v.km.Up, v.km.Down, v.km.Add, v.km.Edit, v.km.Revoke}
}

func (v *keysView) FullHelp() [][]key.Binding {
	switch {
	case v.newKey != "":
		return [][]key.Binding{{v.km.Copy, v.km.Close}}
	case v.form != nil:
		return v.form.FullHelp()
	}
	return [][]key.Binding{v.km.bindings(), {v.km.Add, v.km.Edit, v.km.Revoke, v.km.Reload}}
}

// expiresText is a date when the key expires at the end of a day (how dates
// are written in the key file), else the UTC time to the minute.
func expiresText(t time.Time) string {
	if f := keys.FormatExpires(t); len(f) <= 10 {
		return f
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}
