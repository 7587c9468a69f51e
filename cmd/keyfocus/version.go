package main

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

type versionCommand struct{ env env }

func (c *versionCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("keyfocus version", flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	fmt.Fprintf(c.env.Stdout, "keyfocus %s\n", v)
	return nil
}
