package producer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Error codes of the HTTP API. They are stable: clients may switch on them.
const (
	CodeInvalidOutputID      = "invalid_output_id"
	CodeInvalidClientID      = "invalid_client_id"
	CodeInvalidQuery         = "invalid_query"
	CodeInvalidQuality       = "invalid_quality"
	CodeInvalidFileType      = "invalid_file_type"
	CodeInvalidShape         = "invalid_shape"
	CodeInvalidDType         = "invalid_dtype"
	CodeInvalidBatch         = "invalid_batch"
	CodeInvalidPreviews      = "invalid_previews"
	CodeInvalidBody          = "invalid_body"
	CodeInvalidImage         = "invalid_image"
	CodeInvalidIdempotency   = "invalid_idempotency_key"
	CodeInvalidEvent         = "invalid_event"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeBodyTooLarge         = "body_too_large"
	CodeImageTooLarge        = "image_too_large"
	CodeFrameTooLarge        = "frame_too_large"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeBrokerUnavailable    = "broker_unavailable"
	CodeOverloaded           = "overloaded"
	CodeBodyTimeout          = "body_timeout"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeNotFound             = "not_found"
	CodeInternal             = "internal"
)

// apiError is an error answer: its status, code and message, and for a
// batch that was published in part, the frames that were stored.
type apiError struct {
	status    int
	code      string
	message   string
	published []ResponseFrame
	// retry asks for a Retry-After header (503).
	retry bool
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// ErrorResponse is every error answer of the API.
type ErrorResponse struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		// Published lists the frames that were stored when a batch failed
		// part way; it is absent otherwise.
		Published []ResponseFrame `json:"published,omitempty"`
	} `json:"error"`
}

func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	s.metrics.errors.WithLabelValues(e.code).Inc()
	var b ErrorResponse
	b.Error.Code, b.Error.Message, b.Error.Published = e.code, e.message, e.published
	if e.retry {
		w.Header().Set("Retry-After", strconv.Itoa(s.retryAfter))
	}
	writeJSON(w, e.status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // messages quote "<name>" and the like as written
	_ = enc.Encode(v)
}
