// Package control is keyfocus's unix control socket: a Server that serves any
// focus.Source to consoles on the same host (keyfocus attach), and a Client
// that implements focus.Source over that socket.
//
// # Wire format
//
// Newline-delimited JSON, one message per line, in both directions.
//
// The server speaks first. On connect it sends
//
//	{"type":"state","proto":1,"state":{...focus.State...}}
//
// then one {"type":"event","event":{...focus.Event...}} per event, in order.
// If the connection falls behind (its bounded buffer overflows) the server
// drops the buffered events and sends a fresh state with "resync":true; the
// client replaces everything it knew. A connection that stops reading is
// closed after the write timeout: the focus never waits for a console.
//
// The client may send operator actions at any time:
//
//	{"type":"remove_member","id":7,"room":"r@conference.x","nick":"alice","reason":"..."}
//	{"type":"end_room","id":8,"room":"r@conference.x","reason":"..."}
//
// and gets {"type":"reply","id":7} or {"type":"reply","id":7,"error":"..."}
// interleaved with the events. Key edits never go through the socket: they go
// to the key file, which the focus watches.
package control

import (
	"github.com/keyfocus/keyfocus/focus"
)

// Proto is the version of the wire format above.
const Proto = 1

// Message types.
const (
	TypeState        = "state"
	TypeEvent        = "event"
	TypeReply        = "reply"
	TypeRemoveMember = "remove_member"
	TypeEndRoom      = "end_room"
)

// maxLine bounds one message. A State with tens of thousands of rooms is
// large, so the client accepts big lines; requests are small.
const (
	maxClientLine  = 256 << 20
	maxRequestLine = 64 << 10
)

// message is one line of the protocol, in either direction.
type message struct {
	Type   string       `json:"type"`
	Proto  int          `json:"proto,omitempty"`
	Resync bool         `json:"resync,omitempty"`
	State  *focus.State `json:"state,omitempty"`
	Event  *focus.Event `json:"event,omitempty"`

	ID     uint64 `json:"id,omitempty"`
	Room   string `json:"room,omitempty"`
	Nick   string `json:"nick,omitempty"`
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}
