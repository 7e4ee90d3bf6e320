package producer

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/framecast/framecast/services/producer/publish"
)

// A batch stopped part way answers by its cause: a broker failure may pass
// on retry (503, retry), a frame the broker refuses for its size will not
// (413, no retry); both list the frames stored.
func TestPublishErrorOfPartialBatch(t *testing.T) {
	stored := []publish.Ack{{Seq: 7, BatchIndex: 0, Bytes: 10}}
	tests := []struct {
		name   string
		err    error
		status int
		code   string
		retry  bool
		says   string
	}{
		{"broker away", fmt.Errorf("%w: not connected", publish.ErrUnavailable), http.StatusServiceUnavailable, CodeBrokerUnavailable, true, "retry with the same Idempotency-Key"},
		{"frame over max_payload", fmt.Errorf("%w: nats: maximum payload exceeded", publish.ErrFrameTooLarge), http.StatusRequestEntityTooLarge, CodeFrameTooLarge, false, "the frames listed in published were stored"},
	}
	var s Server
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := &publish.PartialError{Published: stored, Failed: 1, Total: 3, Err: tt.err}
			e := s.publishError(err, "key")
			if e.status != tt.status || e.code != tt.code || e.retry != tt.retry {
				t.Errorf("got %d %s retry=%v; want %d %s retry=%v", e.status, e.code, e.retry, tt.status, tt.code, tt.retry)
			}
			if !strings.Contains(e.message, tt.says) || !strings.Contains(e.message, "published 1 of 3 frames") {
				t.Errorf("message %q; want it to say %q and what was published", e.message, tt.says)
			}
			if len(e.published) != 1 || e.published[0].Seq != 7 {
				t.Errorf("published = %+v; want the frame stored at seq 7", e.published)
			}
		})
	}
}

// An event the broker did not take answers by its cause, as a batch does.
func TestEventError(t *testing.T) {
	tests := []struct {
		name, key, code, says string
		err                   error
		status                int
		retry                 bool
	}{
		{"broker away, key", "k", CodeBrokerUnavailable, "retry with the same Idempotency-Key", fmt.Errorf("%w: not connected", publish.ErrUnavailable), 503, true},
		{"broker away, no key", "", CodeBrokerUnavailable, "send an Idempotency-Key", fmt.Errorf("%w: no acknowledgement in time", publish.ErrUnavailable), 503, true},
		{"over max_payload", "", CodeBodyTooLarge, "at most 800 bytes per message; nothing was published", fmt.Errorf("%w: the event is 900 bytes with headers; the broker accepts at most 800 bytes per message", publish.ErrFrameTooLarge), 413, false},
		{"invalid", "", CodeInvalidEvent, `"event" is empty; nothing was published`, fmt.Errorf("%w: \"event\" is empty", publish.ErrInvalidEvent), 400, false},
		{"other", "", CodeInternal, "boom", fmt.Errorf("boom"), 500, false},
	}
	var s Server
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := s.eventError(tt.err, tt.key)
			if e.status != tt.status || e.code != tt.code || e.retry != tt.retry || !strings.Contains(e.message, tt.says) {
				t.Errorf("got %d %s retry=%v %q; want %d %s retry=%v saying %q", e.status, e.code, e.retry, e.message, tt.status, tt.code, tt.retry, tt.says)
			}
		})
	}
}
