// Package interop holds tests that put independent, third-party XMPP clients
// in front of keyfocus on a real Prosody: xmpp.js over c2s TCP and strophe.js
// (the library lib-jitsi-meet is built on) over websocket. The Node scripts in
// js/ send what lib-jitsi-meet sends and read the answers the way it reads
// them; the Go tests start Prosody and the real focus, run the scripts and
// turn their verdict into test results. See js/README.md.
package interop
