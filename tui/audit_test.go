package tui

import (
	"errors"
	"strings"
	"testing"
)

// The Keys view shows the audit log's tail when Options.AuditTail is set and
// the terminal is tall enough; it reads it in a Cmd on the view's tick.
func TestKeysViewAuditPane(t *testing.T) {
	lines := []string{
		"12-04 20:01:02  key added \"Acme Corp\" [0123abcd] by user:alice",
		"12-04 20:02:03  key revoked \"Old Co\" [89abcdef] by changed outside keyfocus",
		"12-04 20:03:04  ssh login read-only by ssh:SHA256:abc",
	}
	tests := []struct {
		name      string
		tail      func(int) ([]string, error)
		w, h      int
		want      []string
		wantNot   []string
		wantAsked int
	}{
		{"tall terminal", func(n int) ([]string, error) { return lines[max(len(lines)-n, 0):], nil }, 120, 40,
			[]string{"AUDIT LOG", "key added \"Acme Corp\" [0123abcd] by user:alice", "ssh login read-only"}, nil, 6},
		{"80x24", func(n int) ([]string, error) { return lines[max(len(lines)-n, 0):], nil }, 80, 24,
			[]string{"AUDIT LOG", "ssh login read-only"}, nil, 4},
		{"too short for a pane", func(n int) ([]string, error) { return lines, nil }, 80, 16,
			nil, []string{"AUDIT LOG"}, 0},
		{"unreadable log", func(int) ([]string, error) { return nil, errors.New("permission denied") }, 120, 40,
			[]string{"AUDIT LOG", "cannot read: permission denied"}, nil, 6},
		{"no audit log", nil, 120, 40, nil, []string{"AUDIT LOG"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asked := 0
			var tail func(int) ([]string, error)
			if tt.tail != nil {
				tail = func(n int) ([]string, error) { asked = n; return tt.tail(n) }
			}
			f := newFixture(t, Options{AuditTail: tail})
			f.startSync(t, tt.w, tt.h)
			f.press(t, "3")
			_, cmd := f.m.Update(tickMsg{})
			f.run(t, cmd)
			if asked != tt.wantAsked {
				t.Errorf("asked for %d lines, want %d", asked, tt.wantAsked)
			}
			view := f.m.View()
			for _, w := range tt.want {
				if !strings.Contains(view, w) {
					t.Errorf("view lacks %q:\n%s", w, view)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(view, w) {
					t.Errorf("view has %q:\n%s", w, view)
				}
			}
			if got := strings.Count(view, "\n") + 1; got != tt.h {
				t.Errorf("view is %d lines, want %d", got, tt.h)
			}
		})
	}
}

// The audit tail is not read while another view is shown.
func TestAuditTailOnlyReadInKeysView(t *testing.T) {
	asked := 0
	f := newFixture(t, Options{AuditTail: func(int) ([]string, error) { asked++; return nil, nil }})
	f.startSync(t, 120, 40)
	_, cmd := f.m.Update(tickMsg{})
	f.run(t, cmd)
	if asked != 0 {
		t.Fatalf("audit read %d times in the Rooms view", asked)
	}
}
