package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"

	"github.com/keyfocus/keyfocus/focus/control"
	"github.com/keyfocus/keyfocus/tui"
)

// attachCommand is `keyfocus attach`: the console for a focus that runs
// headless on this host, through its control socket.
type attachCommand struct {
	env env

	socket           string
	keysPath         string
	readonly         bool
	roomKeySeparator string
	logFile          string
	audit            string // record this console's edits and actions (run_ops.go consoleAudit)
}

func newAttachCommand(e env) command { return &attachCommand{env: e} }

func (c *attachCommand) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("keyfocus attach", flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	str := func(p *string, name, def, usage string) {
		if v := c.env.Getenv(envName(name)); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+envName(name)+")")
	}
	str(&c.socket, "socket", "", "the focus's control socket (keyfocus run --socket PATH)")
	str(&c.keysPath, "keys", "", "the key file to show and edit (default: the one the focus uses)")
	str(&c.roomKeySeparator, "room-key-separator", "=", "the focus's KEY<sep>NAME separator (keys in room names are masked)")
	str(&c.logFile, "log-file", defaultLogFile(c.env.Getenv, "attach"), "where this console logs (the terminal is the console's)")
	str(&c.audit, "audit", "", "the focus's audit log: this console's key edits and operator actions go on record with your user name")
	def := false
	switch strings.ToLower(c.env.Getenv(envName("readonly"))) {
	case "1", "true", "yes", "on":
		def = true
	}
	fs.BoolVar(&c.readonly, "readonly", def, "hide and refuse every editing action (env "+envName("readonly")+")")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: keyfocus attach --socket PATH [--readonly] [--keys FILE]")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Opens the console on a focus running on this host (keyfocus run --headless")
		fmt.Fprintln(fs.Output(), "--socket PATH). Quitting the console leaves the focus running. Removing a")
		fmt.Fprintln(fs.Output(), "member or ending a room goes through the socket; key edits go to the key file.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Exit codes: 0 quit, 1 runtime error (e.g. no focus on the socket), 2 usage error.")
	}
	return fs
}

func (c *attachCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.socket == "" {
		return usageError("--socket PATH is required: the path the focus was started with (keyfocus run --socket PATH)")
	}
	if err := needTerminal(c.env, "attach is interactive"); err != nil {
		return err
	}
	// SIGTERM, or a hangup (the terminal went away), ends the console cleanly.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	log, closeLog, err := openLogFile(c.logFile, slog.LevelInfo)
	if err != nil {
		return err
	}
	defer closeLog()

	client, err := control.Dial(ctx, c.socket, control.WithLogger(log))
	if err != nil {
		return err
	}
	defer client.Close()

	path := c.keysPath
	if path == "" {
		st, sub := client.Watch(1)
		sub.Close()
		path = st.Store.Path
	}
	var store tui.KeyStore
	if path != "" {
		s, err := newConsoleStore(path, log)
		if err != nil {
			log.Warn("attach: key file not available to the console (yet)", "err", err)
		}
		store = s
	}
	store, src, closeAudit, err := consoleAudit(c.audit, store, client)
	if err != nil {
		return err
	}
	defer closeAudit()
	log.Info("attach: console started", "socket", c.socket, "keys", path, "readonly", c.readonly)
	m := tui.New(tui.Options{
		Source: src, Store: store, ReadOnly: c.readonly,
		Mode: tui.ModeAttach, KeySeparator: c.roomKeySeparator, Logger: log, Mouse: true, AuditTail: auditTail(c.audit),
	})
	defer m.Close()
	return runProgram(ctx, m, c.env)
}
