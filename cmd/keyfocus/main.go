// Command keyfocus gates Jitsi Meet conferences with client keys.
//
// main is tiny: it picks the subcommand and calls its Run. Each subcommand is
// a small struct in its own file with its own flag.FlagSet.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand. Run gets the arguments after the subcommand's
// name. Errors of type *exitError carry their exit code; any other error exits 1.
type command interface {
	Run(ctx context.Context, args []string) error
}

// env is what a command may touch of the process: tests hand in their own.
type env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// commands maps each subcommand to its constructor and one-line summary.
// Keep in the order of DESIGN.md's command line.
var commands = map[string]struct {
	summary string
	order   int
	new     func(env) command
}{
	"run":      {"run the focus (--headless: as a daemon)", 10, newRunCommand},
	"attach":   {"console for a focus already running on this host (unix socket)", 20, newAttachCommand},
	"keys":     {"list | add | revoke | edit | check | hash: the key store from scripts", 30, newKeysCommand},
	"simulate": {"participants that act like Jitsi clients (demo traffic, load, tests)", 50, newSimulateCommand},
	"demo":     {"Prosody on loopback + focus + simulated participants + console, one command", 60, newDemoCommand},
	"version":  {"print the version", 90, func(e env) command { return &versionCommand{env: e} }},
}

func main() {
	e := env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	os.Exit(Main(context.Background(), os.Args[1:], e))
}

// Main runs keyfocus with args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, e env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.Stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.Stderr, "keyfocus: unknown command %q\n\n", args[0])
		usage(e.Stderr)
		return 2
	}
	err := c.new(e).Run(ctx, args[1:])
	return exitCode(e.Stderr, args[0], err)
}

func exitCode(stderr io.Writer, name string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "keyfocus %s: %v\n", name, ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "keyfocus %s: %v\n", name, err)
	return 1
}

// exitError ends a command with a given exit code; err (if any) is printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// parseFlags parses args with fs; -h gives flag.ErrHelp (exit 0), any other
// parse error is a usage error (exit 2; the flag package already printed it).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2}
	}
	return nil
}

// usageError is a misuse of the command line: exit code 2.
func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return commands[names[i]].order < commands[names[j]].order })
	fmt.Fprintln(w, "Usage: keyfocus <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "keyfocus gates Jitsi Meet conferences with client keys.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'keyfocus <command> -h' for a command's flags.")
}
