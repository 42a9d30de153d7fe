package tlsrptintake

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrptmail"
)

// Metrics of the intake. Every label value comes from a fixed list or
// from the configured domains, never from report text: anyone can send a
// report with any organisation name, domain or result type, and a label
// taken from it would let them create series at will
// (tlsrpt-landscape.md §5.2 D-3).
type Metrics struct {
	Received *prometheus.CounterVec // channel, result
	DKIM     *prometheus.CounterVec // status
	Sessions *prometheus.CounterVec // domain, policy_type, result (successful, failed)
	Failures *prometheus.CounterVec // domain, result_type
}

// Bounded label values.
const (
	labelOther = "other"
)

// NewMetrics registers the intake's metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_reports_received_total",
			Help: "TLS-RPT reports received, by channel (https, smtp, imap, file) and result: new, duplicate, promoted, conflict, ignored, held, refused (not a report, too large), temporary (retry asked), rate_limited, connection_refused."},
			[]string{"channel", "result"}),
		DKIM: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_reports_dkim_total",
			Help: "DKIM verdicts on mailed reports (RFC 8460 §3): pass, none, fail, body-length, unaligned, temperror."},
			[]string{"status"}),
		Sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_reports_sessions_total",
			Help: "TLS sessions in counted reports, by configured domain, policy type (sts, tlsa, no-policy-found, other) and result (successful, failed)."},
			[]string{"domain", "policy_type", "result"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_reports_failed_sessions_total",
			Help: "Failed TLS sessions in counted reports by configured domain and RFC 8460 result type (other for result types outside the IANA registry)."},
			[]string{"domain", "result_type"}),
	}
	if reg != nil {
		reg.MustRegister(m.Received, m.DKIM, m.Sessions, m.Failures)
	}
	return m
}

func (m *Metrics) received(channel, result string) {
	if m == nil {
		return
	}
	switch channel {
	case ChannelHTTPS, ChannelSMTP, ChannelIMAP, ChannelFile:
	default:
		channel = labelOther
	}
	m.Received.WithLabelValues(channel, result).Inc()
}

func (m *Metrics) dkim(s tlsrptmail.DKIMStatus) {
	if m == nil {
		return
	}
	switch s {
	case tlsrptmail.DKIMPass, tlsrptmail.DKIMNone, tlsrptmail.DKIMFail, tlsrptmail.DKIMBodyLength, tlsrptmail.DKIMUnaligned, tlsrptmail.DKIMTempError:
	default:
		s = labelOther
	}
	m.DKIM.WithLabelValues(string(s)).Inc()
}

// stored counts an arrival, and the sessions of a report that has just
// come to count (new or promoted), under configured domains only.
func (m *Metrics) stored(channel string, r Result, configured func(string) bool) {
	if m == nil {
		return
	}
	result := string(r.Outcome)
	if r.Outcome == store.OutcomeNew && r.Stored.State != store.ReportCounted {
		result = string(r.Stored.State) // conflict, ignored, held
	}
	m.received(channel, result)
	if r.Stored.State != store.ReportCounted || (r.Outcome != store.OutcomeNew && r.Outcome != store.OutcomePromoted) || configured == nil {
		return
	}
	for _, p := range r.Report.Policies {
		d := domain.Canonical(p.Domain)
		if d == "" || !configured(d) {
			continue
		}
		typ := string(p.Type)
		if !p.Type.Known() {
			typ = labelOther
		}
		m.Sessions.WithLabelValues(d, typ, "successful").Add(float64(p.Successful))
		m.Sessions.WithLabelValues(d, typ, "failed").Add(float64(p.Failed))
		for _, f := range p.Failures {
			rt := string(f.ResultType)
			if !f.ResultType.Known() {
				rt = labelOther
			}
			m.Failures.WithLabelValues(d, rt).Add(float64(f.FailedSessions))
		}
	}
}
