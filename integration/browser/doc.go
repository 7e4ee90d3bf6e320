// Package browser holds the end-to-end test of the web viewer: a real
// headless Chromium opens the viewer a gateway serves, and frames published
// through the producer must reach the page, across a gateway drain, with
// none missing. The tests skip when Chromium is absent.
package browser
