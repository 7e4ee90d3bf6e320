package stream

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Errors of Verify; a *VerifyError matches both that apply to it.
var (
	// ErrMissing: the stream or its bucket does not exist.
	ErrMissing = errors.New("stream missing")
	// ErrMismatch: the stream or its bucket exists with other settings.
	ErrMismatch = errors.New("stream settings differ")
)

// Difference is one setting of a stream that differs from a Config.
type Difference struct {
	// Stream is the JetStream stream: OUTPUTS, or the bucket's
	// OBJ_OUTPUTS_LARGE.
	Stream string
	// Field is the setting's name in the JetStream API (and nats stream
	// info --json): max_age, max_bytes, num_replicas...
	Field string
	// Want is the Config's value, Have the stream's.
	Want, Have string
}

func (d Difference) String() string {
	return fmt.Sprintf("%s %s: want %s, have %s", d.Stream, d.Field, d.Want, d.Have)
}

// VerifyError is what Verify found wrong: the streams that do not exist
// and every setting that differs.
type VerifyError struct {
	Missing     []string // stream names
	Differences []Difference
}

func (e *VerifyError) Error() string {
	var parts []string
	for _, m := range e.Missing {
		parts = append(parts, "stream "+m+" does not exist")
	}
	for _, d := range e.Differences {
		parts = append(parts, d.String())
	}
	return strings.Join(parts, "; ") + " (an administrative identity applies the settings: framecast stream ensure)"
}

// Is matches ErrMissing when a stream is missing and ErrMismatch when a
// setting differs.
func (e *VerifyError) Is(target error) bool {
	return (target == ErrMissing && len(e.Missing) > 0) || (target == ErrMismatch && len(e.Differences) > 0)
}

// Verify checks, without changing anything, that the stream and its
// large-frame bucket exist with c's settings: the ones Ensure applies.
// It needs only STREAM.INFO on both, so that the services run with users
// that cannot create, change, purge or delete either stream. The error is
// a *VerifyError naming every missing stream and differing setting,
// ErrInvalidConfig, or the lookup's own error (NATS unreachable, no
// JetStream).
func Verify(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Stream, error) {
	sc, err := c.StreamConfig()
	if err != nil {
		return nil, err
	}
	oc, err := c.ObjectStoreConfig()
	if err != nil {
		return nil, err
	}
	var verr VerifyError
	s, err := js.Stream(ctx, sc.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		verr.Missing = append(verr.Missing, sc.Name)
	case err != nil:
		return nil, fmt.Errorf("verify stream %s: %w", sc.Name, err)
	default:
		have := s.CachedInfo().Config
		verr.compare(sc.Name, []setting{
			{"subjects", sc.Subjects, have.Subjects},
			{"retention", sc.Retention, have.Retention},
			{"discard", sc.Discard, have.Discard},
			{"max_age", sc.MaxAge, have.MaxAge},
			{"max_bytes", sc.MaxBytes, have.MaxBytes},
			{"duplicate_window", sc.Duplicates, have.Duplicates},
			{"num_replicas", sc.Replicas, have.Replicas},
			{"storage", sc.Storage, have.Storage},
			{"republish", republish(sc.RePublish), republish(have.RePublish)},
			{"allow_direct", sc.AllowDirect, have.AllowDirect},
		})
	}
	bucket := BucketStream(oc.Bucket)
	bs, err := js.Stream(ctx, bucket)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		verr.Missing = append(verr.Missing, bucket)
	case err != nil:
		return nil, fmt.Errorf("verify object store %s: %w", oc.Bucket, err)
	default:
		// The fields EnsureObjects sets, but its description, which
		// is not a setting.
		have := bs.CachedInfo().Config
		want := bucketConfig(oc, have)
		want.Description = have.Description
		verr.compareConfigs(bucket, want, have)
	}
	if len(verr.Missing) > 0 || len(verr.Differences) > 0 {
		return nil, &verr
	}
	return s, nil
}

// setting is one compared field: the Config's value and the stream's.
type setting struct {
	field      string
	want, have any
}

func (e *VerifyError) compare(stream string, settings []setting) {
	for _, s := range settings {
		if !reflect.DeepEqual(s.want, s.have) {
			e.Differences = append(e.Differences, Difference{Stream: stream, Field: s.field,
				Want: fmt.Sprint(s.want), Have: fmt.Sprint(s.have)})
		}
	}
}

// compareConfigs adds every field in which have differs from want, by
// its JSON name.
func (e *VerifyError) compareConfigs(stream string, want, have jetstream.StreamConfig) {
	w, h := reflect.ValueOf(want), reflect.ValueOf(have)
	var settings []setting
	for i := range w.NumField() {
		name, _, _ := strings.Cut(w.Type().Field(i).Tag.Get("json"), ",")
		settings = append(settings, setting{name, w.Field(i).Interface(), h.Field(i).Interface()})
	}
	e.compare(stream, settings)
}

// republish shows a RePublish setting as source->destination.
func republish(r *jetstream.RePublish) string {
	if r == nil {
		return "none"
	}
	s := r.Source + "->" + r.Destination
	if r.HeadersOnly {
		s += " (headers only)"
	}
	return s
}
