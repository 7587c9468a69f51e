package tui

import (
	"strings"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/keyfocus/keyfocus/tui/common"
)

// The Keys view's audit pane: the last lines of the audit log (who added,
// edited or revoked which key, refusals, removals), under the keys table,
// when Options.AuditTail is set and the terminal is tall enough.

// auditMsg carries the audit log's last lines, read in a Cmd.
type auditMsg struct {
	lines []string
	err   error
}

// auditPaneMinHeight is the smallest Keys view that gets an audit pane.
const auditPaneMinHeight = 14

// auditPaneRows is how many rows (title included) the pane takes in a Keys
// view of height h; 0 when there is no pane.
func auditPaneRows(d *data, h int) int {
	if d.auditTail == nil || h < auditPaneMinHeight {
		return 0
	}
	return min(7, h/4)
}

// loadAudit reads the audit tail (I/O: in a Cmd, never in Update or View).
func loadAudit(d *data, n int) tea.Cmd {
	tail := d.auditTail
	if tail == nil || n <= 0 {
		return nil
	}
	return func() tea.Msg {
		lines, err := tail(n)
		return auditMsg{lines: lines, err: err}
	}
}

// auditPaneView draws the pane in rows lines of width w.
func auditPaneView(c *common.Common, d *data, w, rows int) string {
	st := c.Styles
	lines := make([]string, 0, rows)
	title := "AUDIT LOG (latest last)"
	if d.auditErr != "" {
		title += "  " + d.auditErr
	}
	lines = append(lines, st.TableHeader.Render(fit("  "+title, w, false)))
	body := d.audit
	if len(body) > rows-1 {
		body = body[len(body)-(rows-1):]
	}
	if len(body) == 0 && d.auditErr == "" {
		lines = append(lines, st.Dim.Render(fit("  nothing recorded yet", w, false)))
	}
	for _, l := range body {
		lines = append(lines, st.Dim.Render(fit("  "+l, w, false)))
	}
	for len(lines) < rows {
		lines = append(lines, "")
	}
	return strings.Join(lines, "\n")
}
