//go:build turbo && !cgo

package encode

// The turbo tag links libjpeg-turbo and libwebp through cgo: build with
// CGO_ENABLED=1 (and gcc), or without the tag for the pure-Go encoders.
// The undefined name below makes the mistake a compile error, not a
// silent fallback.
var _ = theTurboTagNeedsCGOEnabled1
