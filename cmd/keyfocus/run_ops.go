package main

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"golang.org/x/sync/errgroup"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/focus/audit"
	"github.com/keyfocus/keyfocus/focus/ops"
	"github.com/keyfocus/keyfocus/focus/sdnotify"
	"github.com/keyfocus/keyfocus/keys"
	"github.com/keyfocus/keyfocus/tui"
	"github.com/keyfocus/keyfocus/tui/sshconsole"
)

// defaultHTTPAddr is --http's default (DESIGN.md).
const defaultHTTPAddr = "127.0.0.1:8788"

// opsFlags are the operations side of `keyfocus run`: health and metrics
// over HTTP, the audit log, the ssh console, and systemd status lines.
type opsFlags struct {
	http              string
	audit             string
	sshAddr           string
	sshHostKey        string
	sshAuthorizedKeys string
	sshViewerKeys     string

	auditLog *audit.Log
	httpStop func()        // ends the HTTP server (close)
	httpDone chan struct{} // closed when it has ended
	// restatus asks for the status line again: READY=1 after a reload
	// carries its own STATUS, which the status line then replaces.
	restatus chan struct{}
}

// define adds the flags; str is runCommand's flag helper (env defaults).
func (o *opsFlags) define(str func(p *string, name, def, usage string)) {
	str(&o.http, "http", defaultHTTPAddr, "health and metrics: /about/health, /livez, /readyz, /metrics (\"off\" or empty: off)")
	str(&o.audit, "audit", "", "audit log file: JSON lines, append-only, 0600 (empty: none)")
	str(&o.sshAddr, "ssh-addr", "", "serve the console over ssh on host:port (empty: off)")
	str(&o.sshHostKey, "ssh-host-key", "", "the ssh console's host key (an ed25519 key is generated 0600 if missing)")
	str(&o.sshAuthorizedKeys, "ssh-authorized-keys", "", "authorized_keys file of ssh keys with full console access")
	str(&o.sshViewerKeys, "ssh-viewer-keys", "", "authorized_keys file of ssh keys with read-only console access")
}

// start opens everything that can fail at startup (audit file, listeners,
// ssh host key) and adds one goroutine per piece to g. It returns before the
// focus connects, so a bad flag is reported at once.
func (o *opsFlags) start(ctx context.Context, g *errgroup.Group, c *runCommand, log *slog.Logger, f *focus.Focus, store *keys.Store, notify *sdnotify.Notifier) (err error) {
	defer func() {
		if err != nil && o.httpStop != nil {
			o.httpStop() // run returns at once: no health to serve
			<-o.httpDone
			o.httpStop = nil
		}
	}()
	tracker := ops.NewTracker(ops.Options{Snapshot: store.Snapshot, Version: versionString(), Logger: log})
	g.Go(func() error {
		err := tracker.Run(ctx, f)
		tracker.Stopping() // /readyz: 503 while the focus drains
		return err
	})

	if o.http == "off" {
		o.http = ""
	}
	if o.http != "" {
		ln, err := ops.Listen(o.http)
		switch {
		case err != nil && o.http == defaultHTTPAddr && errors.Is(err, syscall.EADDRINUSE):
			// The default address is taken (another keyfocus on this host):
			// run without it rather than not at all; an explicit --http fails.
			log.Warn("health and metrics are off: the default address is in use; set --http to a free host:port", "addr", o.http)
		case err != nil:
			return err
		default:
			// Outside the errgroup: health and metrics keep answering while
			// the focus drains, until close.
			log.Info("health and metrics", "addr", ln.Addr().String())
			hctx, stop := context.WithCancel(context.Background())
			o.httpStop, o.httpDone = stop, make(chan struct{})
			go func() {
				defer close(o.httpDone)
				if err := ops.Serve(hctx, ln, tracker.Handler()); err != nil {
					log.Error("health and metrics stopped", "err", err)
				}
			}()
		}
	}

	if o.audit != "" {
		l, err := audit.Open(o.audit)
		if err != nil {
			return err
		}
		o.auditLog = l
		a := &audit.Auditor{Log: l, KeysPath: store.Path(), Snapshot: store.Snapshot, Logger: log}
		g.Go(func() error { return a.Run(ctx, f) })
	}

	if o.sshAddr != "" {
		if err := o.startSSH(ctx, g, c, log, f); err != nil {
			return err
		}
	}

	// systemd status line: what `systemctl status keyfocus` shows, kept
	// current (at most once a second) from the same events as the metrics.
	if notify.Enabled() {
		o.restatus = make(chan struct{}, 1)
		g.Go(func() error {
			var last string
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			dirty := true
			ready := f.Ready()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-tracker.Changed():
					dirty = true
				case <-ready: // READY=1 went out with its own STATUS
					ready = nil
					dirty, last = true, ""
				case <-o.restatus:
					dirty, last = true, ""
				case <-tick.C:
					if s := tracker.Status(); dirty && s != last {
						_ = notify.Status(s)
						last = s
					}
					dirty = false
				}
			}
		})
	}
	return nil
}

func (o *opsFlags) startSSH(ctx context.Context, g *errgroup.Group, c *runCommand, log *slog.Logger, f *focus.Focus) error {
	if o.sshHostKey == "" {
		return usageError("--ssh-addr needs --ssh-host-key FILE (generated if missing)")
	}
	if o.sshAuthorizedKeys == "" && o.sshViewerKeys == "" {
		return usageError("--ssh-addr needs --ssh-authorized-keys and/or --ssh-viewer-keys: without them nobody could log in")
	}
	srv, err := sshconsole.New(sshconsole.Config{
		Addr: o.sshAddr, HostKeyPath: o.sshHostKey,
		AuthorizedKeys: o.sshAuthorizedKeys, ViewerKeys: o.sshViewerKeys,
		Source: f, Audit: o.auditLog, Logger: log, ReadOnly: c.readonly,
		NewModel: func(s sshconsole.Session) tea.Model { return o.sshConsole(s, c, log) },
	})
	if err != nil {
		return err
	}
	ln, err := srv.Listen()
	if err != nil {
		return err
	}
	if fp, err := sshconsole.HostKeyFingerprint(o.sshHostKey); err == nil {
		log.Info("ssh console", "addr", ln.Addr().String(), "host_key", fp)
	}
	g.Go(func() error { return srv.Serve(ctx, ln) })
	return nil
}

// sshConsole is the console of one ssh session: its own key store on the key
// file (edits reach the focus through the watch, like any edit), recorded in
// the audit log with the session's key; read-only for viewer keys.
func (o *opsFlags) sshConsole(s sshconsole.Session, c *runCommand, log *slog.Logger) tea.Model {
	ks, err := newConsoleStore(c.keysPath, log)
	if err != nil {
		log.Error("ssh console: key file not available to the console (yet)", "err", err)
	}
	var ed audit.KeyEditor = ks
	if o.auditLog != nil {
		ed = audit.AuditedStore(ed, o.auditLog, s.Actor, audit.ViaSSH)
	}
	if s.ReadOnly {
		ed = audit.ReadOnlyStore(ed)
	}
	var store tui.KeyStore = ed
	return tui.New(tui.Options{
		Source: s.Source, Store: store, ReadOnly: s.ReadOnly, Renderer: s.Renderer,
		Component: c.component, Mode: tui.ModeAttach, KeySeparator: c.roomKeySeparator,
		Logger: log.With("ssh_key", s.Fingerprint), Context: s.Context, AuditTail: auditTail(o.audit),
	})
}

// reload is the ops side of SIGHUP: reopen the audit log (after logrotate)
// and send the status line again after the reload's READY=1.
func (o *opsFlags) reload(log *slog.Logger) {
	if o.restatus != nil {
		select {
		case o.restatus <- struct{}{}:
		default:
		}
	}
	if o.auditLog == nil {
		return
	}
	if err := o.auditLog.Reopen(); err != nil {
		log.Error("reload: audit log not reopened; still writing to the old file", "err", err)
	}
}

// close ends the HTTP server and closes the audit log, once everything that
// writes to it has stopped.
func (o *opsFlags) close() {
	if o.httpStop != nil {
		o.httpStop()
		<-o.httpDone
		o.httpStop = nil
	}
	if o.auditLog != nil {
		o.auditLog.Close()
		o.auditLog = nil
	}
}

// auditedConsoleStore wraps the local console's key store so its edits are
// recorded with the local user (nil audit log: unchanged).
func (o *opsFlags) auditedConsoleStore(s tui.KeyStore) tui.KeyStore {
	if o.auditLog == nil || s == nil {
		return s
	}
	return audit.AuditedStore(s, o.auditLog, audit.LocalActor(), audit.ViaConsole)
}

// auditedSource wraps the local console's Source so its operator actions are
// recorded with the local user.
func (o *opsFlags) auditedSource(src focus.Source) focus.Source {
	if o.auditLog == nil {
		return src
	}
	return audit.OperatorSource(src, o.auditLog, audit.LocalActor(), audit.ViaConsole)
}

// versionString is the version for keyfocus_build_info: the -ldflags one,
// the module's, or "devel".
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// consoleAudit is for a console in its own process (keyfocus attach): with
// an audit log path (--audit / KEYFOCUS_AUDIT) it opens the log and wraps the
// console's key store and Source, so that its key edits and operator actions
// are on record with the local user. close closes the log. Without a path it
// returns store and src unchanged.
func consoleAudit(path string, store tui.KeyStore, src focus.Source) (tui.KeyStore, focus.Source, func(), error) {
	if path == "" {
		return store, src, func() {}, nil
	}
	l, err := audit.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	actor := audit.LocalActor()
	if store != nil {
		store = audit.AuditedStore(store, l, actor, audit.ViaConsole)
	}
	return store, audit.OperatorSource(src, l, actor, audit.ViaConsole), func() { l.Close() }, nil
}

// auditTail is a console's Options.AuditTail for the audit log at path: the
// last n records as short lines (nil without a path: no audit pane).
func auditTail(path string) func(n int) ([]string, error) {
	if path == "" {
		return nil
	}
	return func(n int) ([]string, error) {
		recs, err := audit.Tail(path, n)
		lines := make([]string, len(recs))
		for i, r := range recs {
			lines[i] = audit.Line(r, nil)
		}
		return lines, err
	}
}

// readyYet reports whether the focus has been ready (connected) once, i.e.
// systemd has had its first READY=1.
func readyYet(f *focus.Focus) bool {
	select {
	case <-f.Ready():
		return true
	default:
		return false
	}
}
