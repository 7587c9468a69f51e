package ops

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are keyfocus's Prometheus metrics. Labels only take values from
// small fixed sets: no room names, JIDs, client names or fingerprints.
type metrics struct {
	requests   *prometheus.CounterVec
	admissions prometheus.Counter
	latency    prometheus.Histogram

	rooms       prometheus.Gauge
	roomsOpened prometheus.Counter
	roomsEnded  prometheus.Counter
	members     prometheus.Gauge
	joined      prometheus.Counter
	left        *prometheus.CounterVec
	removed     *prometheus.CounterVec
	revokedAbs  *prometheus.CounterVec

	keyChanges      *prometheus.CounterVec
	storeKeys       prometheus.Gauge
	storeReloads    prometheus.Counter
	storeErrors     prometheus.Counter
	storeLastReload prometheus.Gauge

	connected   prometheus.Gauge
	reconnects  prometheus.Counter
	disconnects prometheus.Counter

	dropped prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, version string) *metrics {
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyfocus_conference_requests_total",
			Help: "Conference requests answered, by result (admitted, refused) and reason (ok, or the refusal reason).",
		}, []string{"result", "reason"}),
		admissions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyfocus_admissions_total",
			Help: "Conference requests admitted (room created or joined, member granted).",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keyfocus_conference_request_duration_seconds",
			Help:    "Time from an admitted conference request's arrival to its ready reply (room created, configured, member granted).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		rooms: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyfocus_rooms",
			Help: "Rooms the focus manages now.",
		}),
		roomsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyfocus_rooms_opened_total",
			Help: "Rooms the focus opened.",
		}),
		roomsEnded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyfocus_rooms_ended_total",
			Help: "Rooms that ended (emptied, or ended by an operator).",
		}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyfocus_members",
			Help: "People in the focus's rooms now (the focus itself not counted).",
		}),
		joined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyfocus_members_joined_total",
			Help: "Members who joined a room.",
		}),
		left: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyfocus_members_left_total",
			Help: "Members who left a room, by how (left, kicked, removed, lost).",
		}, []string{"reason"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyfocus_members_removed_total",
			Help: "Members removed by keyfocus, by cause (revocation, operator, expiry).",
		}, []string{"actor"}),
		revokedAbs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyfocus_memberships_revoked_total",
			Help: "Room memberships withdrawn from people the focus did not see in the room (they had left, or were in it while keyfocus was down), by cause.",
		}, []string{"actor"}),
		keyChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyfocus_key_changes_total",
			Help: "Key changes seen on key store reloads, by change (added, edited, revoked). Revocations are change=\"revoked\".",
		}, []string{"change"}),
		storeKeys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyfocus_store_keys",
			Help: "Keys in the key store's current snapshot.",
		}),
		storeReloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyfocus_store_reloads_total",
			Help: "Key file reloads that succeeded.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyfocus_store_parse_errors_total",
			Help: "Key file reloads refused because the file did not parse (the last good snapshot stayed in force).",
		}),
		storeLastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyfocus_store_last_reload_timestamp_seconds",
			Help: "Unix time of the last successful key file reload.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyfocus_component_connected",
			Help: "1 while the component is connected to Prosody, else 0.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyfocus_component_reconnects_total",
			Help: "Times the component connected again after losing its connection to Prosody.",
		}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyfocus_component_disconnects_total",
			Help: "Times the component lost its connection to Prosody.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyfocus_metrics_events_dropped_total",
			Help: "Focus events the metrics lost because they fell behind (gauges are then taken afresh).",
		}),
	}
	for _, c := range []prometheus.Collector{
		m.requests, m.admissions, m.latency, m.rooms, m.roomsOpened, m.roomsEnded, m.members,
		m.joined, m.left, m.removed, m.revokedAbs, m.keyChanges, m.storeKeys, m.storeReloads, m.storeErrors,
		m.storeLastReload, m.connected, m.reconnects, m.disconnects, m.dropped,
	} {
		f(c)
	}
	// Every series exists from the start, at zero, so rate() and alerts work
	// before the first occurrence.
	m.requests.WithLabelValues("admitted", "ok")
	for _, r := range []string{"no_key", "unknown_key", "expired", "room_not_allowed", "room_full", "rate_limited", "shutting_down", "bad_request", "other"} {
		m.requests.WithLabelValues("refused", r)
	}
	for _, r := range []string{"left", "kicked", "removed", "lost", "other"} {
		m.left.WithLabelValues(r)
	}
	for _, a := range []string{"revocation", "operator", "expiry", "other"} {
		m.removed.WithLabelValues(a)
		m.revokedAbs.WithLabelValues(a)
	}
	for _, c := range []string{"added", "edited", "revoked"} {
		m.keyChanges.WithLabelValues(c)
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "keyfocus_build_info",
		Help:        "Always 1; the version label is the keyfocus version.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	buildInfo.Set(1)
	f(buildInfo)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
