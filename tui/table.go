package tui

import (
	"strings"

	"github.com/charmbracelet/x/ansi"
	"github.com/keyfocus/keyfocus/tui/common"
)

// column is one column of a table. Fixed columns have Width; flex columns
// share what is left (at least Min each).
type column struct {
	Title  string
	Width  int
	Flex   bool
	Min    int
	Weight int // share of the flexible width (default 1)
	Right  bool
}

// table is a scrolling list of rows that renders only the visible rows, so
// its cost does not grow with the number of rows. Rows are addressed by
// index; the caller supplies cells.
type table struct {
	cols    []column
	n       int // rows
	cursor  int
	offset  int
	width   int
	height  int // rows shown (without the header line)
	focused bool
	widths  []int
}

func newTable(cols ...column) *table {
	return &table{cols: cols, focused: true}
}

func (t *table) SetSize(w, h int) {
	t.width = w
	t.height = max(h-1, 1)
	t.layout()
	t.clamp()
}

func (t *table) layout() {
	t.widths = make([]int, len(t.cols))
	fixed, weights := 0, 0
	for i, c := range t.cols {
		if c.Flex {
			weights += max(c.Weight, 1)
		} else {
			t.widths[i] = c.Width
			fixed += c.Width
		}
	}
	// 2 for the cursor marker, 1 between columns.
	left := t.width - 2 - fixed - (len(t.cols) - 1)
	for i, c := range t.cols {
		if !c.Flex {
			continue
		}
		wt := max(c.Weight, 1)
		w := left * wt / weights
		if w < c.Min {
			w = c.Min
		}
		t.widths[i] = w
		left -= w
		weights -= wt
	}
}

// SetRows sets the number of rows, keeping the cursor in range.
func (t *table) SetRows(n int) {
	t.n = n
	t.clamp()
}

func (t *table) clamp() {
	if t.cursor >= t.n {
		t.cursor = t.n - 1
	}
	if t.cursor < 0 {
		t.cursor = 0
	}
	if t.offset > t.cursor {
		t.offset = t.cursor
	}
	if t.cursor >= t.offset+t.height {
		t.offset = t.cursor - t.height + 1
	}
	if t.offset > max(t.n-t.height, 0) {
		t.offset = max(t.n-t.height, 0)
	}
	if t.offset < 0 {
		t.offset = 0
	}
}

func (t *table) Move(d int) { t.cursor += d; t.clamp() }
func (t *table) Top()       { t.cursor = 0; t.clamp() }
func (t *table) Bottom()    { t.cursor = t.n - 1; t.clamp() }
func (t *table) Select(i int) {
	t.cursor = i
	t.clamp()
}
func (t *table) Cursor() int { return t.cursor }
func (t *table) Page() int   { return max(t.height-1, 1) }

// nav applies a navigation binding; it reports whether k was one.
func (t *table) nav(k navKeys, msg string) bool {
	switch {
	case matchStr(msg, k.Up):
		t.Move(-1)
	case matchStr(msg, k.Down):
		t.Move(1)
	case matchStr(msg, k.PageUp):
		t.Move(-t.Page())
	case matchStr(msg, k.PageDown):
		t.Move(t.Page())
	case matchStr(msg, k.Home):
		t.Top()
	case matchStr(msg, k.End):
		t.Bottom()
	default:
		return false
	}
	return true
}

// View renders the header and the visible rows. cell(row, col) gives plain
// text; style (optional) may colour a whole row.
func (t *table) View(st *common.Styles, cell func(row, col int) string, empty string) string {
	var b strings.Builder
	hdr := make([]string, len(t.cols))
	for i, c := range t.cols {
		hdr[i] = fit(c.Title, t.widths[i], c.Right)
	}
	b.WriteString(st.TableHeader.Render(fit("  "+strings.Join(hdr, " "), t.width, false)))
	if t.n == 0 {
		b.WriteString("\n")
		b.WriteString(st.Dim.Render(fit("  "+empty, t.width, false)))
		for i := 1; i < t.height; i++ {
			b.WriteString("\n")
		}
		return b.String()
	}
	cells := make([]string, len(t.cols))
	for r := t.offset; r < t.offset+t.height; r++ {
		b.WriteString("\n")
		if r >= t.n {
			continue
		}
		for i, c := range t.cols {
			cells[i] = fit(cell(r, i), t.widths[i], c.Right)
		}
		marker := "  "
		if r == t.cursor {
			marker = "> "
		}
		line := fit(marker+strings.Join(cells, " "), t.width, false)
		if r == t.cursor && t.focused {
			line = st.Selected.Render(line)
		}
		b.WriteString(line)
	}
	return b.String()
}

// fit pads or truncates s to exactly w cells.
func fit(s string, w int, right bool) string {
	if w <= 0 {
		return ""
	}
	sw := ansi.StringWidth(s)
	if sw > w {
		return ansi.Truncate(s, w, "…")
	}
	pad := strings.Repeat(" ", w-sw)
	if right {
		return pad + s
	}
	return s + pad
}
