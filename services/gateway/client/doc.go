// Package client connects Go programs to a framecast gateway's websocket
// endpoints: the native protocol at /v1/ws (sequence-stamped frames that can
// be resumed with since) and the ComfyDeploy-compatible protocol at
// /comfyui-deploy/ws (the seed node's 32-byte frame, no sequence).
//
// Dial opens one connection and Conn.Next reads its messages one by one:
// a *Frame for every image and a *Control for hello, gap, live, reset,
// error, the ComfyDeploy status message, and every ComfyUI execution event
// (Type wire.TypeEvent: Event, Data and, on the native endpoint, Seq).
//
// Sequences are comparable only within one stream epoch, which the hello
// names; a client resumes with Config.Since and the Config.Epoch it came
// from. Where that position does not exist in the stream as it is now (or
// the stream is recreated under a connection), the gateway sends a reset
// naming the new epoch and the sequence after which frames follow.
//
// Stream keeps a subscription alive across failures: it reconnects with
// exponential backoff and full jitter, fails over round robin across a list
// of gateways, resumes the native protocol with since=<the last sequence it
// handed to the application>&epoch=<its epoch>, and within an epoch never
// hands the application a frame or event whose sequence is not larger than
// the last one it got. Gap and reset messages are always passed on; after a
// reset, sequences start over from the reset's since.
//
//	s, err := client.NewStream(client.StreamConfig{
//		Config: client.Config{OutputID: "demo"},
//		URLs:   []string{"http://gw-a:8080", "http://gw-b:8080"},
//	})
//	err = s.Run(ctx, func(ctx context.Context, m client.Message) error {
//		switch m := m.(type) {
//		case *client.Frame:
//			// m.Seq, m.Header, m.Image
//		case *client.Control:
//			// m.Type == wire.TypeGap: frames m.From..m.To are lost
//			// m.Type == wire.TypeReset: sequences start over after
//			// *m.Since in epoch m.Epoch
//			// m.Type == wire.TypeEvent: ComfyUI event m.Event with
//			// m.Data ({"value":3,"max":20,…} for "progress")
//		}
//		return nil
//	})
package client
