package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/keyfocus/keyfocus/keys"
)

// KeyEditor is what a tool edits keys through: *keys.Store, and the console's
// KeyStore interface (same methods).
type KeyEditor interface {
	Path() string
	Snapshot() *keys.Snapshot
	Reload() keys.Update
	Add(spec keys.Spec) (key string, e *keys.Entry, err error)
	Edit(id string, spec keys.Spec) (*keys.Entry, error)
	Revoke(id string) (*keys.Entry, error)
}

// AuditedStore wraps a key store so that every key it adds, edits or revokes
// is recorded with actor and via (ViaCLI, ViaConsole, ViaSSH) right after the
// save. The focus, seeing the same change through its watch, finds this
// record and does not record the change again. The key itself never reaches
// the log: only its fingerprint and client name.
//
// A failed audit write does not undo the edit (the key file is the source of
// truth); it is logged, and the focus then records the change as Outside.
func AuditedStore(s KeyEditor, l *Log, actor, via string) KeyEditor {
	return &auditedStore{KeyEditor: s, log: l, actor: actor, via: via}
}

type auditedStore struct {
	KeyEditor
	log   *Log
	actor string
	via   string
}

func (a *auditedStore) write(r Record) {
	if err := a.log.Write(r); err != nil {
		slog.Error("audit log write failed; the focus will record this change as made outside keyfocus", "event", r.Event, "fingerprint", r.Fingerprint, "err", err)
	}
}

func (a *auditedStore) Add(spec keys.Spec) (string, *keys.Entry, error) {
	k, e, err := a.KeyEditor.Add(spec)
	if err == nil && e != nil {
		a.write(KeyRecord(KeyAdded, a.actor, a.via, a.Path(), e))
	}
	return k, e, err
}

func (a *auditedStore) Edit(id string, spec keys.Spec) (*keys.Entry, error) {
	old := a.Snapshot().ByID(id)
	e, err := a.KeyEditor.Edit(id, spec)
	if err == nil && e != nil {
		var changed []string
		if old != nil {
			changed = EntryChanges(old, e)
		}
		a.write(KeyRecord(KeyEdited, a.actor, a.via, a.Path(), e, changed...))
	}
	return e, err
}

func (a *auditedStore) Revoke(id string) (*keys.Entry, error) {
	e, err := a.KeyEditor.Revoke(id)
	if err == nil && e != nil {
		a.write(KeyRecord(KeyRevoked, a.actor, a.via, a.Path(), e))
	}
	return e, err
}

// ErrReadOnly is what a read-only store answers to an edit.
var ErrReadOnly = errors.New("read-only: this console may look at keys but not change them")

// ReadOnlyStore wraps a key store so that every edit is refused with
// ErrReadOnly: what viewer consoles get, whatever their UI shows.
func ReadOnlyStore(s KeyEditor) KeyEditor { return readOnlyStore{s} }

type readOnlyStore struct{ KeyEditor }

func (readOnlyStore) Add(keys.Spec) (string, *keys.Entry, error)  { return "", nil, ErrReadOnly }
func (readOnlyStore) Edit(string, keys.Spec) (*keys.Entry, error) { return nil, ErrReadOnly }
func (readOnlyStore) Revoke(string) (*keys.Entry, error)          { return nil, ErrReadOnly }

// Line renders a record as one short line for the console's audit tail:
// time, what, who, and the details that apply. Never longer than the record.
func Line(r Record, loc *time.Location) string {
	if loc == nil {
		loc = time.Local
	}
	var b strings.Builder
	b.WriteString(r.Time.In(loc).Format("01-02 15:04:05"))
	b.WriteString("  ")
	what := map[string]string{
		KeyAdded: "key added", KeyEdited: "key edited", KeyRevoked: "key revoked",
		Admitted: "admitted", Refused: "refused", MemberRemoved: "member removed", MembershipRevoked: "membership revoked",
		RoomEnded: "room ended", OperatorAction: "operator", SSHSessionStart: "ssh login",
		SSHSessionEnd: "ssh logout", StoreLoaded: "keys loaded", EventsDropped: "events lost",
		RefusalsSuppressed: "refusals not itemised",
	}[r.Event]
	if what == "" {
		what = r.Event
	}
	b.WriteString(what)
	add := func(s string) {
		if s != "" {
			b.WriteString(" ")
			b.WriteString(s)
		}
	}
	if r.Client != "" {
		add(fmt.Sprintf("%q", r.Client))
	}
	if r.Fingerprint != "" && !strings.HasPrefix(r.Fingerprint, "SHA256:") {
		add("[" + r.Fingerprint + "]")
	}
	if len(r.Changed) > 0 {
		add("(" + strings.Join(r.Changed, ", ") + ")")
	}
	add(r.Action)
	add(r.Nick)
	add(r.Room)
	if r.Reason != "" {
		add("— " + r.Reason)
	}
	switch {
	case r.Event == StoreLoaded && r.Count == 1:
		add("(1 key)")
	case r.Event == StoreLoaded:
		add(fmt.Sprintf("(%d keys)", r.Count))
	case r.Count > 0:
		add(fmt.Sprintf("x%d", r.Count))
	}
	if r.Error != "" {
		add("FAILED: " + r.Error)
	}
	if r.Actor != "" {
		add("by " + r.Actor)
	}
	return b.String()
}
