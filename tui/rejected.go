package tui

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/tui/common"
)

// RejectedKeyMap is the Rejected view's keys.
type RejectedKeyMap struct {
	navKeys
}

// DefaultRejectedKeyMap returns the Rejected view's keys.
func DefaultRejectedKeyMap() RejectedKeyMap { return RejectedKeyMap{navKeys: defaultNavKeys()} }

// rejectedView lists refused conference requests, newest first, with a
// count per reason.
type rejectedView struct {
	c  *common.Common
	d  *data
	km RejectedKeyMap

	tbl     *table
	filter  string
	idx     []int // filtered rows (indexes into the state's ring); nil: all
	version uint64
	built   bool
	width   int
}

func newRejectedView(c *common.Common, d *data) *rejectedView {
	return &rejectedView{c: c, d: d, km: DefaultRejectedKeyMap(), tbl: newTable(
		column{Title: "TIME", Width: 8},
		column{Title: "REQUESTER", Flex: true, Min: 10, Weight: 3},
		column{Title: "ROOM", Flex: true, Min: 10, Weight: 2},
		column{Title: "REASON", Width: 16},
		column{Title: "CODE", Width: 4, Right: true},
		column{Title: "KEY", Width: 8},
	)}
}

func (v *rejectedView) Init() tea.Cmd { return nil }

func (v *rejectedView) SetSize(w, h int) {
	v.width = w
	v.tbl.SetSize(w, max(h-1, 2)) // one line for the counts
}

func (v *rejectedView) SetFilter(f string) {
	if f != v.filter {
		v.filter = f
		v.built = false
		v.Refresh()
	}
}

func (v *rejectedView) Refresh() {
	if v.built && v.version == v.d.st.RejectedVersion {
		return
	}
	v.built, v.version = true, v.d.st.RejectedVersion
	st := v.d.st
	if v.filter == "" {
		v.idx = nil
		v.tbl.SetRows(st.RejectedLen())
		return
	}
	f := strings.ToLower(v.filter)
	v.idx = v.idx[:0]
	for i := 0; i < st.RejectedLen(); i++ {
		r := st.Rejected(i)
		if strings.Contains(strings.ToLower(r.Requester), f) || strings.Contains(strings.ToLower(st.DisplayRoom(r.Room)), f) ||
			strings.Contains(r.Reason, f) || strings.HasPrefix(r.Fingerprint, f) {
			v.idx = append(v.idx, i)
		}
	}
	v.tbl.SetRows(len(v.idx))
}

func (v *rejectedView) row(i int) *focus.Rejection {
	if v.idx != nil {
		i = v.idx[i]
	}
	return v.d.st.Rejected(i)
}

func (v *rejectedView) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		v.tbl.nav(v.km.navKeys, msg.String())
	case tea.MouseMsg:
		switch msg.Button {
		case tea.MouseButtonWheelUp:
			v.tbl.Move(-1)
		case tea.MouseButtonWheelDown:
			v.tbl.Move(1)
		}
	}
	return v, nil
}

func (v *rejectedView) View() string {
	st := v.c.Styles
	counts := v.d.st.ReasonCounts
	reasons := make([]string, 0, len(counts))
	for r := range counts {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if counts[reasons[i]] != counts[reasons[j]] {
			return counts[reasons[i]] > counts[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %d", r, counts[r])
	}
	line := "refused by reason: none yet"
	if len(parts) > 0 {
		line = "refused by reason: " + strings.Join(parts, " · ")
	}
	body := v.tbl.View(st, func(row, col int) string {
		r := v.row(row)
		switch col {
		case 0:
			return r.Time.In(v.c.Loc).Format("15:04:05")
		case 1:
			return r.Requester
		case 2:
			return v.d.st.DisplayRoom(r.Room)
		case 3:
			return r.Reason
		case 4:
			if r.Code == 0 {
				return "-"
			}
			return strconv.Itoa(r.Code)
		default:
			return orDash(r.Fingerprint)
		}
	}, emptyText(v.filter, "nobody has been turned away"))
	return st.Label.Render(fit(line, v.width, false)) + "\n" + body
}

func (v *rejectedView) ShortHelp() []key.Binding {
	return []key.Binding{v.km.Up, v.km.Down, v.km.Home}
}

func (v *rejectedView) FullHelp() [][]key.Binding {
	return [][]key.Binding{v.km.bindings()}
}
