// Package soak holds keyfocus's soak test: simulated Jitsi-like participants
// across dozens of rooms on a real Prosody, while keys are added, edited,
// revoked and expire, the key file is broken and repaired, Prosody is
// restarted and crashed, and the focus itself is restarted. A checker compares
// every room's real occupants, as Prosody broadcasts them to an observer
// client in the room, with the key file, and reports every occupant without a
// valid key and for how long.
//
// The short form runs in the normal test suite (about a minute):
//
//	go test -race -run TestSoak ./focus/soak/
//
// The long form is behind the soak build tag; KEYFOCUS_SOAK_DURATION sets its
// load time (default 10m):
//
//	KEYFOCUS_SOAK_DURATION=30m go test -tags soak -run TestSoak -timeout 2h -v ./focus/soak/
package soak
