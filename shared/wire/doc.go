// Package wire encodes and decodes the gateway's websocket messages: the
// native frame (length-prefixed JSON header, then the image), the seed
// node's ComfyDeploy frame (32-byte binary header, then the image), and the
// native protocol's JSON control messages.
//
// Decoders take untrusted input: they never panic and never allocate more
// than the message they are given.
package wire
