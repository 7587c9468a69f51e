package tui

import (
	"reflect"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/keyfocus/keyfocus/focus"
)

// syncWait is the tests' event waiter: it takes what is already there and
// never blocks.
func syncWait(sub *focus.Subscription, _ time.Time) tea.Cmd {
	return func() tea.Msg {
		var batch []focus.Event
		for {
			select {
			case ev, ok := <-sub.C:
				if !ok {
					return eventsMsg{sub: sub, events: batch, closed: true}
				}
				batch = append(batch, ev)
			default:
				if len(batch) == 0 {
					return nil
				}
				return eventsMsg{sub: sub, events: batch, dropped: sub.Dropped()}
			}
		}
	}
}

// sync makes the model synchronous for Update tests.
func (f *fixture) sync() {
	f.m.timers = false
	f.m.wait = syncWait
}

// run executes cmd and everything it leads to, feeding messages to Update,
// then picks up events the actions published. It reports whether the
// console asked to quit.
func (f *fixture) run(t *testing.T, cmd tea.Cmd) (quit bool) {
	t.Helper()
	queue := []tea.Cmd{cmd}
	var pumpedClosed *focus.Subscription
	for steps := 0; ; steps++ {
		if steps > 10000 {
			t.Fatal("commands never settle")
		}
		if len(queue) == 0 {
			if f.m.sub == nil {
				return quit
			}
			msg := syncWait(f.m.sub, time.Time{})()
			if msg == nil || f.m.sub == pumpedClosed {
				return quit
			}
			if em, ok := msg.(eventsMsg); ok && em.closed {
				pumpedClosed = f.m.sub // tell the console once
			}
			queue = append(queue, func() tea.Msg { return msg })
		}
		c := queue[0]
		queue = queue[1:]
		if c == nil {
			continue
		}
		switch msg := c().(type) {
		case nil:
		case tea.BatchMsg:
			queue = append(queue, msg...)
		case tea.QuitMsg:
			quit = true
		default:
			if cmds, ok := sequence(msg); ok {
				queue = append(queue, cmds...)
				continue
			}
			_, next := f.m.Update(msg)
			queue = append(queue, next)
		}
	}
}

// sequence unpacks tea.Sequence's message (an unexported []tea.Cmd).
func sequence(msg tea.Msg) ([]tea.Cmd, bool) {
	v := reflect.ValueOf(msg)
	if v.Kind() != reflect.Slice || v.Type().Elem() != reflect.TypeOf(tea.Cmd(nil)) {
		return nil, false
	}
	cmds := make([]tea.Cmd, v.Len())
	for i := range cmds {
		cmds[i] = v.Index(i).Interface().(tea.Cmd)
	}
	return cmds, true
}

// keyMsg turns "enter", "ctrl+c", "x" ... into a tea.KeyMsg.
func keyMsg(k string) tea.KeyMsg {
	special := map[string]tea.KeyType{
		"enter": tea.KeyEnter, "tab": tea.KeyTab, "shift+tab": tea.KeyShiftTab, "esc": tea.KeyEsc,
		"up": tea.KeyUp, "down": tea.KeyDown, "left": tea.KeyLeft, "right": tea.KeyRight,
		"home": tea.KeyHome, "end": tea.KeyEnd, "pgup": tea.KeyPgUp, "pgdown": tea.KeyPgDown,
		"ctrl+c": tea.KeyCtrlC, "ctrl+s": tea.KeyCtrlS, "backspace": tea.KeyBackspace, "space": tea.KeySpace,
	}
	if kt, ok := special[k]; ok {
		return tea.KeyMsg{Type: kt}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
}

// press sends keys one by one ("type:text" types text rune by rune) and
// reports whether the console quit.
func (f *fixture) press(t *testing.T, keys ...string) (quit bool) {
	t.Helper()
	for _, k := range keys {
		if text, ok := strings.CutPrefix(k, "type:"); ok {
			for _, r := range text {
				_, cmd := f.m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
				quit = f.run(t, cmd) || quit
			}
			continue
		}
		_, cmd := f.m.Update(keyMsg(k))
		quit = f.run(t, cmd) || quit
	}
	return quit
}

// startSync is start + sync.
func (f *fixture) startSync(t *testing.T, w, h int) {
	t.Helper()
	f.sync()
	f.start(t, w, h)
	f.run(t, nil)
}
