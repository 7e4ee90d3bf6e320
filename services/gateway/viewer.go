package gateway

import (
	"net/http"

	"github.com/framecast/framecast/services/gateway/web"
)

// mountViewer serves the web viewer at / and the ES module client at
// /framecast.js.
func mountViewer(mux *http.ServeMux) {
	mux.Handle("GET /", web.Handler())
}
