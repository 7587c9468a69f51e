package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyfocus/keyfocus/focus/audit"
	"github.com/keyfocus/keyfocus/keys"
)

// keysCommand is `keyfocus keys`: the key store from scripts.
type keysCommand struct {
	env      env
	keysPath string
	now      func() time.Time
	audit    string // audit log the edits are recorded in (keys_audit.go)
}

func newKeysCommand(e env) command { return &keysCommand{env: e, now: time.Now} }

const keysUsage = `Usage: keyfocus keys [--keys FILE] <command> [flags] [args]

Manage the key file: the client keys that may open and enter conferences.
A running keyfocus picks up every change at once.

Commands:
  list [--json]                 the keys: name, fingerprint, form, rooms, expiry, limit, line
                                (never the keys themselves)
  add --name NAME [--rooms a,b] [--expires DATE] [--max-participants N]
                                generate a key, store it hashed, print it once on stdout
  revoke NAME|FINGERPRINT       remove a key (all its lines)
  edit NAME|FINGERPRINT [--name NAME] [--rooms a,b | --all-rooms]
                        [--expires DATE | --no-expiry] [--max-participants N]
                                change a key's attributes; the key stays the same
  check [FILE]                  validate a key file; prints FILE:LINE: message per problem
  hash [--mixed-case]           rewrite plaintext (seed) keys in their sha256: form, in place;
                                names, attributes and fingerprints stay, nobody is removed

A key is named by its client name (exact, else ignoring case) or by a
fingerprint prefix of at least 4 hex digits, as 'list' shows it.
DATE is YYYY-MM-DD (valid to the end of that day, UTC) or RFC 3339.
Room patterns are globs on the room's name: team-*, board, [ab]-standup.

Flags:
  --keys FILE   the key file (env KEYFOCUS_KEYS, default ./keys.properties)
  --audit FILE  record add/revoke/edit/hash with your user name in the audit log of
                the running keyfocus (env KEYFOCUS_AUDIT)

Exit codes:
  0  success (check: no errors; warnings allowed)
  1  failure: the file has errors, no such key, ambiguous name, I/O error
  2  usage: unknown command or flag, missing or bad argument
`

func (c *keysCommand) defaultPath() string {
	if p := c.env.Getenv("KEYFOCUS_KEYS"); p != "" {
		return p
	}
	return "./keys.properties"
}

// flagSet returns a FlagSet for one subcommand that also takes --keys;
// synopsis is its usage line after "keyfocus keys".
func (c *keysCommand) flagSet(synopsis string) *flag.FlagSet {
	name, _, _ := strings.Cut(synopsis, " ")
	fs := flag.NewFlagSet("keyfocus keys "+name, flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	fs.StringVar(&c.keysPath, "keys", c.keysPath, "the key file (env KEYFOCUS_KEYS)")
	c.auditFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(c.env.Stderr, "Usage: keyfocus keys %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		fmt.Fprint(c.env.Stderr, "\nExit codes: 0 success, 1 failure, 2 usage. See 'keyfocus keys --help'.\n")
	}
	return fs
}

// parseArgs parses flags wherever they are among the arguments (scripts
// write "revoke acme --keys f" as often as "revoke --keys f acme") and
// returns the other arguments. Everything after "--" is an argument.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

func (c *keysCommand) Run(ctx context.Context, args []string) error {
	c.keysPath = c.defaultPath()
	fs := flag.NewFlagSet("keyfocus keys", flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	fs.StringVar(&c.keysPath, "keys", c.keysPath, "the key file (env KEYFOCUS_KEYS)")
	c.auditFlag(fs)
	fs.Usage = func() { fmt.Fprint(c.env.Stderr, keysUsage) }
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(c.env.Stderr, keysUsage)
		return usageError("missing command: list, add, revoke, edit, check or hash")
	}
	switch sub, args := rest[0], rest[1:]; sub {
	case "list":
		return c.list(args)
	case "add":
		return c.add(args)
	case "revoke":
		return c.revoke(args)
	case "edit":
		return c.edit(args)
	case "check":
		return c.check(args)
	case "hash":
		return c.hash(args)
	case "help":
		fmt.Fprint(c.env.Stdout, keysUsage)
		return nil
	default:
		return usageError("unknown command %q: want list, add, revoke, edit, check or hash (see keyfocus keys --help)", sub)
	}
}

// open opens the store; mustExist refuses a missing file rather than
// creating it (a typo in --keys must not look like an empty key file).
func (c *keysCommand) open(mustExist bool) (*keys.Store, error) {
	if c.keysPath == "" {
		return nil, usageError("--keys is empty")
	}
	if mustExist {
		if _, err := os.Stat(c.keysPath); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("the key file %s does not exist (add a key to create it, or pass --keys FILE)", c.keysPath)
		}
	}
	// The store's notices (file created, warnings) go to stderr as plain lines.
	return keys.OpenWith(c.keysPath, keys.Options{Logger: slog.New(&lineHandler{w: c.env.Stderr})})
}

// openNoArgs parses the flags of a command that takes no arguments, then
// opens the existing key file.
func (c *keysCommand) openNoArgs(fs *flag.FlagSet, args []string, cmd string) (*keys.Store, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, usageError("%s takes no arguments (got %q)", cmd, pos)
	}
	return c.open(true)
}

// retry runs an edit, reloading and retrying when the file changed under it
// (another editor, the console of a running keyfocus).
func retry[T any](s *keys.Store, edit func() (T, error)) (T, error) {
	for i := 0; ; i++ {
		v, err := edit()
		if !errors.Is(err, keys.ErrConflict) || i == 4 {
			return v, err
		}
		if u := s.Reload(); u.Err != nil {
			return v, u.Err
		}
	}
}

// find resolves NAME|FINGERPRINT to exactly one entry.
func (c *keysCommand) find(s *keys.Store, q string) (*keys.Entry, error) {
	found, err := s.Find(q)
	if err != nil {
		return nil, err
	}
	if len(found) > 1 {
		var b strings.Builder
		fmt.Fprintf(&b, "%q matches %d keys; name one by its fingerprint:", q, len(found))
		for _, e := range found {
			fmt.Fprintf(&b, "\n  %s  %s (line %d)", e.Fingerprint, e.Name, e.Line)
		}
		return nil, errors.New(b.String())
	}
	return found[0], nil
}

// keyJSON is one key in `list --json`. It never holds the key.
type keyJSON struct {
	Name            string     `json:"name"`
	Fingerprint     string     `json:"fingerprint"`
	Form            string     `json:"form"` // hashed | plaintext
	Rooms           []string   `json:"rooms"`
	Expires         *time.Time `json:"expires"`
	Expired         bool       `json:"expired"`
	MaxParticipants int        `json:"max_participants"`
	Line            int        `json:"line"`
	Attributes      []attrJSON `json:"attributes,omitempty"` // unknown attributes, kept as written
}

type attrJSON struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func form(e *keys.Entry) string {
	if e.Hashed {
		return "hashed"
	}
	return "plaintext"
}

func (c *keysCommand) list(args []string) error {
	fs := c.flagSet("list [--json]")
	asJSON := fs.Bool("json", false, "print JSON: {\"file\", \"keys\": [...], \"warnings\": [...]}")
	s, err := c.openNoArgs(fs, args, "list")
	if err != nil {
		return err
	}
	snap := s.Snapshot()
	now := c.now()
	if *asJSON {
		out := struct {
			File     string    `json:"file"`
			Keys     []keyJSON `json:"keys"`
			Warnings []string  `json:"warnings"`
		}{File: s.Path(), Keys: []keyJSON{}, Warnings: snap.Warnings}
		if out.Warnings == nil {
			out.Warnings = []string{}
		}
		for _, e := range snap.Entries() {
			k := keyJSON{Name: e.Name, Fingerprint: e.Fingerprint, Form: form(e), Rooms: e.Rooms,
				Expired: e.Expired(now), MaxParticipants: e.MaxParticipants, Line: e.Line}
			if k.Rooms == nil {
				k.Rooms = []string{}
			}
			if !e.Expires.IsZero() {
				t := e.Expires
				k.Expires = &t
			}
			for _, a := range e.Unknown {
				k.Attributes = append(k.Attributes, attrJSON(a))
			}
			out.Keys = append(out.Keys, k)
		}
		enc := json.NewEncoder(c.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if snap.Len() == 0 {
		fmt.Fprintf(c.env.Stderr, "%s has no keys yet: nobody can open a conference. Add one with 'keyfocus keys add --name NAME'.\n", s.Path())
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFINGERPRINT\tFORM\tROOMS\tEXPIRES\tLIMIT\tLINE")
	for _, e := range snap.Entries() {
		rooms := "all"
		if len(e.Rooms) > 0 {
			rooms = strings.Join(e.Rooms, ",")
		}
		exp := "never"
		if !e.Expires.IsZero() {
			exp = keys.FormatExpires(e.Expires)
			if e.Expired(now) {
				exp += " (expired)"
			}
		}
		limit := "-"
		if e.MaxParticipants > 0 {
			limit = fmt.Sprint(e.MaxParticipants)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", sanitize(e.Name), e.Fingerprint, form(e), rooms, exp, limit, e.Line)
	}
	return tw.Flush()
}

// describe says in words what an entry allows.
func describe(e *keys.Entry) string {
	rooms := "every room"
	if len(e.Rooms) > 0 {
		rooms = "rooms " + strings.Join(e.Rooms, ",")
	}
	exp := "never expires"
	if !e.Expires.IsZero() {
		exp = "expires " + keys.FormatExpires(e.Expires)
	}
	limit := "no limit"
	if e.MaxParticipants > 0 {
		limit = fmt.Sprintf("at most %d people per room", e.MaxParticipants)
	}
	return fmt.Sprintf("%q, %s, %s, %s", sanitize(e.Name), rooms, exp, limit)
}

// sanitize keeps a client name from breaking the table (tabs, escapes).
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// specFlags are the attribute flags of add and edit.
type specFlags struct {
	name, rooms, expires string
	allRooms, noExpiry   bool
	max                  int
}

func (f *specFlags) define(fs *flag.FlagSet, edit bool) {
	fs.StringVar(&f.name, "name", "", "the client name")
	fs.StringVar(&f.rooms, "rooms", "", "comma-separated room patterns (globs); default every room")
	fs.StringVar(&f.expires, "expires", "", "expiry: YYYY-MM-DD (end of that day, UTC) or RFC 3339; default never")
	fs.IntVar(&f.max, "max-participants", 0, "most people in one room with this key at once; 0 = no limit")
	if edit {
		fs.BoolVar(&f.allRooms, "all-rooms", false, "allow every room (drop the rooms attribute)")
		fs.BoolVar(&f.noExpiry, "no-expiry", false, "never expire (drop the expires attribute)")
	}
}

// apply sets the flags given on the command line onto sp.
func (f *specFlags) apply(fs *flag.FlagSet, sp *keys.Spec) error {
	var err error
	fs.Visit(func(fl *flag.Flag) {
		if err != nil {
			return
		}
		switch fl.Name {
		case "name":
			sp.Name = strings.TrimSpace(f.name)
		case "rooms":
			var rooms []string
			if rooms, err = keys.ParseRooms(f.rooms); err != nil {
				err = usageError("--rooms: %v", err)
			}
			sp.Rooms = rooms
		case "expires":
			var t time.Time
			if t, err = keys.ParseExpires(f.expires); err != nil {
				err = usageError("--expires: %v", err)
			}
			sp.Expires = t
		case "max-participants":
			if f.max < 0 {
				err = usageError("--max-participants %d: use 0 for no limit", f.max)
			}
			sp.MaxParticipants = f.max
		case "all-rooms":
			if f.allRooms {
				sp.Rooms = nil
			}
		case "no-expiry":
			if f.noExpiry {
				sp.Expires = time.Time{}
			}
		}
	})
	if err != nil {
		return err
	}
	if err := sp.Validate(); err != nil {
		return usageError("%v", err)
	}
	return nil
}

func (c *keysCommand) add(args []string) error {
	fs := c.flagSet("add --name NAME [--rooms a,b] [--expires DATE] [--max-participants N]")
	var f specFlags
	f.define(fs, false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("add takes no arguments (got %q); the client name goes in --name", pos)
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if !set["name"] {
		return usageError("add needs --name NAME (the client the key is for)")
	}
	var sp keys.Spec
	if err := f.apply(fs, &sp); err != nil {
		return err
	}
	s, err := c.open(false)
	if err != nil {
		return err
	}
	type added struct {
		key string
		e   *keys.Entry
	}
	a, err := retry(s, func() (added, error) {
		k, e, err := s.Add(sp)
		return added{k, e}, err
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.env.Stdout, a.key)
	c.record(audit.KeyAdded, a.e)
	fmt.Fprintf(c.env.Stderr, "Added a key for %q to %s (line %d, fingerprint %s), stored hashed.\n", a.e.Name, s.Path(), a.e.Line, a.e.Fingerprint)
	fmt.Fprintln(c.env.Stderr, "This is the only time the key is shown: hand it over now. Lost keys cannot be recovered, only replaced.")
	if a.e.Expired(c.now()) {
		fmt.Fprintln(c.env.Stderr, "Note: its expiry is in the past, so it is not valid yet/anymore; change it with 'keyfocus keys edit'.")
	}
	return nil
}

func (c *keysCommand) revoke(args []string) error {
	fs := c.flagSet("revoke NAME|FINGERPRINT")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("revoke takes one NAME or FINGERPRINT (got %d arguments)", len(pos))
	}
	s, err := c.open(true)
	if err != nil {
		return err
	}
	e, err := c.find(s, pos[0])
	if err != nil {
		return err
	}
	gone, err := retry(s, func() (*keys.Entry, error) { return s.Revoke(e.ID) })
	if err != nil {
		return err
	}
	c.record(audit.KeyRevoked, gone)
	fmt.Fprintf(c.env.Stderr, "Revoked key %s (%q, line %d) from %s. A running keyfocus applies it at once.\n", gone.Fingerprint, gone.Name, gone.Line, s.Path())
	return nil
}

func (c *keysCommand) edit(args []string) error {
	fs := c.flagSet("edit NAME|FINGERPRINT [--name NAME] [--rooms a,b | --all-rooms] [--expires DATE | --no-expiry] [--max-participants N]")
	var f specFlags
	f.define(fs, true)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("edit takes one NAME or FINGERPRINT (got %d arguments), then the flags to change", len(pos))
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	switch {
	case set["rooms"] && set["all-rooms"]:
		return usageError("--rooms and --all-rooms contradict each other; give one")
	case set["expires"] && set["no-expiry"]:
		return usageError("--expires and --no-expiry contradict each other; give one")
	}
	delete(set, "keys")
	if len(set) == 0 {
		return usageError("nothing to change: give --name, --rooms, --all-rooms, --expires, --no-expiry or --max-participants")
	}
	s, err := c.open(true)
	if err != nil {
		return err
	}
	e, err := c.find(s, pos[0])
	if err != nil {
		return err
	}
	sp := keys.SpecOf(e)
	if err := f.apply(fs, &sp); err != nil {
		return err
	}
	id, old := e.ID, e
	e, err = retry(s, func() (*keys.Entry, error) { return s.Edit(id, sp) })
	if err != nil {
		return err
	}
	c.record(audit.KeyEdited, e, audit.EntryChanges(old, e)...)
	fmt.Fprintf(c.env.Stderr, "Changed key %s (line %d) in %s: %s.\n", e.Fingerprint, e.Line, s.Path(), describe(e))
	return nil
}

// hash rewrites the plaintext keys of the file as sha256: hashes. The IDs
// and fingerprints are those of the keys either way, so a running keyfocus
// keeps every admission.
func (c *keysCommand) hash(args []string) error {
	fs := c.flagSet("hash [--mixed-case]")
	mixed := fs.Bool("mixed-case", false, "hash keys with upper-case letters too (they then match only when sent exactly, as a property)")
	s, err := c.openNoArgs(fs, args, "hash")
	if err != nil {
		return err
	}
	res, err := retry(s, func() (*keys.HashResult, error) { return s.HashPlaintext(*mixed) })
	switch {
	case errors.Is(err, keys.ErrNothingToHash):
		res = &keys.HashResult{}
		for _, e := range s.Snapshot().Entries() {
			if !e.Hashed {
				res.MixedCase = append(res.MixedCase, e)
			}
		}
	case err != nil:
		return err
	}
	w := c.env.Stderr
	if len(res.Hashed) == 0 && len(res.MixedCase) == 0 {
		fmt.Fprintf(w, "Every key in %s is hashed already; nothing to do.\n", s.Path())
		return nil
	}
	if len(res.Hashed) > 0 {
		fmt.Fprintf(w, "Hashed %d key(s) in %s; fingerprints, names and attributes are unchanged, and a running keyfocus keeps everyone it admitted:\n", len(res.Hashed), s.Path())
		for _, e := range res.Hashed {
			c.record(audit.KeyEdited, e, "hashed")
			fmt.Fprintf(w, "  %s  %s (line %d)\n", e.Fingerprint, sanitize(e.Name), e.Line)
		}
	}
	if len(res.MixedCase) > 0 {
		fmt.Fprintf(w, "Left %d key(s) in plaintext: they have upper-case letters, and hashed they would no longer match the room-name form (Jitsi lowercases room names). Pass --mixed-case if their clients send them only as a property:\n", len(res.MixedCase))
		for _, e := range res.MixedCase {
			fmt.Fprintf(w, "  %s  %s (line %d)\n", e.Fingerprint, sanitize(e.Name), e.Line)
		}
	}
	return nil
}

func (c *keysCommand) check(args []string) error {
	fs := c.flagSet("check [FILE]")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	path := c.keysPath
	switch len(pos) {
	case 0:
	case 1:
		path = pos[0]
	default:
		return usageError("check takes at most one FILE (got %d)", len(pos))
	}
	res, err := keys.Check(path)
	if err != nil {
		return err
	}
	printDiag(c.env.Stdout, res)
	if n := len(res.Errors); n > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%s has %d error(s); the last good keys stay in force until it is fixed", path, n)}
	}
	return nil
}

func printDiag(w io.Writer, res *keys.CheckResult) {
	// Errors and warnings in line order, as compilers print them.
	i, j := 0, 0
	for i < len(res.Errors) || j < len(res.Warnings) {
		if j >= len(res.Warnings) || i < len(res.Errors) && res.Errors[i].Line <= res.Warnings[j].Line {
			e := res.Errors[i]
			fmt.Fprintf(w, "%s:%d: %s\n", e.File, e.Line, e.Msg)
			i++
			continue
		}
		e := res.Warnings[j]
		fmt.Fprintf(w, "%s:%d: warning: %s\n", e.File, e.Line, e.Msg)
		j++
	}
	fmt.Fprintf(w, "%d keys, %d errors, %d warnings\n", res.Keys, len(res.Errors), len(res.Warnings))
}

// lineHandler prints warnings and errors as "warning: message" lines, for a
// person at a terminal; attributes and lower levels are left out.
type lineHandler struct{ w io.Writer }

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *lineHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *lineHandler) WithGroup(string) slog.Handler                { return h }
func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	level := "warning"
	if r.Level >= slog.LevelError {
		level = "error"
	}
	_, err := fmt.Fprintf(h.w, "%s: %s\n", level, r.Message)
	return err
}
