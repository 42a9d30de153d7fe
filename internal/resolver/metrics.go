package resolver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/internal/sendpolicy"
)

// Metrics are the resolver's Prometheus metrics. Every label takes values
// from a fixed set, all present from the start. A nil *Metrics counts
// nothing.
type Metrics struct {
	Lookups       *prometheus.CounterVec // by reply kind
	Cache         *prometheus.CounterVec // hit, miss, refresh
	Discoveries   *prometheus.CounterVec // by record state
	FetchFailures *prometheus.CounterVec // by reason
	Refreshes     *prometheus.CounterVec // proactive refreshes: ok, failed
	Latency       prometheus.Histogram
	Entries       prometheus.GaugeFunc
	Panics        prometheus.Counter

	byKind map[sendpolicy.Kind]prometheus.Counter // Lookups, resolved once
	byHit  map[string]prometheus.Counter          // Cache, resolved once
}

// NewMetrics registers the metrics; entries reports the cache size.
func NewMetrics(reg prometheus.Registerer, entries func() float64) *Metrics {
	m := &Metrics{
		Lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_resolver_lookups_total",
			Help: "Socketmap lookups by reply kind: dane-only, dane, secure, notfound, temp, invalid (a key that cannot have a policy)."}, []string{"reply"}),
		Cache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_resolver_cache_total",
			Help: "MTA-STS cache use per lookup: hit (fresh), refresh (a policy in force served while it is checked in the background), miss (looked up while the lookup waited)."}, []string{"result"}),
		Discoveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_resolver_discoveries_total",
			Help: "MTA-STS discoveries by what the _mta-sts TXT lookup found: valid, absent, invalid, temporary."}, []string{"record"}),
		FetchFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_resolver_fetch_failures_total",
			Help: "Policy fetches that gave no policy, by reason."}, []string{"reason"}),
		Refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_resolver_refreshes_total",
			Help: "Proactive refetches of cached policies before they expire: ok, failed (the cached policy stays in force)."}, []string{"result"}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mailtls_resolver_lookup_seconds",
			Help:    "Time to answer one socketmap lookup.",
			Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05, 0.25, 1, 2.5, 10}}),
		Entries: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailtls_resolver_cache_entries",
			Help: "Domains in the in-memory policy cache."}, entries),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtls_resolver_panics_total",
			Help: "Recovered panics in lookups (the lookup answered TEMP or a temporary state)."}),
	}
	m.byKind = map[sendpolicy.Kind]prometheus.Counter{}
	for _, k := range sendpolicy.Kinds {
		m.byKind[k] = m.Lookups.WithLabelValues(string(k))
	}
	m.byHit = map[string]prometheus.Counter{}
	for _, r := range []string{"hit", "miss", "refresh"} {
		m.byHit[r] = m.Cache.WithLabelValues(r)
	}
	for _, s := range []sendpolicy.RecordState{sendpolicy.RecordValid, sendpolicy.RecordAbsent, sendpolicy.RecordInvalid, sendpolicy.RecordTemporary} {
		m.Discoveries.WithLabelValues(string(s))
	}
	for _, f := range sendpolicy.FetchFailures {
		m.FetchFailures.WithLabelValues(string(f))
	}
	for _, r := range []string{"ok", "failed"} {
		m.Refreshes.WithLabelValues(r)
	}
	reg.MustRegister(m.Lookups, m.Cache, m.Discoveries, m.FetchFailures, m.Refreshes, m.Latency, m.Entries, m.Panics)
	return m
}

func (m *Metrics) cache(result string) {
	if m != nil {
		m.byHit[result].Inc()
	}
}

func (m *Metrics) discovery(s sendpolicy.RecordState) {
	if m != nil {
		m.Discoveries.WithLabelValues(string(s)).Inc()
	}
}

func (m *Metrics) fetchFailure(f sendpolicy.FetchFailure) {
	if m != nil {
		m.FetchFailures.WithLabelValues(string(f)).Inc()
	}
}

func (m *Metrics) refresh(ok bool) {
	if m != nil {
		r := "failed"
		if ok {
			r = "ok"
		}
		m.Refreshes.WithLabelValues(r).Inc()
	}
}

func (m *Metrics) lookup(k sendpolicy.Kind, d time.Duration) {
	if m != nil {
		m.byKind[k].Inc()
		m.Latency.Observe(d.Seconds())
	}
}

func (m *Metrics) panic() {
	if m != nil {
		m.Panics.Inc()
	}
}
