package tlsrptagg

import (
	"cmp"
	"slices"
	"time"

	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// Sums are a window's figures for one domain, summed per policy type:
// what a summary shows, without the rows it was summed from. A store sums
// them in its own query language (a year of reports is thousands of rows);
// [Summary.Sums] is the reference they must agree with.
type Sums struct {
	// Types has one entry per policy type with rows, sorted by type.
	// sts and tlsa are never added together (Microsoft reports a DANE
	// domain's sessions under both; tlsrpt-landscape.md §5.2 B-1).
	Types []TypeSums `json:"policies"`
	// Sessions and Failed count each session once whatever the policy
	// type ([Summary.DomainTotals]).
	Sessions int64 `json:"sessions"`
	Failed   int64 `json:"failed"`
	// Reports is how many distinct reports have rows in the window.
	Reports int `json:"reports"`
	// Reporters has one entry per reporting organisation, sorted by name.
	Reporters []ReporterSums `json:"reporters"`
}

// ReporterSums are one reporting organisation's figures: sessions counted
// once whatever the policy type, and the first and last day it reported.
type ReporterSums struct {
	Organization string    `json:"organization"`
	Reports      int       `json:"reports"`
	Sessions     int64     `json:"sessions"`
	Failed       int64     `json:"failed"`
	FirstDay     time.Time `json:"first_day"`
	LastDay      time.Time `json:"last_day"`
}

// TypeSums are the sums of one policy type.
type TypeSums struct {
	Type          tlsrpt.PolicyType `json:"type"`
	Successful    int64             `json:"successful"`
	Failed        int64             `json:"failed"`
	DetailsFailed int64             `json:"details_failed"`
	// The failure details broken down; the keys of ByMX include
	// UnknownMX, BySendingIP leaves out details without an address.
	ByResult       map[tlsrpt.ResultType]int64 `json:"failures_by_result_type"`
	ByMX           map[string]int64            `json:"failures_by_receiving_mx"`
	BySendingIP    map[string]int64            `json:"failures_by_sending_ip"`
	ByOrganization map[string]OrgTotals        `json:"by_organization"`
	// Reports is how many distinct reports have rows of this type.
	Reports int `json:"reports"`
	// Daily has one entry per day with rows, oldest first.
	Daily []DayTotals `json:"daily"`
}

// NewTypeSums returns empty sums of type t, with its maps made.
func NewTypeSums(t tlsrpt.PolicyType) TypeSums {
	return TypeSums{Type: t, ByResult: map[tlsrpt.ResultType]int64{}, ByMX: map[string]int64{}, BySendingIP: map[string]int64{},
		ByOrganization: map[string]OrgTotals{}, Daily: []DayTotals{}}
}

// Sums sums the rows of domain, per policy type.
func (s *Summary) Sums(domain string) *Sums {
	out := &Sums{Types: []TypeSums{}}
	seen := map[tlsrpt.PolicyType]bool{}
	for _, r := range s.Rows {
		if r.Domain == domain && !seen[r.Type] {
			seen[r.Type] = true
			f := Filter{Domain: domain, Type: r.Type}
			tot := s.Totals(f)
			ts := TypeSums{Type: r.Type, Successful: tot.Successful, Failed: tot.Failed, DetailsFailed: tot.DetailsFailed,
				ByResult: tot.ByResult, ByMX: tot.ByMX, BySendingIP: tot.BySendingIP, ByOrganization: tot.ByOrganization,
				Reports: len(tot.Reports), Daily: s.Daily(f)}
			out.Types = append(out.Types, ts)
		}
	}
	slices.SortFunc(out.Types, func(a, b TypeSums) int { return cmp.Compare(a.Type, b.Type) })
	out.Sessions, out.Failed = s.DomainTotals(Filter{Domain: domain})
	// Reports, from the rows' references (every report has a row per
	// domain it is about and day it covers).
	refs := map[Ref]bool{}
	reports := map[string]int{}
	for _, r := range s.Rows {
		for _, ref := range r.Reports {
			if r.Domain == domain && !refs[ref] {
				refs[ref] = true
				reports[ref.Organization]++
			}
		}
	}
	out.Reports = len(refs)
	by := map[string]*ReporterSums{}
	out.Reporters = []ReporterSums{}
	for _, d := range s.DomainRows {
		if d.Domain != domain {
			continue
		}
		rp := by[d.Organization]
		if rp == nil {
			rp = &ReporterSums{Organization: d.Organization, Reports: reports[d.Organization], FirstDay: d.Day, LastDay: d.Day}
			by[d.Organization] = rp
		}
		rp.Sessions += d.Sessions
		rp.Failed += d.Failed
		if d.Day.Before(rp.FirstDay) {
			rp.FirstDay = d.Day
		}
		if d.Day.After(rp.LastDay) {
			rp.LastDay = d.Day
		}
	}
	for _, rp := range by {
		out.Reporters = append(out.Reporters, *rp)
	}
	slices.SortFunc(out.Reporters, func(a, b ReporterSums) int { return cmp.Compare(a.Organization, b.Organization) })
	return out
}

// AddDay adds one day's figures to t: its daily entry (days given in
// order) and the totals.
func (t *TypeSums) AddDay(day time.Time, successful, failed, detailsFailed int64) {
	if n := len(t.Daily); n > 0 && t.Daily[n-1].Day.Equal(day) {
		t.Daily[n-1].Successful += successful
		t.Daily[n-1].Failed += failed
	} else {
		t.Daily = append(t.Daily, DayTotals{Day: day, Successful: successful, Failed: failed})
	}
	t.Successful += successful
	t.Failed += failed
	t.DetailsFailed += detailsFailed
}

// AddFailures adds n failed sessions of one kind to the breakdowns.
func (t *TypeSums) AddFailures(result tlsrpt.ResultType, mx, sendingIP string, n int64) {
	t.ByResult[result] += n
	t.ByMX[mx] += n
	if sendingIP != "" {
		t.BySendingIP[sendingIP] += n
	}
}
