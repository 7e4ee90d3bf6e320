// Package gateway is framecast's websocket edge. It serves the native
// protocol at /v1/ws and the ComfyDeploy-compatible protocol at
// /comfyui-deploy/ws, subscribes to live frame subjects by interest (one
// NATS subscription per subject, shared by every connection on it),
// replays missed frames from the OUTPUTS stream, and keeps slow clients
// from slowing anyone else.
//
// A Server owns its goroutines: one dispatcher, one stream-ensuring loop
// at start, and per connection the HTTP handler goroutine (the writer) and
// one reader. Drain or Close ends them all.
package gateway
