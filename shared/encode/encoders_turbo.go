//go:build turbo && cgo

package encode

// The archives are named rather than found with -lturbojpeg -lwebp so the
// libraries are linked in statically even when libc is not: every binary
// built with -tags turbo encodes with the libjpeg-turbo and libwebp it was
// built against and needs neither at run time. Debian: libturbojpeg0-dev,
// libwebp-dev (tools/deps.sh).

/*
#cgo LDFLAGS: -l:libturbojpeg.a -l:libwebp.a -lm -lpthread
#include <stdio.h>
#include <turbojpeg.h>
#include <webp/encode.h>

// fc_jpeg compresses one image with a handle of its own: TurboJPEG handles
// are not safe for concurrent use. On success *out holds *size bytes that
// the caller frees with tjFree; on failure err holds libjpeg-turbo's
// message (up to errlen bytes) and -1 is returned.
static int fc_jpeg(const unsigned char* pix, int w, int pitch, int h, int pf,
		int subsamp, int quality, unsigned char** out, unsigned long* size,
		char* err, int errlen) {
	tjhandle tj = tjInitCompress();
	if (tj == NULL) {
		snprintf(err, errlen, "%s", tjGetErrorStr2(NULL));
		return -1;
	}
	*out = NULL;
	*size = 0;
	int rc = tjCompress2(tj, pix, w, pitch, h, pf, out, size, subsamp, quality,
		TJFLAG_ACCURATEDCT);
	if (rc != 0) {
		snprintf(err, errlen, "%s", tjGetErrorStr2(tj));
		tjFree(*out);
		*out = NULL;
	}
	tjDestroy(tj);
	return rc;
}

// fc_webp encodes one image lossy as PIL does: WEBP_PRESET_DEFAULT at
// quality, then the given method. alpha says whether pix is straight RGBA
// (otherwise RGBX, the fourth byte ignored). It returns VP8_ENC_OK (0)
// with the output in *wr, which the caller clears with
// WebPMemoryWriterClear, or a WebPEncodingError; -1 means the installed
// libwebp does not match the headers.
static int fc_webp(const uint8_t* pix, int w, int h, int stride, int alpha,
		float quality, int method, WebPMemoryWriter* wr) {
	WebPConfig config;
	WebPPicture pic;
	if (!WebPConfigPreset(&config, WEBP_PRESET_DEFAULT, quality) || !WebPPictureInit(&pic)) {
		return -1;
	}
	config.method = method;
	if (!WebPValidateConfig(&config)) {
		return VP8_ENC_ERROR_INVALID_CONFIGURATION;
	}
	pic.width = w;
	pic.height = h;
	WebPMemoryWriterInit(wr);
	pic.writer = WebPMemoryWrite;
	pic.custom_ptr = wr;
	int ok = alpha ? WebPPictureImportRGBA(&pic, pix, stride) : WebPPictureImportRGBX(&pic, pix, stride);
	if (ok) {
		ok = WebPEncode(&config, &pic);
	}
	int rc = ok ? VP8_ENC_OK : (pic.error_code != VP8_ENC_OK ? pic.error_code : VP8_ENC_ERROR_OUT_OF_MEMORY);
	WebPPictureFree(&pic);
	if (rc != VP8_ENC_OK) {
		WebPMemoryWriterClear(wr);
	}
	return rc;
}
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"unsafe"
)

// Accelerated reports whether JPEG and lossy WEBP are encoded by the
// system's libjpeg-turbo and libwebp through cgo (-tags turbo) rather than
// by the pure-Go fallback.
const Accelerated = true

// Backend names the encoders this binary was built with.
func Backend() string {
	v := int(C.WebPGetEncoderVersion())
	return fmt.Sprintf("cgo: libjpeg-turbo (TurboJPEG), libwebp %d.%d.%d; nativewebp for lossless WEBP", v>>16, v>>8&0xff, v&0xff)
}

// plane is an image's pixels as both C libraries read them: rows of
// stride bytes from pix[0], each pixel one byte (gray) or four (RGBX or
// straight RGBA).
type plane struct {
	pix    []uint8
	stride int
	w, h   int
	gray   bool
	alpha  bool // straight RGBA; otherwise the fourth byte is ignored
}

// direct returns the pixels of an *image.RGBA, *image.NRGBA or
// *image.Gray, a sub-image too, in place; ok is false for other types.
// Alpha is left unset: each encoder says what the fourth byte means.
func direct(img image.Image) (p plane, ok bool) {
	b := img.Bounds()
	p.w, p.h = b.Dx(), b.Dy()
	switch m := img.(type) {
	case *image.RGBA:
		p.pix, p.stride = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride
	case *image.NRGBA:
		p.pix, p.stride = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride
	case *image.Gray:
		p.pix, p.stride, p.gray = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, true
	default:
		return p, false
	}
	return p, true
}

// drawn copies img into a new tight image: premultiplied RGBA when
// straight is false (what image/jpeg reads from other types), straight
// NRGBA when it is true.
func drawn(img image.Image, straight bool) plane {
	b := img.Bounds()
	r := image.Rect(0, 0, b.Dx(), b.Dy())
	var dst draw.Image = image.NewRGBA(r)
	if straight {
		dst = image.NewNRGBA(r)
	}
	draw.Draw(dst, r, img, b.Min, draw.Src)
	p, _ := direct(dst)
	p.alpha = straight
	return p
}

// encodeJPEG compresses as PIL's defaults do: libjpeg's accurate integer
// DCT, 4:2:0 chroma (gray stays one channel), baseline, no optimised
// Huffman tables. Alpha is dropped: RGBA and NRGBA are read as RGBX, as
// the pure-Go encoder reads them.
func encodeJPEG(buf *bytes.Buffer, img image.Image, quality int) error {
	p, ok := direct(img)
	if !ok {
		p = drawn(img, false)
	}
	pf, samp := C.int(C.TJPF_RGBX), C.int(C.TJSAMP_420)
	if p.gray {
		pf, samp = C.TJPF_GRAY, C.TJSAMP_GRAY
	}
	var (
		out  *C.uchar
		size C.ulong
		msg  [200]C.char
	)
	rc := C.fc_jpeg((*C.uchar)(unsafe.Pointer(&p.pix[0])), C.int(p.w), C.int(p.stride), C.int(p.h), pf, samp,
		C.int(quality), &out, &size, &msg[0], C.int(len(msg)))
	if rc != 0 {
		return fmt.Errorf("libjpeg-turbo: %s", C.GoString(&msg[0]))
	}
	defer C.tjFree(out)
	buf.Write(unsafe.Slice((*byte)(unsafe.Pointer(out)), int(size)))
	return nil
}

// encodeWEBP encodes lossy with libwebp as PIL's WEBP save does. Opaque
// RGBA goes in as RGBX and NRGBA as straight RGBA, both in place; gray
// (which PIL converts to RGB first), translucent premultiplied RGBA and
// other types are copied to NRGBA. libwebp writes no alpha channel for an
// image whose alpha is 255 everywhere.
func encodeWEBP(buf *bytes.Buffer, img image.Image, quality int) error {
	p, ok := direct(img)
	switch m := img.(type) {
	case *image.NRGBA:
		p.alpha = true
	case *image.RGBA:
		ok = m.Opaque()
	default:
		ok = false
	}
	if !ok {
		p = drawn(img, true)
	}
	alpha := C.int(0)
	if p.alpha {
		alpha = 1
	}
	var wr C.WebPMemoryWriter
	rc := C.fc_webp((*C.uint8_t)(unsafe.Pointer(&p.pix[0])), C.int(p.w), C.int(p.h), C.int(p.stride), alpha,
		C.float(quality), webpMethod, &wr)
	if rc != C.VP8_ENC_OK {
		return webpError(int(rc))
	}
	defer C.WebPMemoryWriterClear(&wr)
	buf.Write(unsafe.Slice((*byte)(unsafe.Pointer(wr.mem)), int(wr.size)))
	return checkRIFF(buf.Bytes())
}

// webpError turns fc_webp's code into an error.
func webpError(rc int) error {
	var msg string
	switch rc {
	case -1:
		msg = "the linked libwebp does not match the headers it was built with"
	case C.VP8_ENC_ERROR_OUT_OF_MEMORY, C.VP8_ENC_ERROR_BITSTREAM_OUT_OF_MEMORY:
		msg = "out of memory"
	case C.VP8_ENC_ERROR_INVALID_CONFIGURATION:
		msg = "invalid configuration"
	case C.VP8_ENC_ERROR_BAD_DIMENSION:
		msg = "bad dimension"
	case C.VP8_ENC_ERROR_PARTITION0_OVERFLOW, C.VP8_ENC_ERROR_PARTITION_OVERFLOW:
		msg = "partition overflow"
	case C.VP8_ENC_ERROR_FILE_TOO_BIG:
		msg = "output over 4 GiB"
	default:
		msg = fmt.Sprintf("error %d", rc)
	}
	return errors.New("libwebp: " + msg)
}
