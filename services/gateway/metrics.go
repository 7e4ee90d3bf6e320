package gateway

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connections   *prometheus.GaugeVec
	subscriptions prometheus.Gauge
	frames        *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	overflows     prometheus.Counter
	replays       prometheus.Counter
	gaps          prometheus.Counter
	replicaWaits  prometheus.Counter
	slowCloses    prometheus.Counter
	pings         prometheus.Counter
	authFailures  *prometheus.CounterVec
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
		overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_queue_overflows_total", Help: "Send queues that overflowed, switching their connection to catch-up.",
		}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_replays_total", Help: "Replays and catch-ups read from the stream.",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "framecast_gateway_gaps_total", Help: "Gaps: frames past the stream window, or lost in transit and caught up.",
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
	}
	reg.MustRegister(m.connections, m.subscriptions, m.frames, m.bytes, m.overflows,
		m.replays, m.gaps, m.replicaWaits, m.slowCloses, m.pings, m.authFailures)
	return m
}
