package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keyfocus/keyfocus/focus"
	"github.com/keyfocus/keyfocus/focus/prosody"
	"github.com/keyfocus/keyfocus/focus/simulate"
	"github.com/keyfocus/keyfocus/keys"
	"github.com/keyfocus/keyfocus/tui"
)

// demoCommand is `keyfocus demo`: Prosody on loopback with a generated
// config, the focus with a demo key file, simulated participants, and the
// console, in one command. Quitting stops everything it started.
type demoCommand struct {
	env env

	dir      string
	keep     bool
	revoke   time.Duration
	rate     float64
	readonly bool
	prosody  string
}

func newDemoCommand(e env) command { return &demoCommand{env: e} }

// installHint says how to get Prosody on the usual systems.
const installHint = `keyfocus demo needs Prosody (the XMPP server of every Jitsi Meet install) and could not find it on PATH.
Install it, then run the demo again:

    sudo apt-get install -y prosody      # Debian, Ubuntu
    sudo dnf install -y prosody          # Fedora
    brew install prosody                 # macOS (Homebrew)

The demo runs its own Prosody on loopback with a generated config; a Prosody
that the package starts system-wide is not used (stop it if you like:
sudo systemctl stop prosody).`

func (c *demoCommand) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("keyfocus demo", flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	fs.StringVar(&c.dir, "dir", "", "folder for the demo's files (default: a new temporary folder, removed at the end)")
	fs.BoolVar(&c.keep, "keep", false, "keep the demo folder at the end (logs, key file, Prosody config)")
	fs.DurationVar(&c.revoke, "revoke-after", 60*time.Second, "revoke the Initech key this long after the start (0: never)")
	fs.Float64Var(&c.rate, "rate", 1, "simulated participants starting per second")
	fs.BoolVar(&c.readonly, "readonly", false, "the console cannot edit")
	fs.StringVar(&c.prosody, "prosody", "prosody", "the prosody executable")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: keyfocus demo [flags]")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Starts Prosody on loopback, the focus with a demo key file, simulated")
		fmt.Fprintln(fs.Output(), "participants (valid keys, wrong keys, no key, and a key revoked midway)")
		fmt.Fprintln(fs.Output(), "and the console. Quitting (q, then y) stops all of it.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	return fs
}

func (c *demoCommand) Run(ctx context.Context, args []string) (err error) {
	fs := c.flags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.rate <= 0 {
		return usageError("--rate must be positive")
	}
	if c.dir != "" {
		if err := checkDemoKeyFile(filepath.Join(c.dir, "keys.properties")); err != nil {
			return err
		}
	}
	if _, err := exec.LookPath(c.prosody); err != nil {
		fmt.Fprintln(c.env.Stderr, installHint)
		return &exitError{code: 1}
	}
	if err := needTerminal(c.env, "the demo is interactive"); err != nil {
		return err
	}

	dir := c.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "keyfocus-demo-"); err != nil {
			return err
		}
		if !c.keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyPath := filepath.Join(dir, "keys.properties")
	logPath := filepath.Join(dir, "keyfocus.log")
	log, closeLog, err := openLogFile(logPath, slog.LevelInfo)
	if err != nil {
		return err
	}
	defer closeLog()

	// A hangup (terminal closed) or kill still stops everything in order.
	ctx, stopSignals := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stopSignals()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	fmt.Fprintf(c.env.Stderr, "keyfocus demo: starting Prosody on loopback (files in %s)...\n", dir)
	srv, err := prosody.Start(ctx, prosody.Options{Binary: c.prosody, Dir: filepath.Join(dir, "prosody"), Logger: log})
	if err != nil {
		if errors.Is(err, prosody.ErrNotFound) {
			fmt.Fprintln(c.env.Stderr, installHint)
			return &exitError{code: 1}
		}
		return fmt.Errorf("starting Prosody: %w", err)
	}
	defer srv.Stop()

	demoKeys, err := writeDemoKeys(keyPath, log)
	if err != nil {
		return err
	}
	focusStore, err := keys.OpenWith(keyPath, keys.Options{Logger: log})
	if err != nil {
		return err
	}
	f, err := focus.New(focus.Config{
		Addr: srv.ComponentAddr, Component: srv.Component, MUC: srv.MUC, Secret: srv.Secret,
		Store: focusStore, StatePath: filepath.Join(dir, "state.json"), Logger: log,
		DrainTimeout: 2 * time.Second,
	})
	if err != nil {
		return err
	}
	consoleStore, err := keys.OpenWith(keyPath, keys.Options{Logger: log})
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := f.Run(gctx)
		cancel()
		return err
	})
	// Participants start once the focus is connected.
	g.Go(func() error {
		select {
		case <-f.Ready():
		case <-gctx.Done():
			return nil
		}
		return c.simulate(gctx, srv, demoKeys, keyPath, log)
	})
	g.Go(func() error {
		defer cancel()
		m := tui.New(tui.Options{
			Source: f, Store: consoleStore, ReadOnly: c.readonly, Component: srv.Component,
			Mode: tui.ModeDemo, Logger: log, Mouse: true,
		})
		defer m.Close()
		return runProgram(gctx, m, c.env)
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	fmt.Fprintln(c.env.Stderr, "keyfocus demo: stopped the focus, the simulated participants and Prosody.")
	if c.keep || c.dir != "" {
		fmt.Fprintf(c.env.Stderr, "keyfocus demo: logs and files are in %s\n", dir)
	}
	return err
}

// demoKey is one key of the demo key file.
type demoKey struct {
	name string
	key  string
}

// demoKeysHeader is the first line of the demo's key file.
const demoKeysHeader = "# keyfocus demo keys (stored hashed; the demo's participants hold the keys)\n"

// checkDemoKeyFile refuses a --dir whose keys.properties is not a demo's
// (the demo rewrites that file): pointed at a real deployment's folder, it
// would otherwise replace its keys.
func checkDemoKeyFile(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("demo key file: %w", err)
	}
	if !strings.HasPrefix(string(data), demoKeysHeader) {
		return fmt.Errorf("%s is not a key file the demo wrote, and the demo would replace it: give --dir an empty folder (or one a demo used before)", path)
	}
	return nil
}

// writeDemoKeys creates the demo key file (keys stored hashed) and returns
// the keys for the simulated participants. Nothing prints them.
func writeDemoKeys(path string, log *slog.Logger) ([]demoKey, error) {
	if err := os.WriteFile(path, []byte(demoKeysHeader), 0o600); err != nil {
		return nil, err
	}
	store, err := keys.OpenWith(path, keys.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	specs := []keys.Spec{
		{Name: "Acme Corp", Rooms: []string{"demo-1", "demo-2"}},
		{Name: "Globex", MaxParticipants: 3},
		{Name: "Initech", Expires: endOfDay(time.Now().AddDate(1, 0, 0))},
	}
	var out []demoKey
	for _, sp := range specs {
		k, _, err := store.Add(sp)
		if err != nil {
			return nil, fmt.Errorf("writing the demo key file: %w", err)
		}
		out = append(out, demoKey{name: sp.Name, key: k})
	}
	return out, nil
}

// simulate runs the demo's participants until ctx ends: most with valid
// keys, some with wrong keys or none, a few skipping the request; and
// revokes the Initech key midway through the key file, like an operator.
func (c *demoCommand) simulate(ctx context.Context, srv *prosody.Server, demoKeys []demoKey, keyPath string, log *slog.Logger) error {
	acc := simulate.Account{Addr: srv.C2SAddr, Domain: srv.Domain, Logger: log}
	var valid []string
	var initech string
	for _, k := range demoKeys {
		valid = append(valid, k.key)
		if k.name == "Initech" {
			initech = k.key
		}
	}
	const forever = 365 * 24 * time.Hour
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := simulate.Run(ctx, simulate.LoadConfig{
			Account: acc, Focus: srv.Component, MUC: srv.MUC, Rooms: 5, RoomPrefix: "demo",
			Duration: forever, Rate: c.rate, Concurrency: 24, Stay: 40 * time.Second,
			Keys: valid, InvalidRatio: 0.15, IntruderRatio: 0.05, Logger: log,
		})
		return err
	})
	g.Go(func() error {
		_, err := simulate.Run(ctx, simulate.LoadConfig{
			Account: acc, Focus: srv.Component, MUC: srv.MUC, Rooms: 5, RoomPrefix: "demo",
			Duration: forever, Rate: c.rate / 8, Concurrency: 2, Stay: time.Second,
			Keys: valid, Form: simulate.FormNone, Logger: log,
		})
		return err
	})
	if c.revoke > 0 {
		g.Go(func() error {
			t := time.NewTimer(c.revoke)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			store, err := keys.OpenWith(keyPath, keys.Options{Logger: log})
			if err != nil {
				log.Error("demo: revoking Initech", "err", err)
				return nil
			}
			if _, err := store.Revoke(keys.HashKey(initech)); err != nil {
				log.Error("demo: revoking Initech", "err", err)
				return nil
			}
			log.Info("demo: revoked the Initech key; the focus removes its members", "fingerprint", keys.Fingerprint(initech))
			return nil
		})
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// endOfDay is the expiry a date means in the key file: the end of that day, UTC.
func endOfDay(t time.Time) time.Time {
	d, err := keys.ParseExpires(t.UTC().Format("2006-01-02"))
	if err != nil {
		return t
	}
	return d
}
