// Package producer is framecast's ingest service: an HTTP API that takes
// a batch of images (raw pixels, one encoded image, or a multipart batch),
// encodes it as the seed ComfyUI node does, and publishes one JetStream
// message per image through package publish. It also publishes ComfyUI
// execution events, {"event": "<name>", "data": {...}}, one message each,
// beside the frames in the same stream.
//
// New connects to NATS and keeps reconnecting forever; the service starts
// and answers even while NATS is down (publishes then get 503 with
// Retry-After, /readyz reports 503) and recovers by itself when NATS
// returns, verifying the OUTPUTS stream after every (re)connect (with
// Config.EnsureStream, creating or updating it instead).
//
// Routes of Server.Handler:
//
//	POST /v1/outputs/{output_id}/images   publish a batch (see docs/producer.md)
//	POST /v1/events                        publish a ComfyUI execution event
//	GET  /healthz                          200 while the process runs
//	GET  /readyz                           200 when NATS is connected and the stream verified
//	GET  /metrics                          Prometheus metrics, framecast_producer_*
//
// The output_id path segment is read from the escaped path and unescaped
// once, so any printable id can be sent percent-encoded ("a%2Fb" is "a/b",
// "%2E" is "."). The handler routes /v1/outputs/ itself instead of through
// http.ServeMux, which cleans paths and would answer an empty or dot
// segment with a redirect instead of a 400.
package producer
