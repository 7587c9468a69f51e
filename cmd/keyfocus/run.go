package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/focus/control"
	"github.com/keyfocus/keyfocus/focus/sdnotify"
	"github.com/keyfocus/keyfocus/keys"
)

// runCommand is `keyfocus run`: the focus, with the console in this terminal
// or (--headless) as a daemon with JSON logs on stderr.
type runCommand struct {
	env env

	headless         bool
	xmppAddr         string
	component        string
	muc              string
	secretFile       string
	keysPath         string
	roomKeySeparator string
	socket           string
	socketGroup      string
	statePath        string
	readonly         bool
	logLevel         string
	ops              opsFlags // --http, --audit, --ssh-* (run_ops.go)
	logFile          string   // console mode: where logs go (run_console.go)

	// forceExit ends the process at once on a second signal; tests replace it.
	forceExit func(code int)
	// signals delivers SIGINT/SIGTERM/SIGHUP; tests replace it.
	signals func(chan<- os.Signal)
}

// newRunCommand returns `keyfocus run` bound to e.
func newRunCommand(e env) command {
	return &runCommand{
		env:       e,
		forceExit: os.Exit,
		signals: func(c chan<- os.Signal) {
			signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		},
	}
}

// flags defines the flags of DESIGN.md; each default comes from
// KEYFOCUS_<NAME> (upper case, dashes as underscores).
func (c *runCommand) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("keyfocus run", flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	str := func(p *string, name, def, usage string) {
		if v := c.env.Getenv(envName(name)); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+envName(name)+")")
	}
	boolean := func(p *bool, name string, usage string) {
		def := false
		switch strings.ToLower(c.env.Getenv(envName(name))) {
		case "1", "true", "yes", "on":
			def = true
		}
		fs.BoolVar(p, name, def, usage+" (env "+envName(name)+")")
	}
	boolean(&c.headless, "headless", "run as a daemon: no console, JSON logs on stderr")
	str(&c.xmppAddr, "xmpp-addr", "127.0.0.1:5347", "Prosody's component port, host:port")
	str(&c.component, "component", "focus.meet.example", "the focus's component address")
	str(&c.muc, "muc", "conference.meet.example", "the MUC (conference) host")
	str(&c.secretFile, "secret-file", "", "file holding the component secret (or set KEYFOCUS_SECRET; never on the command line)")
	str(&c.keysPath, "keys", "./keys.properties", "the key file (created empty if missing)")
	str(&c.roomKeySeparator, "room-key-separator", "=", "separator of KEY<sep>NAME room names")
	str(&c.socket, "socket", "", "control socket `path` for keyfocus attach (empty: none)")
	str(&c.socketGroup, "socket-group", "", "group that may also use the control socket (default: owner only)")
	str(&c.statePath, "state", "", "file where admissions survive a restart (empty: none)")
	boolean(&c.readonly, "readonly", "the console cannot edit keys, members or rooms")
	str(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	c.ops.define(str)
	str(&c.logFile, "log-file", defaultLogFile(c.env.Getenv, "run"), "without --headless: the log file (the terminal is the console's)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: keyfocus run [--headless] [flags]")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Runs the focus component against Prosody. The first SIGINT/SIGTERM drains")
		fmt.Fprintln(fs.Output(), "(new rooms refused, rooms left without ending them, state saved); a second")
		fmt.Fprintln(fs.Output(), "exits at once. SIGHUP re-reads the key file and the secret file (the new")
		fmt.Fprintln(fs.Output(), "secret is used at the next reconnect) and reopens the audit log.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Exit codes: 0 clean shutdown, 1 runtime error, 2 usage error.")
	}
	return fs
}

func envName(flagName string) string {
	return "KEYFOCUS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// secret reads the component secret from KEYFOCUS_SECRET or --secret-file.
func (c *runCommand) secret() (string, error) {
	env := strings.TrimSpace(c.env.Getenv("KEYFOCUS_SECRET"))
	if env != "" && c.secretFile != "" {
		return "", usageError("both KEYFOCUS_SECRET and --secret-file are set: use one")
	}
	if env != "" {
		return env, nil
	}
	if c.secretFile == "" {
		return "", usageError("no component secret: set KEYFOCUS_SECRET or --secret-file FILE (the secret is never taken from the command line)")
	}
	data, err := os.ReadFile(c.secretFile)
	if err != nil {
		return "", usageError("reading the component secret: %v", err)
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", usageError("the secret file %s is empty", c.secretFile)
	}
	return s, nil
}

func (c *runCommand) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, usageError("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	if !c.headless {
		log, _, err := openLogFile(c.logFile, lvl) // open for the life of the process
		return log, err
	}
	return slog.New(slog.NewJSONHandler(c.env.Stderr, &slog.HandlerOptions{Level: lvl})), nil
}

func (c *runCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		for _, a := range fs.Args() {
			if strings.Contains(strings.ToLower(a), "secret") {
				return usageError("unexpected argument: the secret is read from KEYFOCUS_SECRET or --secret-file only")
			}
		}
		return usageError("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if !c.headless {
		if err := needTerminal(c.env, "use `keyfocus run --headless` for a daemon"); err != nil {
			return err
		}
	}
	secret, err := c.secret()
	if err != nil {
		return err
	}
	log, err := c.logger()
	if err != nil {
		return err
	}
	store, err := keys.OpenWith(c.keysPath, keys.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	f, err := focus.New(focus.Config{
		Addr: c.xmppAddr, Component: c.component, MUC: c.muc, Secret: secret,
		Store: store, RoomKeySeparator: c.roomKeySeparator, StatePath: c.statePath, Logger: log,
	})
	if err != nil {
		return usageError("%v", err)
	}
	return c.serve(ctx, log, store, f)
}

// serve runs the focus and the pieces around it, each one goroutine of an
// errgroup, until a signal or an error. Pieces: the focus itself, signals,
// systemd notification, the control socket (--socket). The console (without
// --headless) and the HTTP server (--http) join here the same way.
func (c *runCommand) serve(ctx context.Context, log *slog.Logger, store *keys.Store, f *focus.Focus) error {
	notify := sdnotify.New(c.env.Getenv)
	runCtx, stopRun := context.WithCancel(ctx) // ends the focus: drain and leave
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)

	if c.socket != "" {
		l, err := control.Listen(c.socket, control.ListenConfig{Group: c.socketGroup})
		if err != nil {
			return err
		}
		srv := &control.Server{Source: f, Logger: log, KeySeparator: c.roomKeySeparator}
		g.Go(func() error { return srv.Serve(gctx, l) })
	}

	if err := c.ops.start(gctx, g, c, log, f, store, notify); err != nil {
		stopRun()
		_ = g.Wait()
		return err
	}
	defer c.ops.close()

	if !c.headless {
		g.Go(func() error { return c.console(gctx, log, f, stopRun) })
	}

	focusDone := make(chan struct{})
	g.Go(func() error {
		defer close(focusDone)
		err := f.Run(gctx)
		stopRun() // the focus ended: everything else stops too
		return err
	})

	g.Go(func() error {
		select {
		case <-f.Ready():
			_ = notify.Ready("connected to Prosody")
			log.Info("ready", "component", c.component, "keys", store.Path())
		case <-gctx.Done():
		}
		return nil
	})
	g.Go(func() error { return notify.Watchdog(gctx, f.Alive) })

	sigs := make(chan os.Signal, 4)
	c.signals(sigs)
	defer signal.Stop(sigs)
	g.Go(func() error {
		stopping := false
		for {
			select {
			case <-focusDone:
				return nil
			case s := <-sigs:
				switch {
				case s == syscall.SIGHUP && c.headless:
					// With the console, SIGHUP means the terminal went away:
					// it stops keyfocus like SIGTERM (below).
					// Before the first READY=1 a reload must not tell systemd
					// the service is up.
					started := readyYet(f)
					if started {
						_ = notify.Reloading("re-reading the key file")
					}
					u := store.Reload()
					if u.Err != nil {
						log.Error("reload: key file not applied; the last good keys stay", "err", u.Err)
					} else {
						log.Info("reload: key file re-read", "keys", u.Snapshot.Len())
					}
					if s, err := c.secret(); err != nil {
						log.Error("reload: component secret not re-read; the old one stays", "err", err)
					} else {
						f.SetSecret(s) // applies at the next reconnect
					}
					c.ops.reload(log)
					if started {
						_ = notify.Ready("connected to Prosody")
					}
				case !stopping:
					stopping = true
					log.Info("signal: draining (send it again to exit at once)", "signal", s.String())
					_ = notify.Stopping("draining")
					stopRun()
				default:
					log.Warn("second signal: exiting at once", "signal", s.String())
					c.forceExit(1)
					return nil
				}
			}
		}
	})
	err := c.waitShutdown(runCtx, g, log)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// shutdownTimeout bounds a shutdown once it has started: the focus's drain
// (rooms being created, then leaving every room) takes at most twice its
// drain timeout; a piece that still has not returned well after that must
// not keep the process alive.
const shutdownTimeout = 2*focus.DefaultDrainTimeout + 5*time.Second

// waitShutdown waits for every piece of g. Once runCtx is done (a signal, the
// operator quitting the console, or the focus ending) it waits at most
// shutdownTimeout, then logs the goroutines still running (to find the piece
// that hung) and exits.
func (c *runCommand) waitShutdown(runCtx context.Context, g *errgroup.Group, log *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-runCtx.Done():
	}
	t := time.NewTimer(shutdownTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		log.Error("shutdown did not finish in time; exiting anyway", "timeout", shutdownTimeout.String(), "goroutines", stacks.String())
		c.forceExit(1)
		return errors.New("shutdown did not finish in time")
	}
}
