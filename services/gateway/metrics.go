package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/framecast/framecast/services/gateway/hub"
	"github.com/framecast/framecast/services/gateway/zerocopy"
)

type metrics struct {
	connections   *prometheus.GaugeVec
	subscriptions prometheus.Gauge
	frames        *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	events        *prometheus.CounterVec
	clientBytes   *prometheus.CounterVec
	resumes       *prometheus.CounterVec
	resets        prometheus.Counter
	reads         prometheus.Counter
	holes         prometheus.Counter
	late          prometheus.Counter
	jsRequests    prometheus.Counter
	gaps          prometheus.Counter
	replicaWaits  prometheus.Counter
	slowCloses    prometheus.Counter
	pings         prometheus.Counter
	authFailures  *prometheus.CounterVec
	refused       *prometheus.CounterVec
	writeStalls   prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "framecast_gateway_connections", Help: "Open websocket connections by endpoint.",
		}, []string{"endpoint"}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "framecast_gateway_subscriptions", Help: "NATS subscriptions held by the hub.",
		}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "framecast_gateway_frames_delivered_total", Help: "Frames written to websockets by endpoint.",
		}, []string{"endpoint"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "framecast_gateway_bytes_delivered_total", Help: "Frame bytes written to websockets by endpoint.",
		}, []string{"endpoint"}),
		clientBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "framecast_gateway_client_message_bytes_total", Help: "Bytes of client messages read and discarded, by endpoint.",
		}, []string{"endpoint"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "framecast_gateway_events_delivered_total", Help: "ComfyUI execution events written to websockets by endpoint.",
		}, []string{"endpoint"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "framecast_gateway_resumes_total",
			Help: "Connections that resumed (since, last), by where their first frames came from: memory (the rings held them) or stream (a shared stream read).",
		}, []string{"from"}),
		resets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_resets_total", Help: "Connections told the stream was created again under them.",
		}),
		reads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_stream_reads_total", Help: "Shared stream reads started (each fills the rings of one or more outputs).",
		}),
		holes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_live_holes_total", Help: "Live frames lost in transit (a hole in a subject's sequence chain, a slow consumer, a reconnect), each healed by a stream read.",
		}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_late_frames_total", Help: "Frames delivered after a later one: a hole found after a connection had passed it.",
		}),
		jsRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_jetstream_requests_total", Help: "JetStream API requests the gateway made (pulls of consumer messages are not counted).",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_gaps_total", Help: "Gaps sent or skipped: frames that left the stream's window before a connection could be sent them.",
		}),
		replicaWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_replay_replica_waits_total",
			Help: "Stream reads whose consumer's replica lagged the stream leader, so the read waited for it.",
		}),
		slowCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_slow_client_closes_total", Help: "Connections closed with 4008.",
		}),
		pings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_pings_total", Help: "Keepalive pings answered by clients.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "framecast_gateway_auth_failures_total", Help: "Refused upgrades and closes by auth reason.",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "framecast_gateway_upgrades_refused_total",
			Help: "Websocket upgrades refused before the handshake, by the error code answered (bad_request, unauthorized, a limit's code, ...).",
		}, []string{"code"}),
		writeStalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_write_stalls_total",
			Help: "Writes that made no progress for --write-timeout (a client that stopped reading); each connection closes with 4008 after the write, or is cut if it stays stalled.",
		}),
	}
	reg.MustRegister(m.connections, m.subscriptions, m.frames, m.bytes, m.events, m.clientBytes, m.resumes, m.resets,
		m.reads, m.holes, m.late, m.jsRequests, m.gaps, m.replicaWaits, m.slowCloses, m.pings, m.authFailures, m.refused, m.writeStalls)
	return m
}

// observeHub registers the gauges read from the hub.
func (m *metrics) observeHub(reg *prometheus.Registry, h *hub.Hub) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "framecast_gateway_ring_bytes", Help: "Bytes of frames the rings hold (bounded by --cache-bytes).",
		}, func() float64 { return float64(h.Bytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "framecast_gateway_cursors_behind", Help: "Connections waiting for a stream read of frames the rings do not hold.",
		}, func() float64 { return float64(h.Behind()) }),
	)
}

// observeArena reports what the zero-copy arena holds.
func (m *metrics) observeArena(reg *prometheus.Registry, a *zerocopy.Arena) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "framecast_gateway_sendfile_bytes",
		Help: "Bytes of large frames' messages kept in the memory file they are sent from (sendfile), page-rounded; freed after the frames leave the rings.",
	}, func() float64 { return float64(a.Held()) }))
}
