package producer

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the framecast_producer_* series.
type metrics struct {
	requests *prometheus.CounterVec // by HTTP status code
	errors   *prometheus.CounterVec // by API error code
	frames   *prometheus.CounterVec // published, by format
	bytes    prometheus.Counter     // published image bytes
	events   prometheus.Counter     // published events
	encode   prometheus.Histogram   // seconds to encode one request's batch
	publish  prometheus.Histogram   // seconds to publish one request's batch
}

func newMetrics(reg *prometheus.Registry, ready, inflight func() float64) (*metrics, error) {
	const ns = "framecast_producer"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "HTTP requests to the publish API (images and events), by status code."}, []string{"code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "errors_total",
			Help: "Error answers of the publish API, by error code."}, []string{"code"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "frames_total",
			Help: "Frames stored in the stream, by format (duplicates of an idempotent retry excluded)."}, []string{"format"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "bytes_total",
			Help: "Encoded image bytes stored in the stream."}),
		events: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "events_total",
			Help: "Execution events stored in the stream (duplicates of an idempotent retry excluded)."}),
		encode: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "encode_seconds",
			Help: "Time to convert and encode the images of one request.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "publish_seconds",
			Help: "Time to publish every frame (or the event) of one request and get the acknowledgements.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	readyGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "ready",
		Help: "1 when NATS is connected and the stream verified (or ensured), else 0."}, ready)
	inflightGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "inflight_bytes",
		Help: "Bytes of the in-flight memory budget (--max-inflight-bytes) that requests hold now: bodies and images being decoded or encoded."}, inflight)
	for _, c := range []prometheus.Collector{m.requests, m.errors, m.frames, m.bytes, m.events, m.encode, m.publish, readyGauge, inflightGauge} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("%w: register metrics: %w", ErrInvalidConfig, err)
		}
	}
	return m, nil
}
