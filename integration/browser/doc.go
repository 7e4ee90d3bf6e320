// Package browser holds the end-to-end test of the web viewer: a real
// headless Chromium opens the viewer a gateway serves, and frames published
// through the producer must reach the page, across a gateway drain, with
// none missing. The tests fail when Chromium is absent (make deps installs
// it) and skip only with FRAMECAST_SKIP_BROWSER=1.
package browser
