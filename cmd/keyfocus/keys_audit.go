package main

import (
	"flag"
	"fmt"

	"github.com/keyfocus/keyfocus/focus/audit"
	"github.com/keyfocus/keyfocus/keys"
)

// auditFlag adds --audit (env KEYFOCUS_AUDIT) to a keys FlagSet.
func (c *keysCommand) auditFlag(fs *flag.FlagSet) {
	def := c.audit
	if def == "" {
		def = c.env.Getenv("KEYFOCUS_AUDIT")
	}
	fs.StringVar(&c.audit, "audit", def, "audit log to record this change in, with your user name (env KEYFOCUS_AUDIT)")
}

// record appends the change to the audit log (with --audit) with the local
// user as the actor. The running focus finds this record when its watch sees
// the change, so the change is on record once, with who made it. A failed
// write does not undo the change: it is reported, and the focus then records
// the change as made outside keyfocus.
func (c *keysCommand) record(kind string, e *keys.Entry, changed ...string) {
	if c.audit == "" || e == nil {
		return
	}
	r := audit.KeyRecord(kind, audit.LocalActor(), audit.ViaCLI, c.keysPath, e, changed...)
	if err := audit.Append(c.audit, r); err != nil {
		fmt.Fprintf(c.env.Stderr, "Warning: the change is made but not in the audit log: %v\n(keyfocus will record it as changed outside keyfocus)\n", err)
	}
}
