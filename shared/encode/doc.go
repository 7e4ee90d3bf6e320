// Package encode turns generated pixels into the encoded images that
// framecast publishes, matching the seed ComfyUI node, which calls PIL's
// save(format, quality=q, compress_level=1) on every image of a batch.
//
// # Pixels
//
// Raw input is 8-bit gray (1 channel), RGB (3) or RGBA (4), interleaved in
// H,W,C order: one [Pixels] per image. A ComfyUI IMAGE tensor (float32,
// B,H,W,C, values 0..1) is converted exactly as the seed converts it,
// uint8(clip(255*x, 0, 255)): the product is taken in float32 and then
// truncated, not rounded, so 1.0 → 255, 0.999 → 254, 0.5 → 127, values
// below 0 → 0 and above 1 → 255. NaN becomes 0 (numpy leaves NaN→uint8
// undefined; it is 0 on the x86 hosts the seed runs on). See [FromFloat32],
// [FromFloat32LE], [SplitFloat32LE] and [SplitUint8].
//
// # Two builds
//
// The lossy encoders are chosen at build time. By default they are pure
// Go (and libwebp under wazero, below), so CGO_ENABLED=0 builds work. With
// -tags turbo (and CGO_ENABLED=1) JPEG is encoded by libjpeg-turbo's
// TurboJPEG API and lossy WEBP by libwebp, through cgo, with PIL's settings:
// for the same pixels, format and quality the output is byte for byte
// PIL's (TestLossyMatchesPIL), at PIL's speed. The cgo build links the
// static archives of Debian's libturbojpeg0-dev and libwebp-dev (by name,
// -l:libturbojpeg.a -l:libwebp.a), so its binaries need neither library at
// run time; linked with -extldflags=-static they are fully static for the
// scratch images (mk/encode.mk). PNG and lossless WEBP are the same in
// both builds. [Accelerated] and [Backend] say which build this is. The
// turbo tag without cgo is a compile error, not a silent fallback.
//
// # Formats
//
//   - JPEG: image/jpeg at the requested quality (4:2:0 chroma, as PIL's
//     default), or with -tags turbo libjpeg-turbo as PIL calls it (4:2:0,
//     accurate integer DCT, baseline, standard Huffman tables). JPEG has
//     no alpha: the colour channels of an RGBA image are encoded as they
//     are and alpha is dropped.
//   - PNG: image/png with zlib's fastest level, as the seed's
//     compress_level=1; quality is ignored. Go's flate at BestSpeed is not
//     zlib level 1, so sizes differ from PIL's, but the pixels are exact.
//   - WEBP, quality 1..99: lossy, quality honoured, by libwebp 1.4.0
//     (github.com/gen2brain/webp v0.5.5), method 4 as PIL's default; with
//     -tags turbo by the system's libwebp with the same settings
//     (WEBP_PRESET_DEFAULT at the quality, method 4).
//   - WEBP, quality 100: lossless (VP8L) by the pure-Go encoder
//     github.com/HugoSmits86/nativewebp, so the decoded pixels are exact.
//     This differs from the seed, where PIL's quality=100 is still lossy.
//
// # Why gen2brain/webp
//
// It is the real libwebp compiled to WebAssembly and run by wazero, a
// pure-Go WebAssembly runtime: no cgo and no C toolchain, so binaries can be
// fully static, while quality and size behave exactly as PIL's, which calls
// libwebp too. On the benchmark image, q80 output is byte-identical to that
// of PIL 9.4 (Debian, libwebp 1.2.4). A pure-Go lossy VP8 encoder would not
// match PIL's quality scale. The cost is speed: about 4× native libwebp.
//
// Build with -tags nodynamic. Without it, gen2brain/webp links purego, which
// makes even a CGO_ENABLED=0 binary dynamically linked (it needs ld-linux
// and libc at run time), and at start-up it dlopens the system's libwebp.so
// if there is one and uses it instead of the embedded module. With
// CGO_ENABLED=0 -tags nodynamic the binary is static and always runs libwebp
// under wazero.
//
// The first WEBP encode or decode in a process compiles the WebAssembly
// module once (about 150 ms on a small host); every later call instantiates
// a fresh module instance from it, so concurrent calls share no mutable
// state.
//
// # Concurrency
//
// Every function in this package is safe for concurrent use. [Batch] runs
// its own workers and returns only after all of them have stopped. Nothing
// here logs.
package encode
