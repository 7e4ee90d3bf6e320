package gateway

import (
	"net/url"

	"github.com/framecast/framecast/services/gateway/hub"
	"github.com/framecast/framecast/services/gateway/replay"
)

// parseRenditions reads the native endpoint's rendition parameter: full
// (the default: the images as published), preview, or all (each preview
// just before its full frame). The ComfyDeploy endpoint has no such
// parameter and never sends previews: the seed's clients could not tell
// a preview from the image.
func parseRenditions(q url.Values) (hub.Renditions, *httpError) {
	switch v := q.Get("rendition"); v {
	case "", "full":
		return hub.FullOnly, nil
	case "preview":
		return hub.PreviewsOnly, nil
	case "all":
		return hub.AllRenditions, nil
	default:
		return 0, badRequest("rendition %q is unknown; allowed: full (the default), preview, all", v)
	}
}

// lastPick is what last=n counts for a connection taking rs: its
// rendition's frames, and with both the full frames, each read with its
// preview.
func lastPick(rs hub.Renditions) replay.Pick {
	switch rs {
	case hub.PreviewsOnly:
		return replay.Pick{Previews: true}
	case hub.AllRenditions:
		return replay.Pick{WithPreviews: true}
	}
	return replay.Pick{}
}
