package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/term"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/keys"
	"github.com/keyfocus/keyfocus/tui"
)

// defaultLogFile is where a console process logs while the console owns the
// terminal: $XDG_STATE_HOME/keyfocus/NAME.log, or ~/.local/state/keyfocus/NAME.log.
func defaultLogFile(getenv func(string) string, name string) string {
	dir := getenv("XDG_STATE_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		if home == "" {
			return filepath.Join(os.TempDir(), "keyfocus-"+name+".log")
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "keyfocus", name+".log")
}

// openLogFile opens (appends to) the log file of a console process, 0600 in
// a 0700 folder, and returns a JSON logger on it. The logger also becomes
// slog's default (and so the standard log package's output): while the
// console owns the terminal, nothing may write to stdout or stderr.
func openLogFile(path string, level slog.Level) (*slog.Logger, func() error, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("log file: %w (choose another with --log-file)", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("log file: %w (choose another with --log-file)", err)
	}
	log := slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	return log, f.Close, nil
}

// needTerminal refuses to start a console without a terminal on both ends.
func needTerminal(e env, hint string) error {
	for _, s := range []any{e.Stdin, e.Stdout} {
		f, ok := s.(*os.File)
		if !ok || !term.IsTerminal(f.Fd()) {
			return usageError("the console needs a terminal on stdin and stdout; %s", hint)
		}
	}
	return nil
}

// runProgram runs a console until the operator quits or ctx ends. The
// terminal is restored either way. Signals are the caller's (ctx ends on
// them): bubbletea's own handler can deadlock its shutdown when a signal
// and the end of ctx race.
func runProgram(ctx context.Context, m tea.Model, e env) error {
	p := tea.NewProgram(m,
		tea.WithContext(ctx),
		tea.WithoutSignalHandler(),
		tea.WithInput(e.Stdin),
		tea.WithOutput(e.Stdout),
		tea.WithAltScreen(),
		tea.WithMouseCellMotion(),
	)
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil // shut down from outside (signal, the focus ended)
	}
	return err
}

// openConsoleStore opens the console's own key store on path: not the Store
// the focus watches, so that the console's edits reach the focus as file
// changes, like any other edit. A missing file is not created here (the
// focus creates it); consoleStore tries again later.
func openConsoleStore(path string, log *slog.Logger) (*keys.Store, error) {
	if path == "" {
		return nil, errors.New("no key file known: pass --keys FILE")
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("key file %s: %w (pass --keys FILE)", path, err)
	}
	return keys.OpenWith(path, keys.Options{Logger: log})
}

// consoleStore is a console's key store, opened on first use and, until it
// opens, again on every use: a key file that is missing or does not parse
// when the console starts is picked up once it is fixed (on the focus's next
// reload, or the Keys view's reload key), without restarting the console.
// It has the methods of tui.KeyStore and audit.KeyEditor.
type consoleStore struct {
	path string
	log  *slog.Logger

	mu sync.Mutex // held while opening
	s  *keys.Store
}

// newConsoleStore makes the console's store on path and tries to open it
// now; the error says why the Keys view starts empty.
func newConsoleStore(path string, log *slog.Logger) (*consoleStore, error) {
	c := &consoleStore{path: filepath.Clean(path), log: log}
	_, err := c.open()
	return c, err
}

func (c *consoleStore) open() (*keys.Store, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s == nil {
		s, err := openConsoleStore(c.path, c.log)
		if err != nil {
			return nil, err
		}
		c.s = s
	}
	return c.s, nil
}

func (c *consoleStore) opened() *keys.Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}

func (c *consoleStore) Path() string { return c.path }

func (c *consoleStore) Snapshot() *keys.Snapshot {
	if s := c.opened(); s != nil {
		return s.Snapshot()
	}
	return nil
}

func (c *consoleStore) Reload() keys.Update {
	if s := c.opened(); s != nil {
		return s.Reload()
	}
	s, err := c.open()
	if err != nil {
		return keys.Update{Err: err}
	}
	return keys.Update{Snapshot: s.Snapshot()}
}

func (c *consoleStore) Add(spec keys.Spec) (string, *keys.Entry, error) {
	s, err := c.open()
	if err != nil {
		return "", nil, err
	}
	return s.Add(spec)
}

func (c *consoleStore) Edit(id string, spec keys.Spec) (*keys.Entry, error) {
	s, err := c.open()
	if err != nil {
		return nil, err
	}
	return s.Edit(id, spec)
}

func (c *consoleStore) Revoke(id string) (*keys.Entry, error) {
	s, err := c.open()
	if err != nil {
		return nil, err
	}
	return s.Revoke(id)
}

// console runs the console of `keyfocus run` on f until the operator quits
// (then stop ends the focus) or ctx ends.
func (c *runCommand) console(ctx context.Context, log *slog.Logger, f *focus.Focus, stop func()) error {
	defer stop()
	s, err := newConsoleStore(c.keysPath, log)
	if err != nil {
		log.Error("console: key file not available to the console (yet)", "err", err)
	}
	store := c.ops.auditedConsoleStore(s) // edits on record with the local user (--audit)
	m := tui.New(tui.Options{
		Source: c.ops.auditedSource(f), Store: store, ReadOnly: c.readonly, Component: c.component,
		Mode: tui.ModeRun, KeySeparator: c.roomKeySeparator, Logger: log, Mouse: true, AuditTail: auditTail(c.ops.audit),
	})
	defer m.Close()
	if err := runProgram(ctx, m, c.env); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	if ctx.Err() == nil {
		log.Info("console: operator quit; stopping the focus")
		fmt.Fprintf(c.env.Stderr, "keyfocus: stopping the focus (people in rooms stay; logs in %s)\n", c.logFile)
	}
	return nil
}
