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
// hello, gap, live, reset or error (wire.Type*; other types are passed on as
// they come, for forward compatibility); on the ComfyDeploy endpoint the
// status message (TypeStatus, with SID) or any other event by its name.
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
