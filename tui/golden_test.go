package tui

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"
)

// TestGolden runs the console as a real program (teatest) and compares each
// view with testdata/TestGolden/*.golden. Update with
// `go test ./tui -run TestGolden -update`.
func TestGolden(t *testing.T) {
	lipgloss.SetColorProfile(termenv.Ascii)
	tests := []struct {
		name string
		opts Options
		keys []string
		wait string
	}{
		{name: "rooms"},
		{name: "rooms_members", keys: []string{"G", "enter"}, wait: "MEMBERS of standup"},
		{name: "rejected", keys: []string{"2"}, wait: "refused by reason"},
		{name: "keys", keys: []string{"3"}, wait: "EXPIRES"},
		{name: "keys_add_form", keys: []string{"3", "a"}, wait: "Add a key"},
		{name: "keys_form_errors", keys: []string{"3", "a", "tab", "tab", "s", "o", "o", "n", "ctrl+s"}, wait: "required"},
		{name: "revoke_confirm", keys: []string{"3", "G", "d"}, wait: "Revoke the key of TTND"},
		{name: "end_room_confirm", keys: []string{"G", "X"}, wait: "End room standup"},
		{name: "help", keys: []string{"?"}, wait: "closes this help"},
		{name: "filter", keys: []string{"/", "a", "c", "m", "e"}, wait: "/acme"},
		{name: "readonly", opts: Options{ReadOnly: true}, keys: []string{"3"}, wait: "READ-ONLY"},
		{name: "quit_run_mode", opts: Options{Mode: ModeRun}, keys: []string{"q"}, wait: "Quit keyfocus?"},
	}
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s_%dx%d", tt.name, size[0], size[1]), func(t *testing.T) {
				f := newFixture(t, tt.opts)
				tm := teatest.NewTestModel(t, f.m, teatest.WithInitialTermSize(size[0], size[1]))
				waitOutput(t, tm, "rooms 3")
				for _, k := range tt.keys {
					tm.Send(keyMsg(k))
				}
				if tt.wait != "" {
					waitOutput(t, tm, tt.wait)
				}
				if err := tm.Quit(); err != nil {
					t.Fatal(err)
				}
				fm := tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second)).(*Model)
				teatest.RequireEqualOutput(t, []byte(fm.View()))
			})
		}
	}
}

func waitOutput(t *testing.T, tm *teatest.TestModel, s string) {
	t.Helper()
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(s)) },
		teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(5*time.Millisecond))
}

var _ tea.Model = (*Model)(nil)
