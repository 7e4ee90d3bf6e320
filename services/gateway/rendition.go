package gateway

import (
	"net/url"

	"github.com/framecast/framecast/services/gateway/replay"
)

// parseRenditions reads the native endpoint's rendition parameter: full
// (the default: the images as published), preview, or all (each preview
// just before its full frame). The ComfyDeploy endpoint has no such
// parameter and never sends previews: the seed's clients could not tell
// a preview from the image.
func parseRenditions(q url.Values) (replay.Renditions, *httpError) {
	switch v := q.Get("rendition"); v {
	case "", "full":
		return replay.FullOnly, nil
	case "preview":
		return replay.PreviewsOnly, nil
	case "all":
		return replay.AllRenditions, nil
	default:
		return 0, badRequest("rendition %q is unknown; allowed: full (the default), preview, all", v)
	}
}
