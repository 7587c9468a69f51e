package focus

import "context"

// Source is what a console needs from a focus. The in-process focus and the
// control-socket client (keyfocus attach) both implement it, so the console
// cannot tell them apart.
type Source interface {
	// Watch returns the current State and a subscription to every event
	// after it, taken atomically: no event is missed between the two and none
	// already reflected in the State is delivered again.
	Watch(buffer int) (State, *Subscription)
	// RemoveMember kicks one member out of a room (operator action). It does
	// not touch the key store: the person may come back with a valid key.
	RemoveMember(ctx context.Context, room, nick, reason string) error
	// EndRoom destroys a room and removes everyone in it (operator action).
	EndRoom(ctx context.Context, room, reason string) error
}
