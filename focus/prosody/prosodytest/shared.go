package prosodytest

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/keyfocus/keyfocus/focus/prosody"
)

var shared struct {
	once sync.Once
	opts []Option
	srv  *prosody.Server
	err  error
}

// Main runs a test package whose tests share one Prosody (see Shared), and
// stops that Prosody by pid when the tests are done:
//
//	func TestMain(m *testing.M) { prosodytest.Main(m, prosodytest.WithExtraComponents("bare.meet.example")) }
//
// The options apply to the shared server, which starts on the first Shared.
func Main(m *testing.M, opts ...Option) {
	shared.opts = opts
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	os.Exit(code)
}

// Shared returns the package's shared Prosody, started on first use with the
// options given to Main (which must run the package). Tests sharing it must
// not stop or restart it and should use room and component names of their own.
// It skips loudly when prosody is not on PATH, like Start.
func Shared(t testing.TB) *prosody.Server {
	t.Helper()
	shared.once.Do(func() {
		o := prosody.Options{} // a temporary folder, removed by Stop
		for _, f := range shared.opts {
			f(&o)
		}
		shared.srv, shared.err = prosody.Start(context.Background(), o)
	})
	if errors.Is(shared.err, prosody.ErrNotFound) {
		t.Skip(skipMessage)
	}
	if shared.err != nil {
		t.Fatalf("start the shared prosody: %v", shared.err)
	}
	if !shared.srv.Running() {
		t.Fatalf("the shared prosody is not running (did a test stop it?); log:\n%s", shared.srv.LogTail(20))
	}
	return shared.srv
}
