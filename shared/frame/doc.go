// Package frame describes one published image: its format and the metadata
// that travels with it in NATS headers.
//
// A frame's NATS message body is the encoded image; Meta rides in headers so
// that a gateway can build the wire header without touching the body.
package frame
