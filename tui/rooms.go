package tui

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/tui/common"
	"github.com/keyfocus/keyfocus/tui/live"
)

// RoomsKeyMap is the Rooms view's keys.
type RoomsKeyMap struct {
	navKeys
	Members      key.Binding
	Back         key.Binding
	Sort         key.Binding
	Reverse      key.Binding
	RemoveMember key.Binding
	EndRoom      key.Binding
}

// DefaultRoomsKeyMap returns the Rooms view's keys.
func DefaultRoomsKeyMap() RoomsKeyMap {
	return RoomsKeyMap{
		navKeys:      defaultNavKeys(),
		Members:      key.NewBinding(key.WithKeys("enter", "l", "right"), key.WithHelp("enter/l", "members")),
		Back:         key.NewBinding(key.WithKeys("esc", "h", "left"), key.WithHelp("esc/h", "rooms")),
		Sort:         key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "sort")),
		Reverse:      key.NewBinding(key.WithKeys("S"), key.WithHelp("S", "reverse")),
		RemoveMember: key.NewBinding(key.WithKeys("x"), key.WithHelp("x", "remove member")),
		EndRoom:      key.NewBinding(key.WithKeys("X"), key.WithHelp("X", "end room")),
	}
}

// Room sort orders.
const (
	sortName = iota
	sortMembers
	sortAge
	sortCount
)

var sortNames = [sortCount]string{"name", "members", "age"}

// roomsView lists rooms and the members of the selected room.
type roomsView struct {
	c  *common.Common
	d  *data
	km RoomsKeyMap

	rooms   *table
	members *table

	rows     []*live.Room // filtered and sorted
	filter   string
	version  uint64 // RoomsVersion the rows were built at
	setVer   uint64 // RoomSetVersion the rows were built at
	built    bool
	sortBy   int
	desc     bool
	selected string // name of the room under the cursor
	inMember bool   // the members pane has the focus
	width    int
	height   int
}

func newRoomsView(c *common.Common, d *data) *roomsView {
	v := &roomsView{c: c, d: d, km: DefaultRoomsKeyMap()}
	v.rooms = newTable(
		column{Title: "ROOM", Flex: true, Min: 12, Weight: 3},
		column{Title: "MEMBERS", Width: 7, Right: true},
		column{Title: "KEYS IN USE", Flex: true, Min: 10, Weight: 2},
		column{Title: "AGE", Width: 7, Right: true},
	)
	v.members = newTable(
		column{Title: "NICK", Flex: true, Min: 8},
		column{Title: "CLIENT", Flex: true, Min: 8},
		column{Title: "KEY", Width: 8},
		column{Title: "JOINED", Width: 7, Right: true},
		column{Title: "ROLE", Width: 11},
	)
	v.members.focused = false
	if c.ReadOnly {
		v.km.RemoveMember.SetEnabled(false)
		v.km.EndRoom.SetEnabled(false)
	}
	return v
}

func (v *roomsView) Init() tea.Cmd { return nil }

func (v *roomsView) SetSize(w, h int) {
	v.width, v.height = w, h
	top := max(h/2, 3)
	v.rooms.SetSize(w, top)
	v.members.SetSize(w, max(h-top-1, 2)) // one line for the members title
}

func (v *roomsView) SetFilter(f string) {
	if f != v.filter {
		v.filter = f
		v.built = false
		v.Refresh()
	}
}

// Refresh rebuilds the rows if the rooms changed since the last build.
func (v *roomsView) Refresh() {
	st := v.d.st
	// Member changes do not move rooms sorted by name or age, unless a
	// filter looks at members: then only the row counts need a look.
	orderHolds := v.sortBy != sortMembers && v.filter == "" && v.setVer == st.RoomSetVersion
	if v.built && (v.version == st.RoomsVersion || orderHolds) {
		v.version = st.RoomsVersion
		v.members.SetRows(len(v.selectedMembers()))
		return
	}
	v.built, v.version, v.setVer = true, st.RoomsVersion, st.RoomSetVersion
	v.rows = v.rows[:0]
	f := strings.ToLower(v.filter)
	for _, r := range v.d.st.Rooms {
		if f == "" || roomMatches(r, f) {
			v.rows = append(v.rows, r)
		}
	}
	less := func(a, b *live.Room) bool { return a.Name < b.Name }
	switch v.sortBy {
	case sortMembers:
		less = func(a, b *live.Room) bool {
			if len(a.Members) != len(b.Members) {
				return len(a.Members) > len(b.Members)
			}
			return a.Name < b.Name
		}
	case sortAge:
		less = func(a, b *live.Room) bool {
			if !a.Created.Equal(b.Created) {
				return a.Created.Before(b.Created)
			}
			return a.Name < b.Name
		}
	}
	if v.desc {
		sort.Slice(v.rows, func(i, j int) bool { return less(v.rows[j], v.rows[i]) })
	} else {
		sort.Slice(v.rows, func(i, j int) bool { return less(v.rows[i], v.rows[j]) })
	}
	v.rooms.SetRows(len(v.rows))
	// Keep the cursor on the same room when it is still there.
	if v.selected != "" {
		found := false
		for i, r := range v.rows {
			if r.Name == v.selected {
				v.rooms.Select(i)
				found = true
				break
			}
		}
		if !found && v.inMember {
			v.setMemberPane(false) // the room ended under the operator's eyes
		}
	}
	v.syncSelected()
}

func roomMatches(r *live.Room, f string) bool {
	if strings.Contains(strings.ToLower(r.Display), f) {
		return true
	}
	for i := range r.Members {
		m := &r.Members[i]
		if strings.Contains(strings.ToLower(m.Nick), f) || strings.Contains(strings.ToLower(m.Client), f) ||
			strings.HasPrefix(m.Fingerprint, f) {
			return true
		}
	}
	return false
}

func (v *roomsView) syncSelected() {
	prev := v.selected
	if r := v.selectedRoom(); r != nil {
		v.selected = r.Name
	} else {
		v.selected = ""
	}
	if v.selected != prev {
		v.members.Top()
	}
	v.members.SetRows(len(v.selectedMembers()))
}

func (v *roomsView) selectedRoom() *live.Room {
	if len(v.rows) == 0 {
		return nil
	}
	return v.rows[v.rooms.Cursor()]
}

func (v *roomsView) selectedMembers() []focus.Member {
	if r := v.d.st.Rooms[v.selected]; r != nil {
		return r.Members
	}
	return nil
}

func (v *roomsView) selectedMember() *focus.Member {
	ms := v.selectedMembers()
	if len(ms) == 0 {
		return nil
	}
	return &ms[v.members.Cursor()]
}

func (v *roomsView) setMemberPane(on bool) {
	v.inMember = on
	v.members.focused = on
	v.rooms.focused = !on
}

func (v *roomsView) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		return v, v.handleKey(msg.String())
	case tea.MouseMsg:
		switch msg.Button {
		case tea.MouseButtonWheelUp:
			v.move(-1)
		case tea.MouseButtonWheelDown:
			v.move(1)
		}
	}
	return v, nil
}

func (v *roomsView) move(d int) {
	if v.inMember {
		v.members.Move(d)
		return
	}
	v.rooms.Move(d)
	v.syncSelected()
}

func (v *roomsView) handleKey(k string) tea.Cmd {
	t := v.rooms
	if v.inMember {
		t = v.members
	}
	if t.nav(v.km.navKeys, k) {
		if !v.inMember {
			v.syncSelected()
		}
		return nil
	}
	switch {
	case matchStr(k, v.km.Members):
		if v.selectedRoom() != nil {
			v.setMemberPane(true)
		}
	case matchStr(k, v.km.Back):
		v.setMemberPane(false)
	case matchStr(k, v.km.Sort):
		v.sortBy = (v.sortBy + 1) % sortCount
		v.built = false
		v.Refresh()
	case matchStr(k, v.km.Reverse):
		v.desc = !v.desc
		v.built = false
		v.Refresh()
	case bound(k, v.km.RemoveMember) || bound(k, v.km.EndRoom):
		if v.c.ReadOnly {
			return flash("read-only console: operator actions are disabled", true)
		}
		if bound(k, v.km.RemoveMember) {
			return v.confirmRemoveMember()
		}
		return v.confirmEndRoom()
	}
	return nil
}

func (v *roomsView) confirmRemoveMember() tea.Cmd {
	r := v.d.st.Rooms[v.selected]
	if r == nil {
		return flash("no room selected", true)
	}
	if !v.inMember {
		return flash("select a member first (enter), then x", true)
	}
	m := v.selectedMember()
	if m == nil {
		return flash("this room has no members", true)
	}
	src, log := v.d.src, v.d.log
	room, nick, display := r.Name, m.Nick, r.Display
	body := fmt.Sprintf("%s (%s) will be kicked out of %s now.\nTheir key stays valid: they can come back. Revoke the key (Keys view) to keep them out.",
		m.Nick, clientOf(m), display)
	return func() tea.Msg {
		return confirmMsg{
			title: "Remove " + nick + " from " + display + "?",
			body:  body,
			yes: func() tea.Msg {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				err := src.RemoveMember(ctx, room, nick, "removed by an operator")
				return logAction(log, "removed "+nick+" from "+display, err)
			},
		}
	}
}

func (v *roomsView) confirmEndRoom() tea.Cmd {
	r := v.d.st.Rooms[v.selected]
	if r == nil {
		return flash("no room selected", true)
	}
	src, log := v.d.src, v.d.log
	room, display := r.Name, r.Display
	var body string
	if n := len(r.Members); n == 0 {
		body = "The room is destroyed. Nobody is in it."
	} else {
		body = fmt.Sprintf("The room is destroyed and its %d member(s) removed now: %s.", n, memberList(r.Members, 8))
	}
	return func() tea.Msg {
		return confirmMsg{
			title: "End room " + display + "?",
			body:  body,
			yes: func() tea.Msg {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				err := src.EndRoom(ctx, room, "ended by an operator")
				return logAction(log, "ended "+display, err)
			},
		}
	}
}

func memberList(ms []focus.Member, limit int) string {
	var names []string
	for i := range ms {
		if i == limit {
			names = append(names, "and "+strconv.Itoa(len(ms)-limit)+" more")
			break
		}
		names = append(names, ms[i].Nick)
	}
	return strings.Join(names, ", ")
}

func clientOf(m *focus.Member) string {
	if m.Client == "" {
		return "unknown key"
	}
	return m.Client
}

func (v *roomsView) View() string {
	st := v.c.Styles
	now := v.c.Now()
	top := v.rooms.View(st, func(row, col int) string {
		r := v.rows[row]
		switch col {
		case 0:
			return r.Display
		case 1:
			return strconv.Itoa(len(r.Members))
		case 2:
			return clientsInUse(r)
		default:
			return age(now, r.Created)
		}
	}, emptyText(v.filter, "no rooms yet: they appear when someone with a valid key asks for a conference"))

	ms := v.selectedMembers()
	title := "MEMBERS"
	if r := v.d.st.Rooms[v.selected]; r != nil {
		title = fmt.Sprintf("MEMBERS of %s (%d)", r.Display, len(r.Members))
	}
	sortHint := "sorted by " + sortNames[v.sortBy]
	if v.desc {
		sortHint += ", reversed"
	}
	titleStyle := st.Label
	if v.inMember {
		titleStyle = st.Title
	}
	titleLine := titleStyle.Render(fit(title, max(v.width-len(sortHint)-1, 0), false)) + " " + st.Dim.Render(sortHint)
	bottom := v.members.View(st, func(row, col int) string {
		m := &ms[row]
		switch col {
		case 0:
			return m.Nick
		case 1:
			return clientOf(m)
		case 2:
			return orDash(m.Fingerprint)
		case 3:
			return age(now, m.Joined)
		default:
			return orDash(m.Role)
		}
	}, "nobody in this room")
	return top + "\n" + titleLine + "\n" + bottom
}

// clientsInUse lists the client names of the keys the room's members use.
func clientsInUse(r *live.Room) string {
	var names []string
	for i := range r.Members {
		n := clientOf(&r.Members[i])
		dup := false
		for _, x := range names {
			if x == n {
				dup = true
				break
			}
		}
		if !dup {
			names = append(names, n)
		}
		if len(names) > 4 {
			break
		}
	}
	return strings.Join(names, ", ")
}

func (v *roomsView) ShortHelp() []key.Binding {
	if v.inMember {
		return []key.Binding{v.km.Up, v.km.Down, v.km.Back, v.km.RemoveMember, v.km.EndRoom}
	}
	return []key.Binding{v.km.Up, v.km.Down, v.km.Members, v.km.Sort, v.km.EndRoom}
}

func (v *roomsView) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		v.km.bindings(),
		{v.km.Members, v.km.Back, v.km.Sort, v.km.Reverse},
		{v.km.RemoveMember, v.km.EndRoom},
	}
}

func emptyText(filter, none string) string {
	if filter != "" {
		return "nothing matches the filter " + strconv.Quote(filter) + " (esc in the filter clears it)"
	}
	return none
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is a compact duration since t: 42s, 7m, 3h05, 2d04.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%dd%02d", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}
