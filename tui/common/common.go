// Package common holds what every view of the keyfocus console shares: the
// terminal size, the styles (built from the session's lipgloss renderer, so
// colours are right over ssh), the clock and the read-only switch.
//
// Nothing here is package-level state: each console (one per terminal or per
// ssh session) builds its own Common.
package common

import (
	"time"

	"github.com/charmbracelet/lipgloss"
)

// Common is handed to every view.
type Common struct {
	Width, Height int
	Styles        *Styles
	Renderer      *lipgloss.Renderer
	// Now is the console's clock (ages, "joined 3m ago"); tests fix it.
	Now func() time.Time
	// Loc is where clock times are shown (default time.Local).
	Loc *time.Location
	// ReadOnly hides and refuses every editing action.
	ReadOnly bool
}

// New returns a Common for renderer r (nil: lipgloss.DefaultRenderer()).
func New(r *lipgloss.Renderer, now func() time.Time, readOnly bool) *Common {
	if r == nil {
		r = lipgloss.DefaultRenderer()
	}
	if now == nil {
		now = time.Now
	}
	return &Common{Renderer: r, Styles: DefaultStyles(r), Now: now, Loc: time.Local, ReadOnly: readOnly}
}

// Styles are the console's lipgloss styles. Every style keeps a textual cue
// (markers, brackets) as well, so the console reads the same with NO_COLOR.
type Styles struct {
	App         lipgloss.Style
	Title       lipgloss.Style
	Dim         lipgloss.Style
	OK          lipgloss.Style
	Warn        lipgloss.Style
	Error       lipgloss.Style
	TabActive   lipgloss.Style
	TabInactive lipgloss.Style
	TableHeader lipgloss.Style
	Selected    lipgloss.Style
	Pane        lipgloss.Style
	Dialog      lipgloss.Style
	SecretKey   lipgloss.Style
	Label       lipgloss.Style
	Help        lipgloss.Style
}

// DefaultStyles builds the styles from r.
func DefaultStyles(r *lipgloss.Renderer) *Styles {
	accent := lipgloss.AdaptiveColor{Light: "#5A56E0", Dark: "#7571F9"}
	dim := lipgloss.AdaptiveColor{Light: "#8A8A8A", Dark: "#777777"}
	green := lipgloss.AdaptiveColor{Light: "#1A7F37", Dark: "#3FB950"}
	yellow := lipgloss.AdaptiveColor{Light: "#9A6700", Dark: "#D29922"}
	red := lipgloss.AdaptiveColor{Light: "#CF222E", Dark: "#F85149"}
	return &Styles{
		App:         r.NewStyle(),
		Title:       r.NewStyle().Bold(true).Foreground(accent),
		Dim:         r.NewStyle().Foreground(dim),
		OK:          r.NewStyle().Foreground(green),
		Warn:        r.NewStyle().Foreground(yellow),
		Error:       r.NewStyle().Foreground(red).Bold(true),
		TabActive:   r.NewStyle().Bold(true).Foreground(accent).Underline(true),
		TabInactive: r.NewStyle().Foreground(dim),
		TableHeader: r.NewStyle().Bold(true),
		Selected:    r.NewStyle().Reverse(true),
		Pane:        r.NewStyle(),
		Dialog:      r.NewStyle().Border(lipgloss.RoundedBorder()).BorderForeground(accent).Padding(0, 1),
		SecretKey:   r.NewStyle().Bold(true).Foreground(yellow),
		Label:       r.NewStyle().Bold(true),
		Help:        r.NewStyle().Foreground(dim),
	}
}
