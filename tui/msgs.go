package tui

import (
	"log/slog"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/keys"
	"github.com/keyfocus/keyfocus/tui/live"
)

// KeyStore is what the console needs of the key store: *keys.Store. The
// console opens its own Store on the key file (never the one the focus
// watches), so its edits reach the focus as file changes, like any other.
type KeyStore interface {
	Path() string
	Snapshot() *keys.Snapshot
	Reload() keys.Update
	Add(spec keys.Spec) (key string, e *keys.Entry, err error)
	Edit(id string, spec keys.Spec) (*keys.Entry, error)
	Revoke(id string) (*keys.Entry, error)
}

var _ KeyStore = (*keys.Store)(nil)

// data is what the views read: the live focus state and the key snapshot.
type data struct {
	src   focus.Source
	log   *slog.Logger // written from commands only, never from Update or View
	st    *live.State
	snap  *keys.Snapshot
	store KeyStore
	// storeErr is the console's own last reload error of the key file.
	storeErr string
	// notice is the console store's last notice (e.g. a mass revocation).
	notice string
	// auditTail reads the audit log's last lines (Options.AuditTail); audit
	// is what it last returned (audit.go).
	auditTail func(n int) ([]string, error)
	audit     []string
	auditErr  string
}

// watchedMsg carries a fresh State and its subscription.
type watchedMsg struct {
	st  focus.State
	sub *focus.Subscription
}

// eventsMsg is a batch of events from one subscription (coalesced).
type eventsMsg struct {
	sub     *focus.Subscription
	events  []focus.Event
	closed  bool
	dropped uint64
	at      time.Time
}

// tickMsg refreshes ages once a second.
type tickMsg time.Time

// storeMsg is the key store after a reload (or at start).
type storeMsg struct {
	snap   *keys.Snapshot
	err    error
	notice string
}

// confirmMsg asks the operator to confirm an action; yes runs on "y".
type confirmMsg struct {
	title string
	body  string
	yes   tea.Cmd
}

// flashMsg shows a short message in the footer.
type flashMsg struct {
	text string
	err  bool
}

type flashExpiredMsg struct{ id int }

// actionDoneMsg is the outcome of an operator action on the focus.
type actionDoneMsg struct {
	what string
	err  error
}

// logAction logs an operator action's outcome (from its command) and
// returns the message for Update.
func logAction(log *slog.Logger, what string, err error) actionDoneMsg {
	if err != nil {
		log.Warn("operator action failed", "action", what, "err", err)
	} else {
		log.Info("operator action", "action", what)
	}
	return actionDoneMsg{what: what, err: err}
}

func flash(text string, isErr bool) tea.Cmd {
	return func() tea.Msg { return flashMsg{text: text, err: isErr} }
}
