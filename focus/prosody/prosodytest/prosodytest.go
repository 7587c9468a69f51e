// Package prosodytest starts a real Prosody for a test: free loopback ports,
// a config in t.TempDir(), stopped by pid in t.Cleanup.
package prosodytest

import (
	"context"
	"errors"
	"testing"

	"github.com/keyfocus/keyfocus/focus/prosody"
)

// Option adjusts the prosody.Options of Start.
type Option func(*prosody.Options)

// WithOpenRoomCreation lets any client create MUC rooms (restrict_room_creation off).
func WithOpenRoomCreation() Option { return func(o *prosody.Options) { o.OpenRoomCreation = true } }

// WithDomain sets the XMPP domain (the MUC and focus addresses follow it).
func WithDomain(domain string) Option { return func(o *prosody.Options) { o.Domain = domain } }

// WithComponent sets the focus's component address (the MUC admin).
func WithComponent(name string) Option { return func(o *prosody.Options) { o.Component = name } }

// WithExtraComponents adds components with the same secret that are not MUC admins.
func WithExtraComponents(names ...string) Option {
	return func(o *prosody.Options) { o.ExtraComponents = append(o.ExtraComponents, names...) }
}

// WithSecret sets the component secret.
func WithSecret(secret string) Option { return func(o *prosody.Options) { o.Secret = secret } }

// WithOptions edits the options directly.
func WithOptions(f func(*prosody.Options)) Option { return Option(f) }

const skipMessage = "\n" +
	"********************************************************************\n" +
	"*** SKIPPED: prosody is not on PATH, so this test against a real  ***\n" +
	"*** Prosody 0.12 did not run. Install prosody (apt-get install    ***\n" +
	"*** prosody) to run it; CI must have it.                          ***\n" +
	"********************************************************************"

// Start runs Prosody for the test and stops it when the test ends. If prosody
// is not on PATH the test is skipped with a loud message; any other failure
// fails the test.
func Start(t testing.TB, opts ...Option) *prosody.Server {
	t.Helper()
	o := prosody.Options{Dir: t.TempDir()}
	for _, f := range opts {
		f(&o)
	}
	s, err := prosody.Start(context.Background(), o)
	if errors.Is(err, prosody.ErrNotFound) {
		t.Skip(skipMessage)
	}
	if err != nil {
		t.Fatalf("start prosody: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("prosody log (last lines):\n%s", s.LogTail(30))
		}
	})
	return s
}
