package client

import (
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/wire"
)

// TypeStatus is the Control type of the ComfyDeploy endpoint's first
// message, {"event":"status","data":{"sid":"<id>"}}.
const TypeStatus = "status"

// Message is what Conn.Next returns: a *Frame or a *Control.
type Message interface {
	message()
}

// Frame is one image.
type Frame struct {
	// Seq is the frame's stream sequence. ComfyDeploy frames carry none: it
	// is 0 for them.
	Seq uint64
	// Header is the native frame's header. For a ComfyDeploy frame only
	// OutputID and ContentType are set.
	Header wire.Header
	// Format is the image encoding.
	Format frame.Format
	// OutputID is the output the frame belongs to.
	OutputID string
	// Image is the encoded image. It belongs to the receiver.
	Image []byte
}

// Control is a text message of either protocol: on the native endpoint
// hello, gap, live, reset, error or event (wire.Type*; other types are
// passed on as they come, for forward compatibility); on the ComfyDeploy
// endpoint the gateway's status message (TypeStatus, with SID) or an event.
//
// An event (wire.TypeEvent) is a ComfyUI execution event the producer took
// for this client id or for every client: Event is its name ("progress",
// "executing", "status", …) and Data its data object as the producer took
// it: byte for byte on the ComfyDeploy endpoint, the same JSON value
// re-encoded compactly (json.Marshal) on the native one, whose control
// message carries it. On the native endpoint *Seq is its stream sequence
// (Conn.Next refuses an event without one), in the same sequence as the
// frames': it comes in stream order with them and a resume with Since
// replays it. On the ComfyDeploy endpoint Seq is nil, and every text
// message after the gateway's first status is an event, ComfyUI's own
// status events (queue length) included.
//
// A reset (Epoch, *Since and Message set; Conn.Next refuses one without
// Since) says that the frames that follow are those after Since in stream
// epoch Epoch: the sequences were not comparable with the resume point the
// connection asked for, or the stream was recreated under it, so sequences
// may start over below those received before.
type Control struct {
	wire.Control
	// SID is the session id of a ComfyDeploy status message: the clientId
	// the gateway registered the socket under.
	SID string
}

func (*Frame) message()   {}
func (*Control) message() {}
