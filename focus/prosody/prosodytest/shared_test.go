package prosodytest_test

import (
	"context"
	"net"
	"testing"
	"time"

	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"

	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
)

func TestMain(m *testing.M) {
	prosodytest.Main(m, prosodytest.WithDomain("shared.example"), prosodytest.WithExtraComponents("extra.shared.example"))
}

func TestSharedIsShared(t *testing.T) {
	a, b := prosodytest.Shared(t), prosodytest.Shared(t)
	if a != b || a.Pid() == 0 {
		t.Fatalf("two servers or none: %p %p pid %d", a, b, a.Pid())
	}
	if a.Domain != "shared.example" || a.MUC != "conference.shared.example" {
		t.Errorf("Main's options not applied: %q %q", a.Domain, a.MUC)
	}
}

func TestSharedAcceptsComponents(t *testing.T) {
	s := prosodytest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{s.Component, "extra.shared.example"} {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.ComponentAddr)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := component.NewSession(ctx, jid.MustParse(name), []byte(s.Secret), conn)
		if err != nil {
			t.Errorf("handshake as %s: %v", name, err)
		} else {
			sess.Close()
		}
		conn.Close()
	}
}
