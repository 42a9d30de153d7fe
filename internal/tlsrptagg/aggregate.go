// Package tlsrptagg sums TLS-RPT reports (RFC 8460) per domain, day,
// policy type and reporter, explains each failure against the domain's
// current policy and scan, and gives the "ready to enforce?" verdict. It is
// pure: reports, policy and scan in, figures and verdicts out. The store
// feeds it deduplicated, authenticated reports.
package tlsrptagg

import (
	"cmp"
	"slices"
	"time"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// UnknownMX keys the failures whose detail names no receiving MX host
// (Microsoft's and Mail.ru's policy fetch errors).
const UnknownMX = "(unknown MX)"

// Ref names one report: the deduplication key (RFC 8460 §4.4
// organization-name and report-id) and its first day.
type Ref struct {
	Organization string    `json:"organization"`
	ReportID     string    `json:"report_id"`
	Day          time.Time `json:"day"`
}

// Failure is failed sessions of one kind: result type, receiving MX and
// sending IP.
type Failure struct {
	ResultType  tlsrpt.ResultType `json:"result_type"`
	MX          string            `json:"receiving_mx"` // UnknownMX when the report names none
	SendingIP   string            `json:"sending_ip,omitempty"`
	ReceivingIP string            `json:"receiving_ip,omitempty"`
	Reason      string            `json:"failure_reason_code,omitempty"`
	Count       int64             `json:"count"`
}

// Row is the finest grain: one domain, UTC day, policy type and reporting
// organisation. Successful and Failed are the summary totals (a report's
// own figures, apportioned to the days its range overlaps); DetailsFailed
// is the sum of its failure details, which may differ (Mail.ru).
type Row struct {
	Domain        string            `json:"domain"`
	Day           time.Time         `json:"day"`
	Type          tlsrpt.PolicyType `json:"type"`
	Organization  string            `json:"organization"`
	Successful    int64             `json:"successful"`
	Failed        int64             `json:"failed"`
	DetailsFailed int64             `json:"details_failed"`
	Failures      []Failure         `json:"failures,omitempty"`
	Reports       []Ref             `json:"reports"`
	// MXSets holds each distinct mx pattern set the reports applied
	// (sorted, lower-case, joined by ","), for telling policies apart.
	MXSets []string `json:"mx_sets,omitempty"`
}

// Summary is the aggregate of a set of reports.
type Summary struct {
	Rows []Row `json:"rows"`
	// Domain rows: per domain, day and organisation, the sessions counted
	// once whatever the policy type (see [Aggregate]).
	DomainRows []DomainRow `json:"domain_rows"`
	// Duplicates are reports given again with a key already seen; the
	// first copy is the one counted (tlsrpt-landscape.md §5.1.5).
	Duplicates []Ref `json:"duplicates,omitempty"`
}

// DomainRow is a per-domain figure that never adds one session twice.
type DomainRow struct {
	Domain       string    `json:"domain"`
	Day          time.Time `json:"day"`
	Organization string    `json:"organization"`
	Sessions     int64     `json:"sessions"`
	Failed       int64     `json:"failed"`
}

// Day returns the UTC day of t (midnight).
func Day(t time.Time) time.Time {
	// Go's time has no leap seconds, so UTC days are whole multiples of
	// 24 hours from the zero time.
	return t.UTC().Truncate(24 * time.Hour)
}

// MXSet is the canonical form of a pattern list: sorted, lower-case,
// without duplicates, joined by ",". Two policies with the same MX set
// send mail to the same hosts.
func MXSet(patterns []string) string {
	out := make([]string, 0, len(patterns))
	for _, p := range patterns {
		out = append(out, domain.Canonical(p))
	}
	slices.Sort(out)
	out = slices.Compact(out)
	s := ""
	for i, p := range out {
		if i > 0 {
			s += ","
		}
		s += p
	}
	return s
}

// days returns the UTC days a report's range overlaps and each day's
// weight (seconds of overlap). RFC 8460 §4.4 asks for one UTC day,
// 00:00-24:00; senders end at 23:59:59 or at the next midnight, and both
// are the same single day. A range of zero length belongs to its day.
func days(start, end time.Time) ([]time.Time, []int64) {
	start, end = start.UTC(), end.UTC()
	if !end.After(start) || Day(start).Equal(Day(end.Add(-time.Nanosecond))) {
		return []time.Time{Day(start)}, []int64{1}
	}
	var ds []time.Time
	var ws []int64
	for d := Day(start); d.Before(end); d = d.AddDate(0, 0, 1) {
		from, to := max64t(d, start), min64t(d.AddDate(0, 0, 1), end)
		if w := int64(to.Sub(from) / time.Second); w > 0 {
			ds = append(ds, d)
			ws = append(ws, w)
		}
	}
	if len(ds) == 0 {
		return []time.Time{Day(start)}, []int64{1}
	}
	return ds, ws
}

func max64t(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func min64t(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// split apportions n over weights by the largest remainder, so the parts
// add up to n exactly and a report is never counted twice
// (tlsrpt-landscape.md §5.2 B-3). Ties go to the earlier day.
func split(n int64, ws []int64) []int64 {
	out := make([]int64, len(ws))
	if len(ws) == 1 {
		out[0] = n
		return out
	}
	var total int64
	for _, w := range ws {
		total += w
	}
	type rem struct {
		i int
		r int64
	}
	var rems []rem
	var given int64
	for i, w := range ws {
		// n*w/total without overflow for realistic n (< 2^40) and
		// w (< 2^24 seconds per day).
		q := n / total * w
		r := n % total * w
		out[i] = q + r/total
		rems = append(rems, rem{i, r % total})
		given += out[i]
	}
	slices.SortStableFunc(rems, func(a, b rem) int { return cmp.Compare(b.r, a.r) })
	for k := 0; given < n; k++ {
		out[rems[k%len(rems)].i]++
		given++
	}
	return out
}

type rowKey struct {
	domain string
	day    time.Time
	typ    tlsrpt.PolicyType
	org    string
}

type domKey struct {
	domain string
	day    time.Time
	org    string
}

// Aggregate sums reports. Every figure is kept per policy type: Microsoft
// lists a DANE domain's sessions under both sts and tlsa, so adding the
// two would double them (tlsrpt-landscape.md §5.2 B-1). The per-domain
// figure (DomainRows) counts, for each report and domain, the larger of
// its sts and tlsa totals plus its no-policy-found sessions: a sender
// applies one policy per session, and the two DANE/MTA-STS views of the
// same sessions are counted once. Unknown policy types stay in their own
// rows and out of the per-domain figure. A report whose range spans
// several days is attributed to them by overlap. A second report with an
// organisation and report-id already seen is not counted again (it is
// listed in Duplicates).
//
// Aggregate is [Merge] of each report's [ReportRows]; a store keeps the
// rows of every report and merges those of a window when asked.
func Aggregate(reports []*tlsrpt.Report) *Summary {
	var dups []Ref
	var rows []Row
	var doms []DomainRow
	seen := make(map[[2]string]bool, len(reports))
	for _, rep := range reports {
		if rep == nil {
			continue
		}
		k := [2]string{rep.OrganizationName, rep.ReportID}
		if seen[k] {
			dups = append(dups, Ref{Organization: rep.OrganizationName, ReportID: rep.ReportID, Day: Day(rep.Start)})
			continue
		}
		seen[k] = true
		r, d := ReportRows(rep)
		rows = append(rows, r...)
		doms = append(doms, d...)
	}
	s := Merge(rows, doms)
	s.Duplicates = dups
	return s
}

// ReportRows are one report's figures: a Row per policy domain, UTC day
// and policy type (two entries of the same type and domain, as Google
// sends when a policy changed during the day, are summed into one row
// that lists both MX sets), and a DomainRow per domain and day with the
// sessions counted once whatever the policy type. Each row names the
// report in Reports.
func ReportRows(rep *tlsrpt.Report) ([]Row, []DomainRow) {
	ref := Ref{Organization: rep.OrganizationName, ReportID: rep.ReportID, Day: Day(rep.Start)}
	ds, ws := days(rep.Start, rep.End)
	rows := map[rowKey]*Row{}
	var order []rowKey

	type perDomain struct{ sts, tlsa, npf, stsF, tlsaF, npfF int64 }
	byDomain := map[string]*perDomain{}
	var domOrder []string
	for _, p := range rep.Policies {
		pd := byDomain[p.Domain]
		if pd == nil {
			pd = &perDomain{}
			byDomain[p.Domain] = pd
			domOrder = append(domOrder, p.Domain)
		}
		switch p.Type {
		case tlsrpt.PolicySTS:
			pd.sts, pd.stsF = pd.sts+p.Sessions(), pd.stsF+p.Failed
		case tlsrpt.PolicyTLSA:
			pd.tlsa, pd.tlsaF = pd.tlsa+p.Sessions(), pd.tlsaF+p.Failed
		case tlsrpt.PolicyNotFound:
			pd.npf, pd.npfF = pd.npf+p.Sessions(), pd.npfF+p.Failed
		}
		succ, fail, det := split(p.Successful, ws), split(p.Failed, ws), split(p.DetailsFailed, ws)
		mxset := ""
		if p.Type == tlsrpt.PolicySTS {
			mxset = MXSet(p.MXPatterns)
		}
		failures := make([][]Failure, len(ds))
		for _, d := range p.Failures {
			mx := d.ReceivingMXHostname
			if mx == "" {
				mx = UnknownMX
			}
			for i, n := range split(d.FailedSessions, ws) {
				if n > 0 {
					failures[i] = append(failures[i], Failure{ResultType: d.ResultType, MX: mx, SendingIP: d.SendingMTAIP,
						ReceivingIP: d.ReceivingIP, Reason: d.FailureReasonCode, Count: n})
				}
			}
		}
		for i, day := range ds {
			rk := rowKey{p.Domain, day, p.Type, rep.OrganizationName}
			r := rows[rk]
			if r == nil {
				r = &Row{Domain: p.Domain, Day: day, Type: p.Type, Organization: rep.OrganizationName, Reports: []Ref{ref}}
				rows[rk] = r
				order = append(order, rk)
			}
			r.Successful += succ[i]
			r.Failed += fail[i]
			r.DetailsFailed += det[i]
			r.Failures = mergeFailures(r.Failures, failures[i])
			if p.Type == tlsrpt.PolicySTS && !slices.Contains(r.MXSets, mxset) {
				r.MXSets = append(r.MXSets, mxset)
			}
		}
	}
	out := make([]Row, 0, len(order))
	for _, k := range order {
		out = append(out, *rows[k])
	}
	var doms []DomainRow
	for _, dom := range domOrder {
		pd := byDomain[dom]
		sessions, failed := max(pd.sts, pd.tlsa)+pd.npf, pd.npfF
		if pd.sts >= pd.tlsa {
			failed += pd.stsF
		} else {
			failed += pd.tlsaF
		}
		sess, fl := split(sessions, ws), split(failed, ws)
		for i, day := range ds {
			doms = append(doms, DomainRow{Domain: dom, Day: day, Organization: rep.OrganizationName, Sessions: sess[i], Failed: fl[i]})
		}
	}
	return out, doms
}

// Merge sums rows of distinct reports (each given once: deduplication is
// the caller's) into a Summary, sorted by domain, day, policy type and
// organisation.
func Merge(in []Row, inDoms []DomainRow) *Summary {
	s := &Summary{}
	rows := make(map[rowKey]*Row, len(in))
	for _, x := range in {
		rk := rowKey{x.Domain, x.Day, x.Type, x.Organization}
		r := rows[rk]
		if r == nil {
			c := x
			c.Failures = slices.Clone(x.Failures)
			c.Reports = slices.Clone(x.Reports)
			c.MXSets = slices.Clone(x.MXSets)
			rows[rk] = &c
			continue
		}
		r.Successful += x.Successful
		r.Failed += x.Failed
		r.DetailsFailed += x.DetailsFailed
		r.Failures = mergeFailures(r.Failures, x.Failures)
		for _, ref := range x.Reports {
			if !slices.Contains(r.Reports, ref) {
				r.Reports = append(r.Reports, ref)
			}
		}
		for _, m := range x.MXSets {
			if !slices.Contains(r.MXSets, m) {
				r.MXSets = append(r.MXSets, m)
			}
		}
	}
	doms := make(map[domKey]*DomainRow, len(inDoms))
	for _, x := range inDoms {
		dk := domKey{x.Domain, x.Day, x.Organization}
		if dr := doms[dk]; dr != nil {
			dr.Sessions += x.Sessions
			dr.Failed += x.Failed
		} else {
			c := x
			doms[dk] = &c
		}
	}
	// Sort the keys, not the rows: a Row is large to swap.
	rks := make([]rowKey, 0, len(rows))
	for k := range rows {
		rks = append(rks, k)
	}
	slices.SortFunc(rks, func(a, b rowKey) int {
		return cmp.Or(cmp.Compare(a.domain, b.domain), a.day.Compare(b.day), cmp.Compare(a.typ, b.typ), cmp.Compare(a.org, b.org))
	})
	s.Rows = make([]Row, 0, len(rks))
	for _, k := range rks {
		s.Rows = append(s.Rows, *rows[k])
	}
	dks := make([]domKey, 0, len(doms))
	for k := range doms {
		dks = append(dks, k)
	}
	slices.SortFunc(dks, func(a, b domKey) int {
		return cmp.Or(cmp.Compare(a.domain, b.domain), a.day.Compare(b.day), cmp.Compare(a.org, b.org))
	})
	s.DomainRows = make([]DomainRow, 0, len(dks))
	for _, k := range dks {
		s.DomainRows = append(s.DomainRows, *doms[k])
	}
	return s
}

// mergeFailures adds more to fs, summing equal kinds.
func mergeFailures(fs, more []Failure) []Failure {
	for _, f := range more {
		i := slices.IndexFunc(fs, func(g Failure) bool {
			return g.ResultType == f.ResultType && g.MX == f.MX && g.SendingIP == f.SendingIP && g.ReceivingIP == f.ReceivingIP && g.Reason == f.Reason
		})
		if i >= 0 {
			fs[i].Count += f.Count
		} else {
			fs = append(fs, f)
		}
	}
	return fs
}

// Filter selects rows. Zero fields match everything; From and To bound
// the day (From inclusive, To exclusive).
type Filter struct {
	Domain       string
	Type         tlsrpt.PolicyType
	Organization string
	From, To     time.Time
}

func (f Filter) match(domain string, day time.Time, typ tlsrpt.PolicyType, org string) bool {
	return (f.Domain == "" || f.Domain == domain) &&
		(f.Type == "" || f.Type == typ) &&
		(f.Organization == "" || f.Organization == org) &&
		(f.From.IsZero() || !day.Before(f.From)) &&
		(f.To.IsZero() || day.Before(f.To))
}

// Totals are the sums over the rows of one policy type.
type Totals struct {
	Type          tlsrpt.PolicyType `json:"type"`
	Successful    int64             `json:"successful"`
	Failed        int64             `json:"failed"`
	DetailsFailed int64             `json:"details_failed"`
	// The failures broken down; the keys of ByMX include UnknownMX.
	ByResult       map[tlsrpt.ResultType]int64 `json:"failures_by_result_type"`
	ByMX           map[string]int64            `json:"failures_by_receiving_mx"`
	BySendingIP    map[string]int64            `json:"failures_by_sending_ip"`
	ByOrganization map[string]OrgTotals        `json:"by_organization"`
	Days           []time.Time                 `json:"days"`
	Reports        []Ref                       `json:"reports"`
}

// OrgTotals are one reporter's sums.
type OrgTotals struct {
	Successful int64 `json:"successful"`
	Failed     int64 `json:"failed"`
}

// Sessions is Successful + Failed.
func (t *Totals) Sessions() int64 { return t.Successful + t.Failed }

// Totals sums the rows of exactly one policy type (f.Type must be set:
// sts and tlsa are never added together). It returns the zero Totals when
// f.Type is empty.
func (s *Summary) Totals(f Filter) Totals {
	t := Totals{Type: f.Type, ByResult: map[tlsrpt.ResultType]int64{}, ByMX: map[string]int64{}, BySendingIP: map[string]int64{}, ByOrganization: map[string]OrgTotals{}}
	if f.Type == "" {
		return t
	}
	days, refs := map[time.Time]bool{}, map[Ref]bool{}
	for _, r := range s.Rows {
		if !f.match(r.Domain, r.Day, r.Type, r.Organization) {
			continue
		}
		t.Successful += r.Successful
		t.Failed += r.Failed
		t.DetailsFailed += r.DetailsFailed
		o := t.ByOrganization[r.Organization]
		o.Successful += r.Successful
		o.Failed += r.Failed
		t.ByOrganization[r.Organization] = o
		for _, fl := range r.Failures {
			t.ByResult[fl.ResultType] += fl.Count
			t.ByMX[fl.MX] += fl.Count
			if fl.SendingIP != "" {
				t.BySendingIP[fl.SendingIP] += fl.Count
			}
		}
		if !days[r.Day] {
			days[r.Day] = true
			t.Days = append(t.Days, r.Day)
		}
		for _, ref := range r.Reports {
			if !refs[ref] {
				refs[ref] = true
				t.Reports = append(t.Reports, ref)
			}
		}
	}
	slices.SortFunc(t.Days, time.Time.Compare)
	return t
}

// DayTotals is one day of a series.
type DayTotals struct {
	Day        time.Time `json:"day"`
	Successful int64     `json:"successful"`
	Failed     int64     `json:"failed"`
}

// Daily is the day-by-day series of one policy type (f.Type must be set),
// one entry per day that has rows.
func (s *Summary) Daily(f Filter) []DayTotals {
	if f.Type == "" {
		return nil
	}
	var out []DayTotals
	for _, r := range s.Rows {
		if !f.match(r.Domain, r.Day, r.Type, r.Organization) {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Day.Equal(r.Day) {
			out[n-1].Successful += r.Successful
			out[n-1].Failed += r.Failed
			continue
		}
		out = append(out, DayTotals{Day: r.Day, Successful: r.Successful, Failed: r.Failed})
	}
	return out
}

// DomainTotals is the per-domain figure over f (f.Type is ignored): each
// session counted once, sts and tlsa never added (see [Aggregate]).
func (s *Summary) DomainTotals(f Filter) (sessions, failed int64) {
	f.Type = ""
	for _, d := range s.DomainRows {
		if f.match(d.Domain, d.Day, "", d.Organization) {
			sessions += d.Sessions
			failed += d.Failed
		}
	}
	return sessions, failed
}
