package tlsrptagg

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// WatchPolicy are the knobs of the report rules monitoring runs (Watch);
// zero fields take the defaults.
type WatchPolicy struct {
	// Recent is the window of days whose reports are judged for failures
	// (default 3: a day's reports arrive during the next day, RFC 8460
	// §4.1, and a domain is scanned once a day).
	Recent time.Duration
	// Baseline is the window before Recent that the failure rate is
	// compared with, and in which a reporter is seen to report regularly
	// (default 28 days).
	Baseline time.Duration
	// MinSessions and MinFailed: below them in Recent (or MinSessions
	// in Baseline) no failure rate is judged (defaults 100 and 10).
	MinSessions, MinFailed int64
	// RateFactor and RateFloor: the recent rate jumped when it is above
	// both RateFactor times the baseline rate and the baseline plus
	// RateFloor (defaults 3 and 0.01, one percentage point).
	RateFactor, RateFloor float64
	// SilentAfter: a regular reporter with no report for this long is
	// silent (default 7 days, tlsrpt-landscape.md §5.2 D-2).
	SilentAfter time.Duration
	// RegularDays: a reporter that reported on at least this many days
	// of the Baseline window before SilentAfter is regular (default 7).
	RegularDays int
}

// Defaults of WatchPolicy.
const (
	DefaultRecent      = 3 * 24 * time.Hour
	DefaultBaseline    = 28 * 24 * time.Hour
	DefaultSilentAfter = 7 * 24 * time.Hour
	DefaultRegularDays = 7
	DefaultRateFactor  = 3
	DefaultRateFloor   = 0.01
	// MaxBlockingMX bounds the findings one domain's reports can raise:
	// the MX names come from the reports.
	MaxBlockingMX = 10
)

func (p WatchPolicy) withDefaults() WatchPolicy {
	set := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&p.Recent, DefaultRecent)
	set(&p.Baseline, DefaultBaseline)
	set(&p.SilentAfter, DefaultSilentAfter)
	if p.MinSessions <= 0 {
		p.MinSessions = 100
	}
	if p.MinFailed <= 0 {
		p.MinFailed = 10
	}
	if p.RateFactor <= 0 {
		p.RateFactor = DefaultRateFactor
	}
	if p.RateFloor <= 0 {
		p.RateFloor = DefaultRateFloor
	}
	if p.RegularDays <= 0 {
		p.RegularDays = DefaultRegularDays
	}
	return p
}

// Lookback is how many days of reports Watch needs before today's.
func (p WatchPolicy) Lookback() time.Duration {
	p = p.withDefaults()
	return max(p.Recent, p.SilentAfter) + p.Baseline
}

// WatchInput is one judgement of a domain's reports.
type WatchInput struct {
	Domain string
	// Now is the time of the decision; its UTC day is today, whose
	// reports are not complete and are left out.
	Now     time.Time
	Current Current
	// Summary holds the domain's counted reports of at least the
	// Lookback days before today.
	Summary *Summary
	// Open lists the subjects of the problems of each ID that are open
	// (told or not): a failure rate that alerted stays reported until it
	// falls back below half the jump, so a rate near the threshold does
	// not alert daily, and a silent reporter stays silent until it
	// reports again, however long ago it stopped.
	Open   map[finding.ID][]string
	Policy WatchPolicy
}

// Watch runs the report rules of monitoring on a domain's reports: a
// failure on an MX host that would be refused under enforce
// (reports-blocking-failure), a failure rate above the domain's own
// baseline (reports-failure-rate), a regular reporter gone silent
// (reports-reporter-silent). sts, tlsa and no-policy-found sessions are
// never added together. blind is set when no counted report covers the
// recent days: the failure rules could not look, so what they found
// before must not be taken as resolved (alert.Input.Held).
func Watch(in WatchInput) (out []finding.Finding, blind bool) {
	p := in.Policy.withDefaults()
	today := Day(in.Now)
	recent := Filter{Domain: in.Domain, From: today.Add(-p.Recent), To: today}
	base := Filter{Domain: in.Domain, From: recent.From.Add(-p.Baseline), To: recent.From}
	open := func(id finding.ID, subject string) bool { return slices.Contains(in.Open[id], subject) }
	sum := in.Summary
	if sum == nil {
		sum = &Summary{}
	}
	sessions, _ := sum.DomainTotals(recent)
	blind = sessions == 0
	if !blind {
		out = append(out, blocking(sum, in, recent)...)
		out = append(out, rates(sum, p, recent, base, open)...)
	}
	out = append(out, silent(sum, p, in.Domain, today, in.Open[finding.ReportsReporterSilent])...)
	return out, blind
}

// blocking: one finding per MX host with failures labelled blocking in
// the recent days, largest first, at most MaxBlockingMX.
func blocking(sum *Summary, in WatchInput, recent Filter) []finding.Finding {
	type mx struct {
		name  string
		count int64
		why   []string
		orgs  []string
		types []string
	}
	by := map[string]*mx{}
	for _, g := range sum.Groups(recent) {
		e := Explain(g, in.Current, sum.LastReportDay(in.Domain, g.Type))
		if e.Label != Blocking {
			continue
		}
		m := by[e.MX]
		if m == nil {
			m = &mx{name: e.MX}
			by[e.MX] = m
		}
		m.count += e.Count
		m.why = append(m.why, fmt.Sprintf("%d %s (%s)", e.Count, e.ResultType, e.Type))
		for _, o := range e.Organizations {
			if !slices.Contains(m.orgs, o) {
				m.orgs = append(m.orgs, o)
			}
		}
		if !slices.Contains(m.types, e.Why) {
			m.types = append(m.types, e.Why)
		}
	}
	list := make([]*mx, 0, len(by))
	for _, m := range by {
		list = append(list, m)
	}
	slices.SortFunc(list, func(a, b *mx) int { return cmp.Or(cmp.Compare(b.count, a.count), cmp.Compare(a.name, b.name)) })
	var out []finding.Finding
	for i, m := range list {
		if i == MaxBlockingMX {
			break
		}
		slices.Sort(m.orgs)
		msg := fmt.Sprintf("%d failed session(s) to %s reported since %s by %s: %s. %s",
			m.count, m.name, recent.From.Format(time.DateOnly), strings.Join(m.orgs, ", "), strings.Join(m.why, ", "), strings.Join(m.types, "; "))
		if i == MaxBlockingMX-1 && len(list) > MaxBlockingMX {
			msg += fmt.Sprintf(" (%d more MX hosts with blocking failures are not listed)", len(list)-MaxBlockingMX)
		}
		fix := strings.ReplaceAll(finding.Lookup(finding.ReportsBlockingFailure).Fix, "<mx>", m.name)
		fix = strings.ReplaceAll(fix, "<domain>", in.Domain)
		out = append(out, finding.New(finding.ReportsBlockingFailure, finding.Error, m.name, msg, fix))
	}
	return out
}

// rates: one finding per policy type whose recent failure rate jumped
// over the baseline's.
func rates(sum *Summary, p WatchPolicy, recent, base Filter, open func(finding.ID, string) bool) []finding.Finding {
	var types []tlsrpt.PolicyType
	for _, r := range sum.Rows {
		if r.Domain == recent.Domain && !slices.Contains(types, r.Type) {
			types = append(types, r.Type)
		}
	}
	slices.Sort(types)
	var out []finding.Finding
	for _, t := range types {
		recent.Type, base.Type = t, t
		now, before := sum.Totals(recent), sum.Totals(base)
		if now.Sessions() < p.MinSessions || now.Failed < p.MinFailed || before.Sessions() < p.MinSessions {
			continue // too few sessions to tell a rate
		}
		rate := float64(now.Failed) / float64(now.Sessions())
		baseline := float64(before.Failed) / float64(before.Sessions())
		factor, floor := p.RateFactor, p.RateFloor
		if open(finding.ReportsFailureRate, string(t)) {
			// Once told, it stays until the rate falls below half the
			// jump: no alert and resolution every other day.
			factor, floor = max(1, factor/2), floor/2
		}
		if rate <= baseline*factor || rate <= baseline+floor {
			continue
		}
		msg := fmt.Sprintf("%.1f%% of %d %s sessions failed between %s and %s, against %.2f%% of %d in the %d days before",
			rate*100, now.Sessions(), t, recent.From.Format(time.DateOnly), recent.To.AddDate(0, 0, -1).Format(time.DateOnly),
			baseline*100, before.Sessions(), int(base.To.Sub(base.From)/(24*time.Hour)))
		if top := topKeys(now.ByResult, 3); top != "" {
			msg += "; mostly " + top
		}
		fix := strings.ReplaceAll(finding.Lookup(finding.ReportsFailureRate).Fix, "<domain>", recent.Domain)
		out = append(out, finding.New(finding.ReportsFailureRate, finding.Warning, string(t), msg, fix))
	}
	return out
}

// silent: one finding per regular reporter without a report in the last
// SilentAfter days.
func silent(sum *Summary, p WatchPolicy, dom string, today time.Time, open []string) []finding.Finding {
	quiet := today.Add(-p.SilentAfter)
	from := quiet.Add(-p.Baseline)
	days := map[string]map[time.Time]bool{}
	last := map[string]time.Time{}
	for _, d := range sum.DomainRows {
		if d.Domain != dom || !d.Day.Before(today) || d.Sessions == 0 {
			continue
		}
		if d.Day.After(last[d.Organization]) {
			last[d.Organization] = d.Day
		}
		if !d.Day.Before(from) && d.Day.Before(quiet) {
			if days[d.Organization] == nil {
				days[d.Organization] = map[time.Time]bool{}
			}
			days[d.Organization][d.Day] = true
		}
	}
	var orgs []string
	for org, l := range last {
		// Regular before, or open already and still silent.
		if l.Before(quiet) && (len(days[org]) >= p.RegularDays || slices.Contains(open, org)) {
			orgs = append(orgs, org)
		}
	}
	for _, org := range open {
		if _, seen := last[org]; !seen {
			orgs = append(orgs, org) // silent for longer than the summary
		}
	}
	slices.Sort(orgs)
	var out []finding.Finding
	for _, org := range orgs {
		since := "before " + from.Format(time.DateOnly)
		if l, ok := last[org]; ok {
			since = l.Format(time.DateOnly)
		}
		msg := fmt.Sprintf("%s sent reports about %s on %d of the %d days before %s, and none since %s",
			org, dom, len(days[org]), int(p.Baseline/(24*time.Hour)), quiet.Format(time.DateOnly), since)
		if len(days[org]) < p.RegularDays {
			msg = fmt.Sprintf("%s has sent no report about %s since %s", org, dom, since)
		}
		fix := strings.ReplaceAll(finding.Lookup(finding.ReportsReporterSilent).Fix, "<domain>", dom)
		out = append(out, finding.New(finding.ReportsReporterSilent, finding.Warning, org, msg, fix))
	}
	return out
}

// topKeys names the n largest entries of m, "certificate-expired (12)".
func topKeys[K ~string](m map[K]int64, n int) string {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b K) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	var parts []string
	for i, k := range keys {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
