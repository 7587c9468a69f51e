// Package tui is the keyfocus console: live rooms, members and rejected
// attempts read from a focus.Source, and the keys of the key file, edited in
// place through the key store.
//
// Build one with New and run it with bubbletea (v1):
//
//	m := tui.New(tui.Options{Source: f, Store: store, Mode: tui.ModeRun})
//	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithMouseCellMotion())
//	_, err := p.Run()
//
// The ssh console builds one per session with the session's renderer
// (bubbletea.MakeRenderer(s)) so colours and NO_COLOR are per session:
// nothing in this package is shared between consoles.
package tui

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/tui/common"
	"github.com/keyfocus/keyfocus/tui/live"
)

// Mode says what quitting the console means.
type Mode int

const (
	// ModeAttach: the console watches a focus in another process; quitting
	// leaves the focus running, so q quits at once.
	ModeAttach Mode = iota
	// ModeRun: focus and console in one process; quitting stops the focus,
	// so q asks first.
	ModeRun
	// ModeDemo: like ModeRun, and quitting also stops Prosody and the
	// simulated participants.
	ModeDemo
)

// Options configure a console.
type Options struct {
	// Source is the focus to watch (required): the in-process focus or a
	// control-socket client.
	Source focus.Source
	// Store is the console's own key store on the key file (keys.Open): not
	// the Store the focus watches, so that the console's edits reach the
	// focus through the file watch like any other edit. Nil: the Keys view
	// only says where the keys are.
	Store KeyStore
	// ReadOnly hides and refuses every editing action.
	ReadOnly bool
	// Renderer is the session's lipgloss renderer (nil: the default one,
	// for stdout).
	Renderer *lipgloss.Renderer
	// Component overrides the component address in the header (default:
	// the one in the focus state).
	Component string
	// Mode: see Mode.
	Mode Mode
	// KeySeparator is the focus's room-key separator; a room named in the
	// room-prefix form shows its key masked. Default "=".
	KeySeparator string
	// Buffer is the event subscription's buffer (default 8192).
	Buffer int
	// Now is the clock (default time.Now); Location where clock times are
	// shown (default time.Local). Tests fix both.
	Now      func() time.Time
	Location *time.Location
	// Copy puts a new key on the operator's clipboard (default: OSC 52 on
	// the renderer's output, which works over ssh in most terminals).
	Copy func(string) error
	// Logger gets the outcome of operator actions (never the terminal).
	Logger *slog.Logger
	// AuditTail returns the last n lines of the audit log, oldest first, one
	// short line each (keyfocus uses audit.Tail and audit.Line). Set, the
	// Keys view shows them under the keys when the terminal is tall enough,
	// read again every second while the view is shown. Nil: no audit pane.
	AuditTail func(n int) ([]string, error)
	// Mouse says the program runs with tea.WithMouseCellMotion; the console
	// then turns the mouse off while a new key is on screen, so the terminal
	// can select it, and back on after.
	Mouse bool
	// Context, when set, ends the console's subscription to the focus when
	// it is done (e.g. the ssh session's context). Otherwise call Close once
	// the program has ended, or the subscription stays on the focus's bus.
	Context context.Context
}

// Coalescing: at most one redraw per frame for live updates.
const (
	frame    = 50 * time.Millisecond // ~20 redraws a second at most
	maxBatch = 1 << 16
)

// Model is the console's top model.
type Model struct {
	opts Options
	c    *common.Common
	d    *data
	km   KeyMap
	help help.Model

	sub     *focus.Subscription
	subs    *subHolder
	watchAt time.Time

	tab      int
	rooms    *roomsView
	rejected *rejectedView
	keysV    *keysView

	filtering bool
	filterIn  textinput.Model
	filters   [3]string

	showHelp bool
	dialog   *confirmMsg
	quitAsk  bool

	flash    string
	flashErr bool
	flashID  int

	ready bool

	// Test hooks: timers off makes ticks and flash expiry no-ops; wait
	// waits for events (waitEvents).
	timers bool
	wait   func(*focus.Subscription, time.Time) tea.Cmd
}

// New returns a console for opts (see Options). It starts watching when
// the program runs it (Init).
func New(opts Options) *Model {
	if opts.Buffer <= 0 {
		opts.Buffer = 8192
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := common.New(opts.Renderer, opts.Now, opts.ReadOnly)
	if opts.Location != nil {
		c.Loc = opts.Location
	}
	if opts.Copy == nil {
		r := c.Renderer
		opts.Copy = func(s string) error {
			r.Output().Copy(s)
			return nil
		}
	}
	d := &data{src: opts.Source, store: opts.Store, log: opts.Logger, st: live.New(focus.State{}, opts.KeySeparator), auditTail: opts.AuditTail}
	m := &Model{opts: opts, c: c, d: d, km: DefaultKeyMap(), help: help.New(), timers: true, wait: waitEvents, subs: &subHolder{}}
	if opts.Context != nil {
		context.AfterFunc(opts.Context, m.subs.close)
	}
	m.help.Styles = help.Styles{
		ShortKey:       c.Styles.Label,
		ShortDesc:      c.Styles.Help,
		ShortSeparator: c.Styles.Dim,
		Ellipsis:       c.Styles.Dim,
		FullKey:        c.Styles.Label,
		FullDesc:       c.Styles.Help,
		FullSeparator:  c.Styles.Dim,
	}
	m.rooms = newRoomsView(c, d)
	m.rejected = newRejectedView(c, d)
	m.keysV = newKeysView(c, d, opts.Copy)
	m.keysV.mouse = opts.Mouse
	m.filterIn = textinput.New()
	m.filterIn.Prompt = "/"
	m.filterIn.Placeholder = "filter"
	m.filterIn.PlaceholderStyle = c.Styles.Dim
	// Every style from the session's renderer (the bubbles defaults use the
	// process-wide one, wrong over ssh).
	m.filterIn.PromptStyle = c.Renderer.NewStyle()
	m.filterIn.TextStyle = c.Renderer.NewStyle()
	m.filterIn.CompletionStyle = c.Styles.Dim
	m.filterIn.Cursor.Style = c.Renderer.NewStyle().Reverse(true)
	m.filterIn.Cursor.TextStyle = c.Renderer.NewStyle()
	m.filterIn.CharLimit = 64
	m.filterIn.Width = 24
	m.filterIn.Cursor.SetMode(cursor.CursorStatic)
	if opts.Store != nil {
		d.snap = opts.Store.Snapshot()
	}
	return m
}

type view interface {
	tea.Model
	help.KeyMap
	SetSize(w, h int)
	SetFilter(string)
	Refresh()
}

func (m *Model) views() [3]view { return [3]view{m.rooms, m.rejected, m.keysV} }
func (m *Model) current() view  { return m.views()[m.tab] }

var viewNames = [3]string{"Rooms", "Rejected", "Keys"}

// Close ends the console's subscription to the focus. Safe to call from any
// goroutine, more than once; call it once the program has ended (or set
// Options.Context).
func (m *Model) Close() { m.subs.close() }

// subHolder keeps the current subscription for Close, which may come from
// another goroutine than the program's.
type subHolder struct {
	mu     sync.Mutex
	sub    *focus.Subscription
	closed bool
}

// set makes s the current subscription; once the console is closed it
// closes s instead and reports false.
func (h *subHolder) set(s *focus.Subscription) bool {
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.sub = s
	}
	h.mu.Unlock()
	if closed {
		s.Close()
	}
	return !closed
}

func (h *subHolder) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

func (h *subHolder) close() {
	h.mu.Lock()
	h.closed = true
	s := h.sub
	h.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

// Init starts watching the focus and the clock.
func (m *Model) Init() tea.Cmd {
	if m.d.store != nil && m.d.snap == nil {
		// A store that could not read its file yet: try now, and say why.
		return tea.Batch(m.watch(0), m.tick(), reloadStore(m.d.store))
	}
	return tea.Batch(m.watch(0), m.tick())
}

// watch takes a fresh State and subscription (after delay). The holder gets
// the subscription at once, not when Update sees it: a program that has
// ended drops the message, and Close must still end the subscription.
func (m *Model) watch(delay time.Duration) tea.Cmd {
	src, buf, subs := m.opts.Source, m.opts.Buffer, m.subs
	return func() tea.Msg {
		if delay > 0 {
			time.Sleep(delay)
		}
		st, sub := src.Watch(buf)
		if !subs.set(sub) {
			return nil // the console was closed meanwhile
		}
		return watchedMsg{st: st, sub: sub}
	}
}

func (m *Model) tick() tea.Cmd {
	if !m.timers {
		return nil
	}
	return tea.Every(time.Second, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// waitEvents waits for the next event, then keeps collecting until
// notBefore, so a burst becomes one message (and one redraw).
func waitEvents(sub *focus.Subscription, notBefore time.Time) tea.Cmd {
	return func() tea.Msg {
		ev, ok := <-sub.C
		if !ok {
			return eventsMsg{sub: sub, closed: true}
		}
		batch := []focus.Event{ev}
		if d := time.Until(notBefore); d > 0 {
			t := time.NewTimer(d)
		collect:
			for len(batch) < maxBatch {
				select {
				case ev, ok := <-sub.C:
					if !ok {
						t.Stop()
						return eventsMsg{sub: sub, events: batch, closed: true}
					}
					batch = append(batch, ev)
				case <-t.C:
					break collect
				}
			}
			t.Stop()
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case ev, ok := <-sub.C:
				if !ok {
					return eventsMsg{sub: sub, events: batch, closed: true}
				}
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		return eventsMsg{sub: sub, events: batch, dropped: sub.Dropped(), at: time.Now()}
	}
}

// Update handles one message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.ready = true
		m.c.Width, m.c.Height = msg.Width, msg.Height
		m.layout()
		return m, nil

	case watchedMsg:
		if m.sub != nil {
			m.sub.Close()
		}
		m.sub = msg.sub
		m.subs.set(msg.sub) // watch registered it already; again for a watchedMsg made elsewhere
		m.d.st = live.New(msg.st, m.opts.KeySeparator)
		// A new state starts its versions over: rebuild every view's rows.
		m.rooms.built, m.rejected.built = false, false
		m.refresh()
		return m, m.wait(msg.sub, time.Time{})

	case eventsMsg:
		if msg.sub != m.sub {
			return m, nil // from a subscription we already left
		}
		storeChanged := false
		for _, ev := range msg.events {
			m.d.st.Apply(ev)
			if ev.Kind == focus.EvStoreReloaded || ev.Kind == focus.EvStoreFailed {
				storeChanged = true
			}
		}
		m.refresh()
		var cmds []tea.Cmd
		if storeChanged {
			// The focus saw the key file change: read it too.
			cmds = append(cmds, reloadStore(m.opts.Store))
		}
		if m.subs.isClosed() {
			return m, tea.Batch(cmds...) // the console was closed: no more watching
		}
		if msg.closed || msg.dropped > 0 {
			// The subscription lost events (or the source started over):
			// take a fresh State rather than show a wrong picture.
			m.sub.Close()
			m.sub = nil
			delay := time.Duration(0)
			if time.Since(m.watchAt) < time.Second {
				delay = 200 * time.Millisecond
			}
			m.watchAt = time.Now()
			cmds = append(cmds, m.watch(delay))
		} else {
			cmds = append(cmds, m.wait(msg.sub, msg.at.Add(frame)))
		}
		return m, tea.Batch(cmds...)

	case tickMsg:
		if m.tab == 2 {
			return m, tea.Batch(m.tick(), loadAudit(m.d, m.keysV.auditRows-1))
		}
		return m, m.tick()

	case auditMsg:
		m.d.audit, m.d.auditErr = msg.lines, ""
		if msg.err != nil {
			m.d.auditErr = "cannot read: " + msg.err.Error()
		}
		return m, nil

	case storeMsg:
		if msg.snap != nil {
			m.d.snap = msg.snap
		}
		m.d.storeErr = ""
		if msg.err != nil {
			m.d.storeErr = msg.err.Error()
		}
		if msg.notice != "" {
			m.d.notice = msg.notice
		}
		m.refresh()
		return m, nil

	case confirmMsg:
		m.dialog = &msg
		return m, nil

	case actionDoneMsg:
		if msg.err != nil {
			return m, flash(strings.SplitN(msg.what, " ", 2)[0]+" failed: "+msg.err.Error(), true)
		}
		return m, flash(msg.what, false)

	case flashMsg:
		m.flashID++
		m.flash, m.flashErr = msg.text, msg.err
		id := m.flashID
		if !m.timers {
			return m, nil
		}
		return m, tea.Tick(6*time.Second, func(time.Time) tea.Msg { return flashExpiredMsg{id: id} })

	case flashExpiredMsg:
		if msg.id == m.flashID {
			m.flash = ""
		}
		return m, nil

	case tea.KeyMsg:
		if msg.Type == tea.KeyRunes && len(msg.Runes) > 1 {
			return m, m.handleRunes(msg)
		}
		return m, m.handleKey(msg)

	case tea.MouseMsg:
		if m.dialog != nil || m.quitAsk {
			return m, nil
		}
		_, cmd := m.current().Update(msg)
		return m, cmd
	}
	// Anything else (form results, cursor blinks) goes to the current view.
	_, cmd := m.current().Update(msg)
	return m, cmd
}

// handleRunes handles several runes that arrived in one read: keys typed
// fast or over a slow link ("3a" is the 3 key, then a), or a paste. Outside
// a text field each rune is its own key; a paste there is ignored, so pasted
// text can never trigger actions.
func (m *Model) handleRunes(msg tea.KeyMsg) tea.Cmd {
	typing := m.filtering || (m.tab == 2 && m.keysV.form != nil)
	if typing && m.dialog == nil && !m.quitAsk {
		return m.handleKey(msg) // text fields take them whole
	}
	if msg.Paste {
		return nil
	}
	var cmds []tea.Cmd
	for _, r := range msg.Runes {
		cmds = append(cmds, m.handleKey(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: msg.Alt}))
	}
	return tea.Sequence(cmds...)
}

func (m *Model) refresh() {
	for _, v := range m.views() {
		v.Refresh()
	}
}

func (m *Model) handleKey(msg tea.KeyMsg) tea.Cmd {
	k := msg.String()

	// 1. A question on screen takes the key.
	if m.quitAsk {
		m.quitAsk = false
		if k == "y" || k == "Y" || k == "ctrl+c" {
			return tea.Quit
		}
		return nil
	}
	if m.dialog != nil {
		d := m.dialog
		switch k {
		case "y", "Y":
			m.dialog = nil
			return d.yes
		case "n", "N", "esc", "q":
			m.dialog = nil
		case "ctrl+c":
			m.dialog = nil
			return m.quit()
		}
		return nil
	}
	// 2. The filter input.
	if m.filtering {
		switch k {
		case "enter":
			m.filtering = false
			m.filterIn.Blur()
		case "esc":
			m.filtering = false
			m.filterIn.Blur()
			m.filterIn.SetValue("")
			m.setFilter("")
		case "ctrl+c":
			return m.quit()
		default:
			var cmd tea.Cmd
			m.filterIn, cmd = m.filterIn.Update(msg)
			m.setFilter(m.filterIn.Value())
			return cmd
		}
		return nil
	}
	// 3. A view with a form open takes every key but ctrl+c.
	if m.tab == 2 && m.keysV.Capturing() {
		if k == "ctrl+c" {
			return m.quit()
		}
		_, cmd := m.keysV.Update(msg)
		return cmd
	}
	// 4. Full help: any key closes it (and still acts if it means something).
	if m.showHelp && matchStr(k, m.km.Help) {
		m.showHelp = false
		return nil
	}
	switch {
	case matchStr(k, m.km.Quit):
		return m.quit()
	case matchStr(k, m.km.Help):
		m.showHelp = true
		return nil
	case matchStr(k, m.km.NextView):
		m.setTab((m.tab + 1) % 3)
		return nil
	case matchStr(k, m.km.PrevView):
		m.setTab((m.tab + 2) % 3)
		return nil
	case matchStr(k, m.km.Rooms):
		m.setTab(0)
		return nil
	case matchStr(k, m.km.Rejected):
		m.setTab(1)
		return nil
	case matchStr(k, m.km.Keys):
		m.setTab(2)
		return nil
	case matchStr(k, m.km.Filter):
		m.filtering = true
		m.filterIn.SetValue(m.filters[m.tab])
		m.filterIn.CursorEnd()
		return m.filterIn.Focus()
	case k == "esc" && m.showHelp:
		m.showHelp = false
		return nil
	case k == "esc" && m.filters[m.tab] != "" && !(m.tab == 0 && m.rooms.inMember):
		m.setFilter("")
		return nil
	}
	_, cmd := m.current().Update(msg)
	return cmd
}

func (m *Model) quit() tea.Cmd {
	if m.opts.Mode == ModeAttach {
		return tea.Quit
	}
	m.quitAsk = true
	return nil
}

func (m *Model) setTab(t int) {
	m.tab = t
	m.showHelp = false
	m.filterIn.SetValue(m.filters[t])
}

func (m *Model) setFilter(f string) {
	m.filters[m.tab] = f
	m.current().SetFilter(f)
}

// Chrome: 2 header lines, 1 tab line, 1 footer line.
const chrome = 4

func (m *Model) layout() {
	w, h := m.c.Width, max(m.c.Height-chrome, 3)
	for _, v := range m.views() {
		v.SetSize(w, h)
	}
	m.help.Width = w
}

// View draws the console. It only reads state: no I/O, nothing blocks.
func (m *Model) View() string {
	if !m.ready {
		return "starting keyfocus console..."
	}
	w, h := m.c.Width, m.c.Height
	st := m.c.Styles
	header := m.headerView()
	tabs := m.tabsView()
	bodyH := max(h-chrome, 3)
	var body string
	switch {
	case m.quitAsk:
		body = m.dialogView("Quit keyfocus?", m.quitText(), bodyH)
	case m.dialog != nil:
		body = m.dialogView(m.dialog.title, m.dialog.body, bodyH)
	case m.showHelp:
		body = m.helpView()
	default:
		body = m.current().View()
	}
	body = fitBlock(body, w, bodyH)
	var footer string
	switch {
	case m.flash != "" && m.flashErr:
		footer = st.Error.Render(fit("! "+m.flash, w, false))
	case m.flash != "":
		footer = st.OK.Render(fit(m.flash, w, false))
	case m.quitAsk || m.dialog != nil:
		footer = st.Help.Render(fit("y yes · n/esc no", w, false))
	default:
		footer = fit(m.help.ShortHelpView(m.shortHelp()), w, false)
	}
	return header + "\n" + tabs + "\n" + body + "\n" + footer
}

func (m *Model) quitText() string {
	switch m.opts.Mode {
	case ModeDemo:
		return "This stops the focus, the simulated participants and the demo Prosody."
	default:
		return "This stops the focus: people in rooms stay, but nobody new gets in and revocations are not enforced until keyfocus runs again."
	}
}

func (m *Model) dialogView(title, body string, h int) string {
	st := m.c.Styles
	w := min(m.c.Width-4, 72)
	text := st.Title.Render(title) + "\n\n" + wrap(body, w-4) + "\n\n" + st.Label.Render("y") + " yes   " + st.Label.Render("n") + " no"
	box := st.Dialog.Width(w).Render(text)
	return lipgloss.PlaceHorizontal(m.c.Width, lipgloss.Center, box)
}

func (m *Model) shortHelp() []key.Binding {
	if m.filtering {
		return []key.Binding{
			key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "keep filter")),
			key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "clear filter")),
		}
	}
	b := m.current().ShortHelp()
	if m.tab == 2 && m.keysV.Capturing() {
		return b
	}
	return append(b, m.km.NextView, m.km.Filter, m.km.Help, m.km.Quit)
}

func (m *Model) helpView() string {
	groups := m.current().FullHelp()
	groups = append(groups, []key.Binding{m.km.NextView, m.km.PrevView, m.km.Rooms, m.km.Rejected, m.km.Keys},
		[]key.Binding{m.km.Filter, m.km.Help, m.km.Quit})
	title := m.c.Styles.Title.Render("Keys — " + viewNames[m.tab] + " view")
	note := ""
	if m.c.ReadOnly {
		note = "\n\n" + m.c.Styles.Warn.Render("read-only console: editing actions are hidden")
	}
	return title + "\n\n" + m.help.FullHelpView(groups) + note + "\n\n" + m.c.Styles.Dim.Render("? or esc closes this help")
}

func (m *Model) tabsView() string {
	st := m.c.Styles
	var parts []string
	for i, n := range viewNames {
		label := fmt.Sprintf("%d %s", i+1, n)
		if i == m.tab {
			parts = append(parts, st.TabActive.Render("["+label+"]"))
		} else {
			parts = append(parts, st.TabInactive.Render(" "+label+" "))
		}
	}
	line := strings.Join(parts, " ")
	right := ""
	switch {
	case m.filtering:
		right = m.filterIn.View()
	case m.filters[m.tab] != "":
		right = st.Warn.Render("filter: " + m.filters[m.tab])
	}
	if m.c.ReadOnly {
		right = strings.TrimSpace(st.Warn.Render("READ-ONLY") + " " + right)
	}
	if right != "" {
		gap := m.c.Width - lipgloss.Width(line) - lipgloss.Width(right)
		if gap >= 1 {
			line += strings.Repeat(" ", gap) + right
		} else {
			line += " " + right
		}
	}
	return fit(line, m.c.Width, false)
}

func (m *Model) headerView() string {
	st := m.c.Styles
	s := m.d.st
	comp := m.opts.Component
	if comp == "" {
		comp = s.Component
	}
	if comp == "" {
		comp = "(component unknown)"
	}
	var conn, connErr string
	switch {
	case s.Conn.Connected:
		conn = st.OK.Render("● connected")
	case s.Conn.Attempt > 0:
		conn = st.Warn.Render(fmt.Sprintf("○ reconnecting (attempt %d)", s.Conn.Attempt))
		connErr = s.Conn.LastError
	case s.Conn.Since.IsZero():
		conn = st.Warn.Render("○ connecting")
	default:
		conn = st.Error.Render("○ disconnected")
		connErr = s.Conn.LastError
	}
	counts := fmt.Sprintf("rooms %d  members %d  rejected %d", len(s.Rooms), s.Members, s.RejectedLen())
	line1 := st.Title.Render(comp) + "  " + conn
	if m.c.Width >= 100 {
		line1 = "keyfocus " + line1
	}
	// The counts always show; the connection error gets what room is left.
	if room := m.c.Width - lipgloss.Width(line1) - len(counts) - 2; connErr != "" && room > 4 {
		line1 += st.Dim.Render(fit(": "+connErr, min(room, len(connErr)+2), false))
	}
	if gap := m.c.Width - lipgloss.Width(line1) - len(counts); gap >= 2 {
		line1 += strings.Repeat(" ", gap) + counts
	} else {
		line1 += "  " + counts
	}

	store := s.Store
	path := store.Path
	if path == "" && m.opts.Store != nil {
		path = m.opts.Store.Path()
	}
	line2 := fmt.Sprintf("keys %s · %d keys", orDash(path), store.Keys)
	if m.d.snap != nil && store.Path == "" {
		line2 = fmt.Sprintf("keys %s · %d keys", orDash(path), m.d.snap.Len())
	}
	if !store.LastReload.IsZero() {
		line2 += " · reloaded " + store.LastReload.In(m.c.Loc).Format("15:04:05")
	}
	line2 = st.Dim.Render(line2)
	switch {
	case store.LastError != "":
		line2 += "  " + st.Error.Render("! "+shortPath(store.LastError, path))
	case m.d.storeErr != "":
		line2 += "  " + st.Error.Render("! "+shortPath(m.d.storeErr, path))
	case store.Notice != "":
		line2 += "  " + st.Warn.Render("! "+store.Notice)
	case m.d.notice != "":
		line2 += "  " + st.Warn.Render("! "+m.d.notice)
	case m.d.snap != nil && len(m.d.snap.Warnings) > 0:
		w := m.d.snap.Warnings
		text := shortPath(w[0], m.d.snap.Path)
		if len(w) > 1 {
			text = fmt.Sprintf("%d warnings, first: %s", len(w), text)
		}
		line2 += "  " + st.Warn.Render("! "+text)
	}
	return fit(line1, m.c.Width, false) + "\n" + fit(line2, m.c.Width, false)
}

// shortPath shows "FILE:LINE: message" with the file's base name: the path
// is on the same line already.
func shortPath(msg, path string) string {
	if path != "" {
		if rest, ok := strings.CutPrefix(msg, path); ok {
			return filepath.Base(path) + rest
		}
		if rest, ok := strings.CutPrefix(msg, filepath.Base(path)); ok {
			return filepath.Base(path) + rest
		}
	}
	return msg
}

// fitBlock makes s exactly h lines of exactly w cells.
func fitBlock(s string, w, h int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > h {
		lines = lines[:h]
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	for i, l := range lines {
		lines[i] = fit(l, w, false)
	}
	return strings.Join(lines, "\n")
}
