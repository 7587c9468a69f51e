package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/keyfocus/keyfocus/focus/simulate"
)

// simulateCommand is `keyfocus simulate`: participants that act like Jitsi
// clients against a Prosody (demo traffic, load, tests).
type simulateCommand struct {
	env env

	addr, domain, focus, muc string
	rooms, participants      int
	rate                     float64
	concurrency              int
	stay, duration           time.Duration
	keysFile                 string
	invalidRatio             float64
	intruderRatio            float64
	keyForm                  string
	separator                string
	lowercase                bool
	roomPrefix               string
	timeout                  time.Duration
	jsonOut                  bool
	quiet                    bool
	verbose                  bool

	// signals delivers SIGINT/SIGTERM; tests replace it.
	signals func(chan<- os.Signal)
}

func newSimulateCommand(e env) command {
	return &simulateCommand{env: e, signals: func(c chan<- os.Signal) {
		signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	}}
}

func (c *simulateCommand) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("keyfocus simulate", flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	fs.StringVar(&c.addr, "xmpp-client-addr", "127.0.0.1:5222", "Prosody's client (c2s) port, host:port")
	fs.StringVar(&c.domain, "domain", "meet.example", "XMPP domain with anonymous login")
	fs.StringVar(&c.focus, "focus", "focus.meet.example", "the focus's address (where conference requests go)")
	fs.StringVar(&c.muc, "muc", "conference.meet.example", "the MUC (conference) host")
	fs.IntVar(&c.rooms, "rooms", 1, "spread participants over this many rooms")
	fs.IntVar(&c.participants, "participants", 10, "participants to run in total (0: no limit, needs --duration)")
	fs.IntVar(&c.participants, "count", 10, "same as --participants")
	fs.Float64Var(&c.rate, "rate", 0, "participants started per second (0: as fast as --concurrency allows)")
	fs.IntVar(&c.concurrency, "concurrency", 16, "participants alive at once, at most")
	fs.DurationVar(&c.stay, "stay", 10*time.Second, "how long an admitted participant stays in its room")
	fs.DurationVar(&c.duration, "duration", 0, "stop starting participants after this long (0: until --participants are done)")
	fs.StringVar(&c.keysFile, "keys-file", "", "file of keys to present, one per line (# comments); never printed")
	fs.Float64Var(&c.invalidRatio, "invalid-ratio", 0, "share of requests (0..1) made with a wrong key")
	fs.Float64Var(&c.intruderRatio, "intruder-ratio", 0, "share of participants (0..1) that skip the request and join directly")
	fs.StringVar(&c.keyForm, "key-form", "property", "where the key goes: property, room, token or none")
	fs.StringVar(&c.separator, "room-key-separator", "=", "separator between key and room name in --key-form room")
	fs.BoolVar(&c.lowercase, "lowercase", false, "lowercase room names, as the jitsi-meet web app does")
	fs.StringVar(&c.roomPrefix, "room-prefix", "sim", "rooms are named PREFIX-N")
	fs.DurationVar(&c.timeout, "step-timeout", 10*time.Second, "limit for each login, request, join and leave")
	fs.BoolVar(&c.jsonOut, "json", false, "print the summary as JSON")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress line")
	fs.BoolVar(&c.verbose, "verbose", false, "log each failed step (debug) on stderr")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: keyfocus simulate [flags]")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Participants that act like Jitsi clients: anonymous login, conference request")
		fmt.Fprintln(fs.Output(), "with a key (or a wrong one), MUC join, stay, leave. A progress line goes to")
		fmt.Fprintln(fs.Output(), "stderr once a second; the summary goes to stdout at the end or on Ctrl-C.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	return fs
}

// readKeys reads one key per line, skipping blank lines and # comments.
func readKeys(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("keys file %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("keys file %s holds no keys (one per line; # starts a comment)", path)
	}
	return out, nil
}

func (c *simulateCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q (see keyfocus simulate -h)", fs.Arg(0))
	}
	form, err := simulate.ParseKeyForm(c.keyForm)
	if err != nil {
		return usageError("--key-form: %v", err)
	}
	switch {
	case c.participants < 0:
		return usageError("--participants must not be negative")
	case c.participants == 0 && c.duration <= 0:
		return usageError("--participants 0 means no limit: give --duration too")
	case c.rooms < 1:
		return usageError("--rooms must be at least 1")
	case c.concurrency < 1:
		return usageError("--concurrency must be at least 1")
	case c.rate < 0:
		return usageError("--rate must not be negative")
	case c.stay < 0 || c.duration < 0 || c.timeout <= 0:
		return usageError("--stay and --duration must not be negative, --step-timeout must be positive")
	case c.invalidRatio < 0 || c.invalidRatio > 1:
		return usageError("--invalid-ratio must be between 0 and 1")
	case c.intruderRatio < 0 || c.intruderRatio > 1:
		return usageError("--intruder-ratio must be between 0 and 1")
	case form == simulate.FormRoom && c.separator == "":
		return usageError("--room-key-separator must not be empty with --key-form room")
	}
	var keyList []string
	if c.keysFile != "" {
		if keyList, err = readKeys(c.keysFile); err != nil {
			return err
		}
	} else if form != simulate.FormNone && c.intruderRatio < 1 {
		fmt.Fprintln(c.env.Stderr, "keyfocus simulate: no --keys-file: every participant presents a wrong key")
	}

	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(c.env.Stderr, &slog.HandlerOptions{Level: level}))
	acc := simulate.Account{Addr: c.addr, Domain: c.domain, Logger: log}

	// One login first, so a wrong address or domain is one clear error
	// rather than a summary full of failures.
	pctx, cancel := context.WithTimeout(ctx, c.timeout)
	p, err := simulate.Dial(pctx, acc)
	cancel()
	if err != nil {
		return fmt.Errorf("cannot log in as an anonymous guest of %s at %s: %w (is Prosody running there, and is --domain its anonymous VirtualHost?)", c.domain, c.addr, err)
	}
	p.Close()

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	sigs := make(chan os.Signal, 1)
	c.signals(sigs)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
			fmt.Fprintln(c.env.Stderr, "keyfocus simulate: stopping, participants are leaving (signal again to quit at once)")
			signal.Stop(sigs)
			stop()
		case <-ctx.Done():
		}
	}()

	cfg := simulate.LoadConfig{
		Account: acc, Focus: c.focus, MUC: c.muc,
		Rooms: c.rooms, RoomPrefix: c.roomPrefix,
		Participants: c.participants, Duration: c.duration,
		Rate: c.rate, Concurrency: c.concurrency, Stay: c.stay,
		Keys: keyList, InvalidRatio: c.invalidRatio, IntruderRatio: c.intruderRatio,
		Form: form, Separator: c.separator, Lowercase: c.lowercase,
		StepTimeout: c.timeout, Logger: log,
	}
	if !c.quiet {
		cfg.Progress = c.env.Stderr
	}
	sum, err := simulate.Run(ctx, cfg)
	if err != nil {
		return usageError("%v", err)
	}
	if c.jsonOut {
		if err := sum.WriteJSON(c.env.Stdout); err != nil {
			return err
		}
	} else {
		sum.WriteText(c.env.Stdout)
	}
	if sum.Started > 0 && sum.LoginFailed == sum.Started {
		return errors.New("no participant could log in (see --verbose)")
	}
	return nil
}
