package producer

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/framecast/framecast/services/producer/publish"
	"github.com/framecast/framecast/shared/encode"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
)

// bodyKind is the form of a request body, from its Content-Type.
type bodyKind int

const (
	bodyRaw       bodyKind = iota + 1 // application/octet-stream pixels
	bodyImage                         // one encoded image
	bodyMultipart                     // multipart/form-data, one image per part
)

// maxSideWEBP is WEBP's limit on a side, checked early for raw pixels so
// a request WEBP cannot encode is refused before its body is read.
const maxSideWEBP = 16383

// mediaTypes is the list of accepted Content-Types, for error messages.
const mediaTypes = "application/octet-stream (raw pixels; query width, height, channels, dtype, batch), image/png, image/jpeg, image/webp, multipart/form-data"

// queryParams are the accepted query parameters, for error messages.
const queryParams = "client_id, file_type, quality, previews, batch_offset, batch_total, and for application/octet-stream: width, height, channels, dtype, batch"

// request is everything a publish request says outside its body.
type request struct {
	clientID  string
	format    frame.Format // requested encoding; default WEBP
	formatSet bool         // file_type was given
	quality   int
	kind      bodyKind
	declared  frame.Format // bodyImage: the Content-Type's format
	boundary  string       // bodyMultipart
	shape     encode.Shape // bodyRaw
	dtype     string       // bodyRaw: "uint8" or "float32"
	// batchOffset and batchTotal place the request's frames in a batch
	// sent in several requests; batchTotal 0 means the request is the
	// whole batch.
	batchOffset, batchTotal int
	// previews is the longest side of each image's preview, or 0 for no
	// previews.
	previews int
}

// elemSize is the size of one raw sample.
func (r request) elemSize() int {
	if r.dtype == "float32" {
		return 4
	}
	return 1
}

// rawSize is the exact body size of a raw request. parseRequest's limits
// keep it far below overflow: 2^26 pixels × 4 channels × 4 bytes × 4096.
func (r request) rawSize() int64 {
	s := r.shape
	return int64(s.Batch) * int64(s.Height) * int64(s.Width) * int64(s.Channels) * int64(r.elemSize())
}

var rawParams = []string{"width", "height", "channels", "dtype", "batch"}

// parseRequest reads and validates the query and Content-Type of a publish
// request. It allocates nothing in proportion to the sizes it is given.
func parseRequest(rawQuery, contentType string) (request, *apiError) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return request{}, errorf(http.StatusBadRequest, CodeInvalidQuery, "query is not valid URL encoding (%v); allowed parameters: %s", err, queryParams)
	}
	for k, vs := range q {
		switch k {
		case "client_id", "file_type", "quality", "previews", "batch_offset", "batch_total", "width", "height", "channels", "dtype", "batch":
		default:
			return request{}, errorf(http.StatusBadRequest, CodeInvalidQuery, "unknown query parameter %q; allowed: %s", k, queryParams)
		}
		if len(vs) > 1 {
			return request{}, errorf(http.StatusBadRequest, CodeInvalidQuery, "query parameter %q is given %d times; give it once", k, len(vs))
		}
	}
	r := request{format: publish.DefaultFormat, quality: publish.DefaultQuality}
	r.clientID = q.Get("client_id")
	if err := subject.ValidateClientID(r.clientID); err != nil {
		return request{}, errorf(http.StatusBadRequest, CodeInvalidClientID, "%s", strings.TrimPrefix(err.Error(), subject.ErrInvalidID.Error()+": "))
	}
	if q.Has("file_type") {
		f, err := frame.ParseFormat(q.Get("file_type"))
		if err != nil {
			return request{}, errorf(http.StatusBadRequest, CodeInvalidFileType, "file_type %q is unknown; allowed: webp, png, jpeg (any case)", q.Get("file_type"))
		}
		r.format, r.formatSet = f, true
	}
	if q.Has("quality") {
		v, err := strconv.Atoi(q.Get("quality"))
		if err != nil || v < 1 || v > 100 {
			return request{}, errorf(http.StatusBadRequest, CodeInvalidQuality, "quality %q is not allowed; allowed: an integer 1..100 (default %d)", q.Get("quality"), publish.DefaultQuality)
		}
		r.quality = v
	}
	if q.Has("previews") {
		v, err := strconv.Atoi(q.Get("previews"))
		if err != nil || v < publish.MinPreview || v > publish.MaxPreview {
			return request{}, errorf(http.StatusBadRequest, CodeInvalidPreviews, "previews %q is not allowed; allowed: an integer %d..%d, the longest side in pixels of each image's preview", q.Get("previews"), publish.MinPreview, publish.MaxPreview)
		}
		r.previews = v
	}
	if e := r.parsePart(q); e != nil {
		return request{}, e
	}

	if contentType == "" {
		return request{}, errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type is missing; allowed: %s", mediaTypes)
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return request{}, errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type %q does not parse (%v); allowed: %s", contentType, err, mediaTypes)
	}
	switch mt {
	case "application/octet-stream":
		r.kind = bodyRaw
	case "multipart/form-data":
		r.kind = bodyMultipart
		r.boundary = params["boundary"]
		if r.boundary == "" {
			return request{}, errorf(http.StatusBadRequest, CodeInvalidBody, "multipart/form-data needs a boundary parameter in Content-Type")
		}
	default:
		f, err := frame.FormatOf(mt)
		if err != nil {
			return request{}, errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type %q is not accepted; allowed: %s", mt, mediaTypes)
		}
		r.kind, r.declared = bodyImage, f
	}
	if r.kind != bodyRaw {
		for _, k := range rawParams {
			if q.Has(k) {
				return request{}, errorf(http.StatusBadRequest, CodeInvalidQuery, "query parameter %q applies only to application/octet-stream bodies; allowed here: client_id, file_type, quality, previews, batch_offset, batch_total", k)
			}
		}
		return r, nil
	}
	return r, r.parseShape(q)
}

func (r *request) parseShape(q url.Values) *apiError {
	dim := func(name string, lo, hi, def int) (int, *apiError) {
		if !q.Has(name) {
			if def > 0 {
				return def, nil
			}
			return 0, errorf(http.StatusBadRequest, CodeInvalidShape, "%s is required for application/octet-stream; allowed: %d..%d", name, lo, hi)
		}
		v, err := strconv.Atoi(q.Get(name))
		if err != nil || v < lo || v > hi {
			return 0, errorf(http.StatusBadRequest, CodeInvalidShape, "%s %q is not allowed; allowed: an integer %d..%d", name, q.Get(name), lo, hi)
		}
		return v, nil
	}
	var e *apiError
	if r.shape.Width, e = dim("width", 1, frame.MaxDimension, 0); e != nil {
		return e
	}
	if r.shape.Height, e = dim("height", 1, frame.MaxDimension, 0); e != nil {
		return e
	}
	if r.shape.Batch, e = dim("batch", 1, frame.MaxBatch, 1); e != nil {
		return e
	}
	w, h := r.shape.Width, r.shape.Height
	if w > encode.MaxPixels/h {
		return errorf(http.StatusBadRequest, CodeInvalidShape, "width %d × height %d is %d pixels; allowed: at most %d pixels per image", w, h, int64(w)*int64(h), encode.MaxPixels)
	}
	if r.format == frame.WEBP && (w > maxSideWEBP || h > maxSideWEBP) {
		return errorf(http.StatusBadRequest, CodeInvalidShape, "%dx%d is over WEBP's limit of %d per side; allowed: a smaller image, or file_type png or jpeg", w, h, maxSideWEBP)
	}
	switch c := q.Get("channels"); c {
	case "1", "3", "4":
		r.shape.Channels = int(c[0] - '0')
	case "":
		return errorf(http.StatusBadRequest, CodeInvalidShape, "channels is required for application/octet-stream; allowed: 1 (gray), 3 (RGB), 4 (RGBA)")
	default:
		return errorf(http.StatusBadRequest, CodeInvalidShape, "channels %q is not allowed; allowed: 1 (gray), 3 (RGB), 4 (RGBA)", c)
	}
	switch d := strings.ToLower(q.Get("dtype")); d {
	case "uint8", "float32":
		r.dtype = d
	case "":
		return errorf(http.StatusBadRequest, CodeInvalidDType, "dtype is required for application/octet-stream; allowed: uint8, float32 (little-endian, 0..1)")
	default:
		return errorf(http.StatusBadRequest, CodeInvalidDType, "dtype %q is not allowed; allowed: uint8, float32 (little-endian, 0..1)", q.Get("dtype"))
	}
	return r.checkPart(r.shape.Batch)
}

// parsePart reads batch_offset and batch_total, which say that the
// request's frames are frames batch_offset.. of a batch of batch_total
// that a client split over several requests.
func (r *request) parsePart(q url.Values) *apiError {
	if !q.Has("batch_total") {
		if q.Has("batch_offset") {
			return errorf(http.StatusBadRequest, CodeInvalidBatch, "batch_offset needs batch_total, the size of the whole batch; allowed: both, batch_total alone (offset 0), or neither")
		}
		return nil
	}
	total, err := strconv.Atoi(q.Get("batch_total"))
	if err != nil || total < 1 || total > frame.MaxBatch {
		return errorf(http.StatusBadRequest, CodeInvalidBatch, "batch_total %q is not allowed; allowed: an integer 1..%d, the size of the whole batch", q.Get("batch_total"), frame.MaxBatch)
	}
	offset := 0
	if q.Has("batch_offset") {
		offset, err = strconv.Atoi(q.Get("batch_offset"))
		if err != nil || offset < 0 || offset >= total {
			return errorf(http.StatusBadRequest, CodeInvalidBatch, "batch_offset %q is not allowed; allowed: an integer 0..%d (below batch_total %d)", q.Get("batch_offset"), total-1, total)
		}
	}
	r.batchOffset, r.batchTotal = offset, total
	return nil
}

// checkPart checks that the request's n frames fit the batch that
// batch_offset and batch_total place them in.
func (r request) checkPart(n int) *apiError {
	if r.batchTotal > 0 && r.batchOffset+n > r.batchTotal {
		return errorf(http.StatusBadRequest, CodeInvalidBatch, "batch_offset %d + %d frames is %d, over batch_total %d; allowed: batch_offset + the request's frames <= batch_total",
			r.batchOffset, n, r.batchOffset+n, r.batchTotal)
	}
	return nil
}

// isTooLarge reports whether err came from http.MaxBytesReader.
func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
