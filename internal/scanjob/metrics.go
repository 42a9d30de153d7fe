package scanjob

import "github.com/prometheus/client_golang/prometheus"

// Metrics of a Manager. Labels take fixed values only: never a domain or
// a client.
type Metrics struct {
	Requests *prometheus.CounterVec // submissions by result
	Scans    *prometheus.CounterVec // finished scans by outcome
	Duration prometheus.Histogram
	Queued   prometheus.Gauge
	Running  prometheus.Gauge
	Panics   prometheus.Counter

	// With a shared store (several instances): NotifyLag is the time from
	// an event written by the scanning instance to its delivery to the
	// watchers here, by how it came (notify, poll, get: the first read).
	NotifyLag      *prometheus.HistogramVec
	Followed       prometheus.Gauge // live scans of other instances watched here
	NoticesDropped prometheus.Counter
	ListenErrors   prometheus.Counter
	PublishErrors  prometheus.Counter
}

// NewMetrics makes the metrics and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_web_scan_requests_total",
			Help: "Scan submissions by result: started, joined (a scan of the same domain was running), reused (a fresh result), refused_rate, refused_concurrent (per-client limits), refused_queue_full."}, []string{"result"}),
		Scans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_web_scans_total",
			Help: "Finished scans by outcome: graded, ungraded (the policy could not be determined), error (the scan could not run)."}, []string{"outcome"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mailtls_web_scan_duration_seconds",
			Help: "Wall time of scans.", Buckets: []float64{0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120}}),
		Queued:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailtls_web_scans_queued", Help: "Scans waiting for a worker."}),
		Running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailtls_web_scans_running", Help: "Scans running."}),
		Panics:  prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtls_web_scan_panics_total", Help: "Panics recovered in scans (the scan fails, the worker goes on)."}),
		NotifyLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailtls_web_scan_notify_lag_seconds",
			Help:    "Shared store: time from a progress event written by the instance scanning to its delivery to watchers on this instance, by path: notify (LISTEN/NOTIFY), poll (recovered by polling), get (read when a page or stream opened).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}}, []string{"via"}),
		Followed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailtls_web_scans_followed",
			Help: "Shared store: live scans of other instances watched from this one."}),
		NoticesDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtls_web_scan_notices_dropped_total",
			Help: "Shared store: notifications dropped because the follower was behind (the next poll reads their events)."}),
		ListenErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtls_web_scan_listen_errors_total",
			Help: "Shared store: failures of the notification connection (polling goes on until it is back)."}),
		PublishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtls_web_scan_publish_errors_total",
			Help: "Shared store: progress events or states that could not be written (other instances see them with the result)."}),
	}
	for _, v := range []string{"notify", "poll", "get"} {
		m.NotifyLag.WithLabelValues(v)
	}
	for _, r := range []string{"started", "joined", "reused", "refused_rate", "refused_concurrent", "refused_queue_full"} {
		m.Requests.WithLabelValues(r)
	}
	for _, o := range []string{"graded", "ungraded", "error"} {
		m.Scans.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Scans, m.Duration, m.Queued, m.Running, m.Panics,
			m.NotifyLag, m.Followed, m.NoticesDropped, m.ListenErrors, m.PublishErrors)
	}
	return m
}
