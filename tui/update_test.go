package tui

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/keys"
	"github.com/muesli/termenv"
)

func TestUpdateKeys(t *testing.T) {
	const standup = "standup@conference.meet.example"
	tests := []struct {
		name     string
		opts     Options
		keys     []string
		wantQuit bool
		check    func(t *testing.T, f *fixture)
	}{
		{name: "tab cycles views", keys: []string{"tab", "tab"}, check: func(t *testing.T, f *fixture) { wantTab(t, f, 2) }},
		{name: "tab wraps", keys: []string{"tab", "tab", "tab"}, check: func(t *testing.T, f *fixture) { wantTab(t, f, 0) }},
		{name: "shift+tab goes back", keys: []string{"shift+tab"}, check: func(t *testing.T, f *fixture) { wantTab(t, f, 2) }},
		{name: "number keys", keys: []string{"3", "2"}, check: func(t *testing.T, f *fixture) { wantTab(t, f, 1) }},
		{name: "1 back to rooms", keys: []string{"3", "1"}, check: func(t *testing.T, f *fixture) { wantTab(t, f, 0) }},
		{name: "j moves down", keys: []string{"j"}, check: func(t *testing.T, f *fixture) { wantRoom(t, f, "admin123=board@conference.meet.example") }},
		{name: "down arrow moves down", keys: []string{"down", "down"}, check: func(t *testing.T, f *fixture) { wantRoom(t, f, standup) }},
		{name: "k moves up", keys: []string{"G", "k"}, check: func(t *testing.T, f *fixture) { wantRoom(t, f, "admin123=board@conference.meet.example") }},
		{name: "G and g", keys: []string{"G", "g"}, check: func(t *testing.T, f *fixture) { wantRoom(t, f, "acme-weekly@conference.meet.example") }},
		{name: "cursor stops at the end", keys: []string{"j", "j", "j", "j", "j"}, check: func(t *testing.T, f *fixture) { wantRoom(t, f, standup) }},
		{name: "sort by members", keys: []string{"s"}, check: func(t *testing.T, f *fixture) {
			if f.m.rooms.sortBy != sortMembers || f.m.rooms.rows[0].Name != standup {
				t.Errorf("sort %d, first %s", f.m.rooms.sortBy, f.m.rooms.rows[0].Name)
			}
		}},
		{name: "sort by age reversed", keys: []string{"s", "s", "S"}, check: func(t *testing.T, f *fixture) {
			if f.m.rooms.rows[0].Name != "admin123=board@conference.meet.example" {
				t.Errorf("newest first expected, got %s", f.m.rooms.rows[0].Name)
			}
		}},
		{name: "enter opens members, esc returns", keys: []string{"G", "enter", "j", "esc"}, check: func(t *testing.T, f *fixture) {
			if f.m.rooms.inMember || f.m.rooms.members.Cursor() != 1 {
				t.Errorf("inMember=%v member cursor=%d", f.m.rooms.inMember, f.m.rooms.members.Cursor())
			}
		}},
		{name: "remove member asks first", keys: []string{"G", "enter", "j", "x"}, check: func(t *testing.T, f *fixture) {
			if f.m.dialog == nil || !strings.Contains(f.m.dialog.title, "Remove bob") {
				t.Fatalf("dialog = %+v", f.m.dialog)
			}
			if len(f.src.Actions()) != 0 {
				t.Errorf("acted before confirmation: %v", f.src.Actions())
			}
		}},
		{name: "remove member confirmed", keys: []string{"G", "enter", "j", "x", "y"}, check: func(t *testing.T, f *fixture) {
			if got := f.src.Actions(); !slices.Equal(got, []string{"remove " + standup + " bob"}) {
				t.Errorf("actions = %v", got)
			}
			if n := len(f.m.d.st.Rooms[standup].Members); n != 2 {
				t.Errorf("members now %d, want 2 (the removal event applied)", n)
			}
			if !strings.Contains(f.m.flash, "removed bob") {
				t.Errorf("flash = %q", f.m.flash)
			}
		}},
		{name: "remove member declined", keys: []string{"G", "enter", "x", "n"}, check: func(t *testing.T, f *fixture) {
			if f.m.dialog != nil || len(f.src.Actions()) != 0 {
				t.Errorf("dialog %v actions %v", f.m.dialog, f.src.Actions())
			}
		}},
		{name: "x in the rooms pane says to pick a member", keys: []string{"x"}, check: func(t *testing.T, f *fixture) {
			if f.m.dialog != nil || !f.m.flashErr || !strings.Contains(f.m.flash, "select a member") {
				t.Errorf("dialog %v flash %q", f.m.dialog, f.m.flash)
			}
		}},
		{name: "end room names the members", keys: []string{"G", "X"}, check: func(t *testing.T, f *fixture) {
			if f.m.dialog == nil || !strings.Contains(f.m.dialog.body, "alice, bob, carol") {
				t.Fatalf("dialog = %+v", f.m.dialog)
			}
		}},
		{name: "end room from the members pane leaves the pane", keys: []string{"G", "enter", "X", "y"}, check: func(t *testing.T, f *fixture) {
			if f.m.rooms.inMember || f.m.rooms.selected == standup {
				t.Errorf("inMember=%v selected=%s", f.m.rooms.inMember, f.m.rooms.selected)
			}
		}},
		{name: "end room confirmed", keys: []string{"G", "X", "y"}, check: func(t *testing.T, f *fixture) {
			if got := f.src.Actions(); !slices.Equal(got, []string{"end " + standup}) {
				t.Errorf("actions = %v", got)
			}
			if _, ok := f.m.d.st.Rooms[standup]; ok {
				t.Error("room still shown")
			}
		}},
		{name: "read-only refuses end room", opts: Options{ReadOnly: true}, keys: []string{"G", "X", "y"}, check: func(t *testing.T, f *fixture) {
			if len(f.src.Actions()) != 0 || f.m.dialog != nil || !strings.Contains(f.m.flash, "read-only") {
				t.Errorf("actions %v dialog %v flash %q", f.src.Actions(), f.m.dialog, f.m.flash)
			}
		}},
		{name: "read-only refuses remove member", opts: Options{ReadOnly: true}, keys: []string{"G", "enter", "x", "y"}, check: func(t *testing.T, f *fixture) {
			if len(f.src.Actions()) != 0 {
				t.Errorf("actions %v", f.src.Actions())
			}
		}},
		{name: "read-only hides edit bindings", opts: Options{ReadOnly: true}, keys: []string{"3"}, check: func(t *testing.T, f *fixture) {
			help := f.m.View()
			if strings.Contains(help, "add key") || strings.Contains(help, "revoke") {
				t.Errorf("read-only console shows edit keys:\n%s", help)
			}
		}},
		{name: "read-only refuses add", opts: Options{ReadOnly: true}, keys: []string{"3", "a"}, check: func(t *testing.T, f *fixture) {
			if f.m.keysV.form != nil || !strings.Contains(f.m.flash, "read-only") {
				t.Errorf("form %v flash %q", f.m.keysV.form, f.m.flash)
			}
		}},
		{name: "q quits at once when attached", opts: Options{Mode: ModeAttach}, keys: []string{"q"}, wantQuit: true},
		{name: "ctrl+c quits when attached", opts: Options{Mode: ModeAttach}, keys: []string{"ctrl+c"}, wantQuit: true},
		{name: "q asks first in run mode", opts: Options{Mode: ModeRun}, keys: []string{"q"}, check: func(t *testing.T, f *fixture) {
			if !f.m.quitAsk || !strings.Contains(f.m.View(), "stops the focus") {
				t.Error("no quit question")
			}
		}},
		{name: "q then y quits in run mode", opts: Options{Mode: ModeRun}, keys: []string{"q", "y"}, wantQuit: true},
		{name: "q then n stays in run mode", opts: Options{Mode: ModeRun}, keys: []string{"q", "n"}, check: func(t *testing.T, f *fixture) {
			if f.m.quitAsk {
				t.Error("still asking")
			}
		}},
		{name: "ctrl+c twice quits in run mode", opts: Options{Mode: ModeRun}, keys: []string{"ctrl+c", "ctrl+c"}, wantQuit: true},
		{name: "? shows full help, ? closes", keys: []string{"?"}, check: func(t *testing.T, f *fixture) {
			if !f.m.showHelp || !strings.Contains(f.m.View(), "remove member") {
				t.Errorf("help not shown:\n%s", f.m.View())
			}
			f.press(t, "?")
			if f.m.showHelp {
				t.Error("? did not close help")
			}
		}},
		{name: "filter narrows rooms", keys: []string{"/", "type:acme", "enter"}, check: func(t *testing.T, f *fixture) {
			// acme-weekly by name; standup has a member on the Acme Corp key.
			if got := roomNames(f); !slices.Equal(got, []string{"acme-weekly@conference.meet.example", standup}) {
				t.Errorf("rooms = %v", got)
			}
			if f.m.filtering {
				t.Error("enter did not leave the filter input")
			}
		}},
		{name: "filter keys go to the input", opts: Options{Mode: ModeRun}, keys: []string{"/", "type:q1?"}, check: func(t *testing.T, f *fixture) {
			if f.m.quitAsk || f.m.tab != 0 || f.m.showHelp || f.m.filterIn.Value() != "q1?" {
				t.Errorf("quitAsk=%v tab=%d help=%v filter=%q", f.m.quitAsk, f.m.tab, f.m.showHelp, f.m.filterIn.Value())
			}
		}},
		{name: "esc clears the filter", keys: []string{"/", "type:zzz", "esc"}, check: func(t *testing.T, f *fixture) {
			if len(roomNames(f)) != 3 || f.m.filters[0] != "" {
				t.Errorf("rooms = %v filter %q", roomNames(f), f.m.filters[0])
			}
		}},
		{name: "filters are per view", keys: []string{"/", "type:standup", "enter", "2"}, check: func(t *testing.T, f *fixture) {
			if f.m.rejected.tbl.n != 3 {
				t.Errorf("rejected rows %d, want 3 (unfiltered)", f.m.rejected.tbl.n)
			}
		}},
		{name: "rejected filter by reason", keys: []string{"2", "/", "type:no_key", "enter"}, check: func(t *testing.T, f *fixture) {
			if f.m.rejected.tbl.n != 1 || f.m.rejected.row(0).Reason != focus.ReasonNoKey {
				t.Errorf("rows %d", f.m.rejected.tbl.n)
			}
		}},
		{name: "rejected navigation", keys: []string{"2", "j", "j"}, check: func(t *testing.T, f *fixture) {
			if f.m.rejected.tbl.Cursor() != 2 {
				t.Errorf("cursor %d", f.m.rejected.tbl.Cursor())
			}
		}},
		{name: "keys view lists the file", keys: []string{"3"}, check: func(t *testing.T, f *fixture) {
			v := f.m.View()
			for _, want := range []string{"Acme Corp", "TTND", "Globex", "EXPIRED", "acme-*,board"} {
				if !strings.Contains(v, want) {
					t.Errorf("keys view lacks %q", want)
				}
			}
		}},
		{name: "add form: q is text, not quit", opts: Options{Mode: ModeAttach}, keys: []string{"3", "a", "type:q1/?"}, check: func(t *testing.T, f *fixture) {
			if got := f.m.keysV.form.inputs[fieldName].Value(); got != "q1/?" {
				t.Errorf("name = %q", got)
			}
			if f.m.tab != 2 || f.m.filtering || f.m.showHelp {
				t.Errorf("tab=%d filtering=%v help=%v", f.m.tab, f.m.filtering, f.m.showHelp)
			}
		}},
		{name: "add form: tab moves fields", keys: []string{"3", "a", "tab", "tab", "shift+tab"}, check: func(t *testing.T, f *fixture) {
			if f.m.keysV.form.focus != fieldRooms || f.m.tab != 2 {
				t.Errorf("focus %d tab %d", f.m.keysV.form.focus, f.m.tab)
			}
		}},
		{name: "add form: empty name refused", keys: []string{"3", "a", "ctrl+s"}, check: func(t *testing.T, f *fixture) {
			if f.m.keysV.form == nil || f.m.keysV.form.errs[fieldName] == "" {
				t.Fatal("no error on the name")
			}
			if n := f.store.Snapshot().Len(); n != 3 {
				t.Errorf("keys %d", n)
			}
		}},
		{name: "add form: bad expiry and limit refused", keys: []string{"3", "a", "type:Initech", "tab", "tab", "type:someday", "tab", "type:-3", "ctrl+s"}, check: func(t *testing.T, f *fixture) {
			form := f.m.keysV.form
			if form == nil || form.errs[fieldExpires] == "" || form.errs[fieldMax] == "" {
				t.Fatalf("form errors: %+v", form)
			}
			if form.focus != fieldExpires {
				t.Errorf("focus %d, want the first bad field", form.focus)
			}
		}},
		{name: "add form: esc cancels", keys: []string{"3", "a", "type:x", "esc"}, check: func(t *testing.T, f *fixture) {
			if f.m.keysV.form != nil {
				t.Error("form still open")
			}
		}},
		{name: "add key saves and shows it once", keys: []string{"3", "a", "type:Initech", "enter", "type:initech-*", "enter", "type:2027-01-31", "enter", "type:5", "enter"}, check: func(t *testing.T, f *fixture) {
			v := f.m.keysV
			if v.form != nil || v.newKey == "" {
				t.Fatalf("form %v newKey %q flash %q", v.form, v.newKey, f.m.flash)
			}
			if !strings.HasPrefix(v.newKey, "kf_") || !strings.Contains(f.m.View(), v.newKey) {
				t.Errorf("the new key is not shown:\n%s", f.m.View())
			}
			data, _ := os.ReadFile(f.path)
			if strings.Contains(string(data), v.newKey) {
				t.Error("the key file holds the key in plaintext")
			}
			if !strings.Contains(string(data), "sha256:"+keys.HashKey(v.newKey)+"=Initech; rooms=initech-*; expires=2027-01-31; max-participants=5") {
				t.Errorf("key file:\n%s", data)
			}
			key := v.newKey
			f.press(t, "enter")
			if v.newKey != "" || strings.Contains(f.m.View(), key) {
				t.Error("the key is still on screen after closing")
			}
			if !strings.Contains(f.m.View(), "Initech") {
				t.Error("the new key is not listed")
			}
		}},
		{name: "copy the new key", keys: []string{"3", "a", "type:Initech", "ctrl+s", "c"}, check: func(t *testing.T, f *fixture) {
			if f.copied == "" || f.copied != f.m.keysV.newKey {
				t.Errorf("copied %q, shown %q", f.copied, f.m.keysV.newKey)
			}
		}},
		{name: "edit key", keys: []string{"3", "j", "e", "tab", "type:,x-*", "ctrl+s"}, check: func(t *testing.T, f *fixture) {
			data, _ := os.ReadFile(f.path)
			if !strings.Contains(string(data), "Globex; expires=2026-01-31; rooms=x-*") && !strings.Contains(string(data), "Globex; rooms=x-*") {
				t.Errorf("key file:\n%s", data)
			}
		}},
		{name: "revoke names the members", keys: []string{"3", "G", "d"}, check: func(t *testing.T, f *fixture) {
			if f.m.dialog == nil || !strings.Contains(f.m.dialog.body, "alice in standup") || !strings.Contains(f.m.dialog.body, "erin in •••=board") {
				t.Fatalf("dialog = %+v", f.m.dialog)
			}
		}},
		{name: "revoke confirmed", keys: []string{"3", "G", "d", "y"}, check: func(t *testing.T, f *fixture) {
			data, _ := os.ReadFile(f.path)
			if strings.Contains(string(data), "admin123") {
				t.Errorf("key still in file:\n%s", data)
			}
			if f.store.Snapshot().Len() != 2 || strings.Contains(f.m.View(), "TTND  ") {
				t.Errorf("keys %d", f.store.Snapshot().Len())
			}
		}},
		{name: "revoke declined", keys: []string{"3", "G", "d", "esc"}, check: func(t *testing.T, f *fixture) {
			if f.store.Snapshot().Len() != 3 {
				t.Error("revoked without confirmation")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var copied string
			tt.opts.Copy = func(s string) error { copied = s; return nil }
			f := newFixture(t, tt.opts)
			f.startSync(t, 80, 24)
			quit := f.press(t, tt.keys...)
			f.copied = copied
			if quit != tt.wantQuit {
				t.Fatalf("quit = %v, want %v", quit, tt.wantQuit)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

func wantTab(t *testing.T, f *fixture, tab int) {
	t.Helper()
	if f.m.tab != tab {
		t.Errorf("tab = %d, want %d", f.m.tab, tab)
	}
}

func wantRoom(t *testing.T, f *fixture, name string) {
	t.Helper()
	if f.m.rooms.selected != name {
		t.Errorf("selected room = %q, want %q", f.m.rooms.selected, name)
	}
}

func roomNames(f *fixture) []string {
	var names []string
	for _, r := range f.m.rooms.rows {
		names = append(names, r.Name)
	}
	return names
}

// A save conflict is shown and resolved by reloading, never by overwriting.
func TestSaveConflictReloads(t *testing.T) {
	f := newFixture(t, Options{})
	f.startSync(t, 80, 24)
	f.press(t, "3", "a", "type:Initech")
	// Someone else edits the file meanwhile.
	other := testKeyFile + "other=Hooli\n"
	if err := os.WriteFile(f.path, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	f.press(t, "ctrl+s")
	form := f.m.keysV.form
	if form == nil || !strings.Contains(form.err, "changed on disk") {
		t.Fatalf("form = %+v", form)
	}
	data, _ := os.ReadFile(f.path)
	if string(data) != other {
		t.Fatalf("the other edit was overwritten:\n%s", data)
	}
	if f.m.d.snap.Len() != 4 {
		t.Errorf("console did not reload: %d keys", f.m.d.snap.Len())
	}
	// Saving again now works and keeps the other edit.
	f.press(t, "ctrl+s")
	data, _ = os.ReadFile(f.path)
	if !strings.Contains(string(data), "other=Hooli") || !strings.Contains(string(data), "Initech") {
		t.Errorf("after retry:\n%s", data)
	}
}

// Live events reach the views; a dropped subscription makes the console
// take a fresh state.
func TestLiveEvents(t *testing.T) {
	f := newFixture(t, Options{})
	f.startSync(t, 80, 24)
	m := focus.Member{Nick: "zoe", JID: "zoe@meet.example/w", Role: "participant", Joined: t0, Fingerprint: ttndFP(), Client: "TTND"}
	f.src.Publish(focus.Event{Kind: focus.EvRoomOpened, Time: t0, Room: "new@conference.meet.example"})
	f.src.Publish(focus.Event{Kind: focus.EvMemberJoined, Time: t0, Room: "new@conference.meet.example", Member: &m})
	f.src.Publish(focus.Event{Kind: focus.EvRefused, Time: t0, Rejection: &focus.Rejection{Time: t0, Requester: "mallory@x/y", Room: "new@conference.meet.example", Reason: focus.ReasonRateLimited, Code: 429}})
	f.src.Publish(focus.Event{Kind: focus.EvConnection, Time: t0, Conn: &focus.ConnState{Attempt: 3, Since: t0, LastError: "connection refused"}})
	f.run(t, nil)
	v := f.m.View()
	for _, want := range []string{"rooms 4", "members 6", "rejected 4", "reconnecting (attempt 3)"} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}
	if f.m.d.st.ByKey[ttndFP()] != 4 {
		t.Errorf("TTND members = %d", f.m.d.st.ByKey[ttndFP()])
	}

	// Overflow the console's subscription: it re-watches and shows the truth.
	old := f.m.sub
	for i := 0; i < 3000; i++ {
		f.src.Publish(focus.Event{Kind: focus.EvRefused, Time: t0, Rejection: &focus.Rejection{Time: t0, Requester: "flood@x/y", Reason: focus.ReasonUnknownKey, Code: 403}})
	}
	f.run(t, nil)
	// The watch command ran synchronously: a new subscription with a fresh state.
	if f.m.sub == old || f.m.sub == nil {
		t.Fatal("console did not re-watch after losing events")
	}
	if got := f.m.d.st.RejectedLen(); got != 1000 {
		t.Errorf("rejected = %d, want the bounded 1000", got)
	}
	// The views show the fresh state, not rows of the old one.
	if len(f.m.rooms.rows) != 4 {
		t.Fatalf("rooms rows %d, want 4", len(f.m.rooms.rows))
	}
	for _, r := range f.m.rooms.rows {
		if f.m.d.st.Rooms[r.Name] != r {
			t.Errorf("row %s is from the old state", r.Name)
		}
	}
}

// A failing operator action is shown, not fatal.
func TestActionError(t *testing.T) {
	f := newFixture(t, Options{})
	f.startSync(t, 80, 24)
	f.src.fail = errors.New("not connected to Prosody")
	f.press(t, "X", "y")
	if !f.m.flashErr || !strings.Contains(f.m.flash, "not connected to Prosody") {
		t.Errorf("flash %q", f.m.flash)
	}
}

// Store events from the focus make the console re-read the key file.
func TestStoreReloadFollowsFocus(t *testing.T) {
	f := newFixture(t, Options{})
	f.startSync(t, 80, 24)
	if err := os.WriteFile(f.path, []byte(testKeyFile+"bad line without value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.src.Publish(focus.Event{Kind: focus.EvStoreFailed, Time: t0, Store: &focus.StoreState{Path: "/etc/keyfocus/keys.properties", Keys: 3, LastError: "keys.properties:5: no value"}})
	f.run(t, nil)
	if !strings.Contains(f.m.View(), "! keys.properties:5: no value") {
		t.Errorf("header lacks the error:\n%s", f.m.View())
	}
	_ = time.Second
	_ = tea.Quit
}

// NO_COLOR turns every colour off; the console still marks the selection
// and errors in text.
func TestNoColor(t *testing.T) {
	for _, noColor := range []bool{false, true} {
		t.Run("NO_COLOR="+strconv.FormatBool(noColor), func(t *testing.T) {
			t.Setenv("TERM", "xterm-256color")
			t.Setenv("NO_COLOR", "")
			if noColor {
				t.Setenv("NO_COLOR", "1")
			}
			r := lipgloss.NewRenderer(io.Discard, termenv.WithTTY(true))
			f := newFixture(t, Options{Renderer: r})
			f.startSync(t, 80, 24)
			v := f.m.View()
			colored := strings.Contains(v, "\x1b[38;") || strings.Contains(v, "\x1b[3")
			if colored == noColor {
				t.Errorf("colour codes present = %v with NO_COLOR=%v:\n%q", colored, noColor, v)
			}
			if !strings.Contains(v, "> acme-weekly") {
				t.Errorf("the selection has no text marker:\n%s", v)
			}
		})
	}
}

// The console lays out correctly after resizes, down to 80x24 and below.
func TestResize(t *testing.T) {
	f := newFixture(t, Options{})
	f.startSync(t, 120, 40)
	for _, size := range [][2]int{{80, 24}, {200, 60}, {60, 15}, {80, 24}} {
		f.m.Update(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		for _, tab := range []string{"1", "2", "3"} {
			f.press(t, tab)
			lines := strings.Split(f.m.View(), "\n")
			if len(lines) != size[1] {
				t.Errorf("%dx%d view %s: %d lines", size[0], size[1], tab, len(lines))
			}
			for i, l := range lines {
				if w := lipgloss.Width(l); w > size[0] {
					t.Errorf("%dx%d view %s line %d is %d wide: %q", size[0], size[1], tab, i, w, l)
				}
			}
		}
	}
}

// waitEvents hands over a burst as one batch, and a closed subscription as
// closed (the console then watches again).
func TestWaitEventsCoalesces(t *testing.T) {
	var bus focus.Bus
	sub := bus.Subscribe(1024)
	for i := 0; i < 500; i++ {
		bus.Publish(focus.Event{Kind: focus.EvRoomOpened, Room: strconv.Itoa(i)})
	}
	msg := waitEvents(sub, time.Time{})().(eventsMsg)
	if len(msg.events) != 500 || msg.closed || msg.dropped != 0 || msg.sub != sub {
		t.Fatalf("batch of %d, closed %v, dropped %d", len(msg.events), msg.closed, msg.dropped)
	}
	for i, ev := range msg.events {
		if ev.Room != strconv.Itoa(i) {
			t.Fatalf("event %d is %s: out of order", i, ev.Room)
		}
	}
	bus.Publish(focus.Event{Kind: focus.EvRoomOpened, Room: "last"})
	sub.Close()
	msg = waitEvents(sub, time.Time{})().(eventsMsg)
	if len(msg.events) != 1 || !msg.closed {
		t.Fatalf("after close: %d events, closed %v", len(msg.events), msg.closed)
	}
	msg = waitEvents(sub, time.Time{})().(eventsMsg)
	if len(msg.events) != 0 || !msg.closed {
		t.Fatalf("closed and drained: %d events, closed %v", len(msg.events), msg.closed)
	}
}

// Close (or the end of Options.Context) takes the console off the focus's
// bus, and the console does not watch again.
func TestCloseEndsTheSubscription(t *testing.T) {
	for _, viaContext := range []bool{false, true} {
		t.Run("context="+strconv.FormatBool(viaContext), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := newFixture(t, Options{Context: ctx})
			f.startSync(t, 80, 24)
			sub := f.m.sub
			if viaContext {
				cancel()
			} else {
				f.m.Close()
			}
			select {
			case _, ok := <-sub.C:
				if ok {
					t.Fatal("subscription still delivering")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("subscription not closed")
			}
			f.run(t, f.m.wait(sub, time.Time{}))
			if f.m.sub != sub {
				t.Error("the console watched again after Close")
			}
		})
	}
}

// Keys that arrive in one read ("3a", typed fast or over ssh) act one by
// one; a paste outside a text field does nothing; in a field it is text.
func TestRunesInOneRead(t *testing.T) {
	tests := []struct {
		name  string
		msgs  []tea.KeyMsg
		check func(t *testing.T, f *fixture)
	}{
		{"3a opens the add form", []tea.KeyMsg{{Type: tea.KeyRunes, Runes: []rune("3a")}}, func(t *testing.T, f *fixture) {
			if f.m.tab != 2 || f.m.keysV.form == nil {
				t.Errorf("tab %d form %v", f.m.tab, f.m.keysV.form)
			}
		}},
		{"typed name in one read", []tea.KeyMsg{{Type: tea.KeyRunes, Runes: []rune("3a")}, {Type: tea.KeyRunes, Runes: []rune("Hooli q")}}, func(t *testing.T, f *fixture) {
			if got := f.m.keysV.form.inputs[fieldName].Value(); got != "Hooli q" {
				t.Errorf("name %q", got)
			}
		}},
		{"GX in one read asks to end the last room", []tea.KeyMsg{{Type: tea.KeyRunes, Runes: []rune("GX")}}, func(t *testing.T, f *fixture) {
			if f.m.dialog == nil || !strings.Contains(f.m.dialog.title, "End room standup") {
				t.Errorf("dialog %+v", f.m.dialog)
			}
		}},
		{"paste outside a field does nothing", []tea.KeyMsg{{Type: tea.KeyRunes, Runes: []rune("GXy"), Paste: true}}, func(t *testing.T, f *fixture) {
			if len(f.src.Actions()) != 0 || f.m.dialog != nil || f.m.rooms.rooms.Cursor() != 0 {
				t.Errorf("actions %v dialog %v", f.src.Actions(), f.m.dialog)
			}
		}},
		{"paste into the filter", []tea.KeyMsg{{Type: tea.KeyRunes, Runes: []rune("/")}, {Type: tea.KeyRunes, Runes: []rune("stand"), Paste: true}}, func(t *testing.T, f *fixture) {
			if f.m.filters[0] != "stand" || len(f.m.rooms.rows) != 1 {
				t.Errorf("filter %q rows %d", f.m.filters[0], len(f.m.rooms.rows))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.startSync(t, 80, 24)
			for _, msg := range tt.msgs {
				_, cmd := f.m.Update(msg)
				f.run(t, cmd)
			}
			tt.check(t, f)
		})
	}
}

// Warnings of the key file (unknown attributes are kept, but reported) show
// in the header.
func TestHeaderShowsWarnings(t *testing.T) {
	f := newFixture(t, Options{})
	f.startSync(t, 120, 40)
	if err := os.WriteFile(f.path, []byte(testKeyFile+"hooli1=Hooli; colour=blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.run(t, reloadStore(f.store))
	if v := f.m.View(); !strings.Contains(v, "colour") {
		t.Errorf("header lacks the warning:\n%s", v)
	}
}

// A room that arrives only in the fresh state (its event was dropped) shows
// after the re-watch, even though no room event reached the console before.
func TestRewatchRebuildsRows(t *testing.T) {
	f := newFixture(t, Options{})
	f.startSync(t, 80, 24)
	for i := 0; i < 3000; i++ {
		f.src.Publish(focus.Event{Kind: focus.EvRefused, Time: t0, Rejection: &focus.Rejection{Time: t0, Requester: "flood@x/y", Reason: focus.ReasonUnknownKey, Code: 403}})
	}
	f.src.Publish(focus.Event{Kind: focus.EvRoomOpened, Time: t0, Room: "late@conference.meet.example"})
	f.run(t, nil)
	if got := roomNames(f); !slices.Contains(got, "late@conference.meet.example") {
		t.Errorf("rooms after the re-watch: %v", got)
	}
}

// subsSource records the subscriptions the console takes.
type subsSource struct {
	*testSource
	mu   sync.Mutex
	subs []*focus.Subscription
}

func (s *subsSource) Watch(buffer int) (focus.State, *focus.Subscription) {
	st, sub := s.testSource.Watch(buffer)
	s.mu.Lock()
	s.subs = append(s.subs, sub)
	s.mu.Unlock()
	return st, sub
}

// A watch that completes after Close (the program has ended and drops its
// message; an ssh session went away during a resync) leaves no
// subscription on the focus's bus.
func TestWatchAfterCloseLeavesNoSubscription(t *testing.T) {
	src := &subsSource{testSource: newTestSource(focus.State{})}
	m := New(Options{Source: src})
	cmd := m.watch(0)
	m.Close()
	if msg := cmd(); msg != nil {
		t.Errorf("watch after Close returned %T, want nothing", msg)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.subs) != 1 {
		t.Fatalf("%d subscriptions taken, want 1", len(src.subs))
	}
	select {
	case _, ok := <-src.subs[0].C:
		if ok {
			t.Error("the subscription delivers events")
		}
	default:
		t.Error("the subscription is still open")
	}
}

// lateStore is a key store that cannot read its file until ready (the
// console started while the key file did not parse).
type lateStore struct {
	KeyStore
	mu    sync.Mutex
	ready bool
}

func (s *lateStore) isReady() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

func (s *lateStore) Snapshot() *keys.Snapshot {
	if !s.isReady() {
		return nil
	}
	return s.KeyStore.Snapshot()
}

func (s *lateStore) Reload() keys.Update {
	if !s.isReady() {
		return keys.Update{Err: errors.New("keys.properties:2: expires: late-store error")}
	}
	return s.KeyStore.Reload()
}

// A console whose key store could not read the file at start says why, and
// shows the keys once the store can read it (here on the reload key).
func TestKeysViewStoreReadLater(t *testing.T) {
	f := newFixture(t, Options{})
	late := &lateStore{KeyStore: f.store}
	f.m = New(Options{Source: f.src, Store: late, Renderer: asciiRenderer(), Now: func() time.Time { return t0 },
		Location: time.UTC, Logger: discardLogger(), Copy: func(string) error { return nil }})
	f.startSync(t, 100, 30)
	f.run(t, f.m.Init())
	f.press(t, "3")
	if v := f.m.View(); !strings.Contains(v, "is not loaded") || !strings.Contains(v, "late-store error") {
		t.Fatalf("Keys view before the file reads:\n%s", v)
	}
	late.mu.Lock()
	late.ready = true
	late.mu.Unlock()
	f.press(t, "r")
	if v := f.m.View(); !strings.Contains(v, "Acme Corp") || strings.Contains(v, "not loaded") {
		t.Fatalf("Keys view after the reload:\n%s", v)
	}
}
