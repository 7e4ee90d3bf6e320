package producer

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/framecast/framecast/services/producer/publish"
	"github.com/framecast/framecast/shared/subject"
)

const eventsPath = "/v1/events"

// EventResponse is the 200 answer of POST /v1/events.
type EventResponse struct {
	ClientID string `json:"client_id"`
	Event    string `json:"event"`
	Seq      uint64 `json:"seq"`
	// Duplicate is set when an idempotent retry found the event already
	// stored; Seq is then the sequence of the first attempt.
	Duplicate bool `json:"duplicate,omitempty"`
}

// serveEvents handles /v1/events: one ComfyUI execution event, published
// like a frame to subject.Events(client_id).
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	var e *apiError
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		e = errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method %s is not allowed on %s; allowed: POST", r.Method, r.URL.Path)
	}
	if e == nil {
		e = s.authorize(w, r)
	}
	if e == nil {
		e = s.publishEvent(w, r)
	}
	if e != nil {
		if e.status >= 500 {
			s.log.Warn("event request failed", "path", r.URL.Path, "code", e.code, "err", e.message)
		}
		s.writeError(w, e)
	}
}

func (s *Server) publishEvent(w http.ResponseWriter, r *http.Request) *apiError {
	cid, e := eventQuery(r.URL.RawQuery)
	if e != nil {
		return e
	}
	if e := eventContentType(r.Header.Get("Content-Type")); e != nil {
		return e
	}
	key, e := idempotencyKey(r.Header)
	if e != nil {
		return e
	}
	limit := min(s.cfg.MaxBodyBytes, publish.MaxEvent)
	if r.ContentLength > limit {
		return errorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "the event is %d bytes; the limit is %d bytes", r.ContentLength, limit)
	}
	if !s.Ready() {
		return s.unavailable()
	}
	l := s.newLease()
	defer l.release()
	b, err := l.read(r.Context(), http.MaxBytesReader(w, r.Body, limit), nil, 0)
	if err != nil {
		return bodyError(err, limit, "the event")
	}
	// An event that started publishing is finished even if the client
	// leaves; the publish timeout bounds it.
	start := time.Now()
	ack, err := s.pub.Event(context.WithoutCancel(r.Context()), publish.Event{ClientID: cid, JSON: b, IdempotencyKey: key})
	s.metrics.publish.Observe(time.Since(start).Seconds())
	if err != nil {
		return s.eventError(err, key)
	}
	if !ack.Duplicate {
		s.metrics.events.Inc()
	}
	writeJSON(w, http.StatusOK, EventResponse{ClientID: cid, Event: ack.Name, Seq: ack.Seq, Duplicate: ack.Duplicate})
	return nil
}

// eventQuery reads the query of an event request: client_id at most.
func eventQuery(rawQuery string) (string, *apiError) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", errorf(http.StatusBadRequest, CodeInvalidQuery, "query is not valid URL encoding (%v); allowed parameters: client_id", err)
	}
	for k, vs := range q {
		if k != "client_id" {
			return "", errorf(http.StatusBadRequest, CodeInvalidQuery, "unknown query parameter %q; allowed: client_id", k)
		}
		if len(vs) > 1 {
			return "", errorf(http.StatusBadRequest, CodeInvalidQuery, "query parameter %q is given %d times; give it once", k, len(vs))
		}
	}
	cid := q.Get("client_id")
	if err := subject.ValidateClientID(cid); err != nil {
		return "", errorf(http.StatusBadRequest, CodeInvalidClientID, "%s", strings.TrimPrefix(err.Error(), subject.ErrInvalidID.Error()+": "))
	}
	return cid, nil
}

// eventContentType accepts application/json, with no parameter but an
// optional charset=utf-8.
func eventContentType(ct string) *apiError {
	const allowed = "allowed: application/json (optionally ; charset=utf-8)"
	if ct == "" {
		return errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type is missing; %s", allowed)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type %q does not parse (%v); %s", ct, err, allowed)
	}
	if mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type %q is not accepted; %s", mt, allowed)
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type parameter %s=%q is not accepted; %s", k, v, allowed)
		}
	}
	return nil
}

// idempotencyKey reads the optional Idempotency-Key header.
func idempotencyKey(h http.Header) (string, *apiError) {
	vs := h.Values("Idempotency-Key")
	if len(vs) == 0 {
		return "", nil
	}
	if len(vs) > 1 {
		return "", errorf(http.StatusBadRequest, CodeInvalidIdempotency, "Idempotency-Key is given %d times; give it once", len(vs))
	}
	if err := publish.ValidateKey(vs[0]); err != nil {
		return "", errorf(http.StatusBadRequest, CodeInvalidIdempotency, "%s", strings.TrimPrefix(err.Error(), publish.ErrInvalid.Error()+": "))
	}
	return vs[0], nil
}

func (s *Server) eventError(err error, key string) *apiError {
	switch {
	case errors.Is(err, publish.ErrFrameTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "%s; nothing was published", strings.TrimPrefix(err.Error(), publish.ErrFrameTooLarge.Error()+": "))
	case errors.Is(err, publish.ErrInvalidEvent):
		return errorf(http.StatusBadRequest, CodeInvalidEvent, "%s; nothing was published", strings.TrimPrefix(err.Error(), publish.ErrInvalidEvent.Error()+": "))
	case errors.Is(err, publish.ErrUnavailable):
		e := errorf(http.StatusServiceUnavailable, CodeBrokerUnavailable, "%v", err)
		if key != "" {
			e.message += "; retry with the same Idempotency-Key to publish it without a duplicate"
		} else {
			e.message += "; send an Idempotency-Key to make a retry safe from duplicates"
		}
		e.retry = true
		return e
	}
	return errorf(http.StatusInternalServerError, CodeInternal, "%v", err)
}
