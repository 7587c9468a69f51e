package bare_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyfocus/keyfocus/focus/internal/bare"
	"github.com/keyfocus/keyfocus/focus/prosody/prosodytest"
)

// The conference round trip itself is tested with the participant in
// focus/simulate (TestBareComponent); here: connecting and ending.
func TestStartAndEnd(t *testing.T) {
	s := prosodytest.Start(t, prosodytest.WithExtraComponents("bare.meet.example"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tests := []struct {
		name, component, secret string
		ok                      bool
	}{
		{"right secret", "bare.meet.example", s.Secret, true},
		{"wrong secret", "bare.meet.example", "nope", false},
		{"not configured", "other.meet.example", s.Secret, false},
		{"bad name", "a@b@c", s.Secret, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := bare.Start(ctx, bare.Config{Addr: s.ComponentAddr, Name: tc.component, Secret: tc.secret})
			if (err == nil) != tc.ok {
				t.Fatalf("Start: %v, want ok=%v", err, tc.ok)
			}
			if err == nil {
				if err := c.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
		})
	}
	c, err := bare.Start(ctx, bare.Config{Addr: s.ComponentAddr, Name: "bare.meet.example", Secret: s.Secret})
	if err != nil {
		t.Fatal(err)
	}
	s.Kill()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the end of the connection went unnoticed")
	}
}
