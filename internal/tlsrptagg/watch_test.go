package tlsrptagg

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// watchNow is the decision time of the watch tests: the reports of the
// days before it are complete.
var watchNow = time.Date(2026, 5, 1, 7, 0, 0, 0, time.UTC)

// daily is one organisation's report about example.com for the day that
// many days before watchNow's: typ sessions, failed of them on mx.
func daily(org string, daysAgo int, typ tlsrpt.PolicyType, ok, failed int64, mx string) *tlsrpt.Report {
	day := Day(watchNow).AddDate(0, 0, -daysAgo)
	p := tlsrpt.Policy{Type: typ, Domain: "example.com", Successful: ok, Failed: failed, DetailsFailed: failed}
	if typ == tlsrpt.PolicySTS {
		p.MXPatterns = []string{"mx1.example.com", "mx2.example.com"}
	}
	if failed > 0 {
		p.Failures = []tlsrpt.FailureDetail{{ResultType: tlsrpt.CertificateExpired, ReceivingMXHostname: mx, SendingMTAIP: "192.0.2.1", FailedSessions: failed}}
	}
	return &tlsrpt.Report{OrganizationName: org, ReportID: fmt.Sprintf("%s-%d-%s", org, daysAgo, typ), Start: day, End: day.Add(24*time.Hour - time.Second),
		Policies: []tlsrpt.Policy{p}}
}

func watchCurrent() Current {
	return Current{Policy: &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeTesting, MaxAge: 86400, MX: []string{"mx1.example.com", "mx2.example.com"}},
		Scan: &Scan{MXKnown: true, MX: map[string]MXState{
			"mx1.example.com": {Probed: true, Pass: true},
			"mx2.example.com": {Probed: true, Pass: true},
			"mx3.example.com": {Probed: true, Pass: true}, // an MX the policy does not name
		}}}
}

func watch(t *testing.T, reports []*tlsrpt.Report, open map[finding.ID][]string) ([]string, bool) {
	t.Helper()
	fs, blind := Watch(WatchInput{Domain: "example.com", Now: watchNow, Current: watchCurrent(), Summary: Aggregate(reports), Open: open})
	var out []string
	for _, f := range fs {
		if f.Message == "" || f.Component != finding.ComponentReports {
			t.Errorf("finding %+v", f)
		}
		out = append(out, string(f.ID)+"@"+f.Subject)
	}
	return out, blind
}

// steady is 35 days of clean daily reports from google.com, and from
// microsoft.com under both sts and tlsa (the same sessions twice,
// tlsrpt-landscape.md §5.2 B-1), with a small steady failure rate.
func steady(skip func(org string, daysAgo int) bool) []*tlsrpt.Report {
	var out []*tlsrpt.Report
	for ago := 1; ago <= 35; ago++ {
		for _, org := range []string{"google.com", "microsoft.com"} {
			if skip != nil && skip(org, ago) {
				continue
			}
			out = append(out, daily(org, ago, tlsrpt.PolicySTS, 995, 5, "mx1.example.com"))
			if org == "microsoft.com" {
				out = append(out, daily(org, ago, tlsrpt.PolicyTLSA, 995, 5, "mx1.example.com"))
			}
		}
	}
	return out
}

func TestWatchQuiet(t *testing.T) {
	// A steady 0.5% failure rate on a healthy MX raises nothing.
	got, blind := watch(t, steady(nil), nil)
	if len(got) != 0 || blind {
		t.Fatalf("steady reports: %v blind=%t", got, blind)
	}
	// No report in the recent days: blind, nothing told or resolved.
	got, blind = watch(t, nil, nil)
	if len(got) != 0 || !blind {
		t.Fatalf("no reports: %v blind=%t", got, blind)
	}
}

// A failure on an MX the policy does not cover is blocking under enforce
// (RFC 8461 §4.1); today's incomplete reports do not count; reports older
// than the recent window do not raise it.
func TestWatchBlocking(t *testing.T) {
	reps := append(steady(nil), daily("yahoo.com", 2, tlsrpt.PolicySTS, 10, 4, "mx3.example.com"))
	got, _ := watch(t, reps, nil)
	if !slices.Equal(got, []string{"reports-blocking-failure@mx3.example.com"}) {
		t.Fatalf("blocking: %v", got)
	}
	fs, _ := Watch(WatchInput{Domain: "example.com", Now: watchNow, Current: watchCurrent(), Summary: Aggregate(reps)})
	if m := fs[0].Message; !strings.Contains(m, "4 failed session(s) to mx3.example.com") || !strings.Contains(m, "yahoo.com") || !strings.Contains(m, "not covered") {
		t.Fatalf("message %q", m)
	}
	for _, ago := range []int{0, 4} {
		reps := append(steady(nil), daily("yahoo.com", ago, tlsrpt.PolicySTS, 10, 4, "mx3.example.com"))
		if got, _ := watch(t, reps, nil); len(got) != 0 {
			t.Errorf("a failure %d days ago: %v", ago, got)
		}
	}
	// Failures on a covered MX that today's scan shows healthy, with
	// clean reports after them, are not blocking.
	reps = append(steady(nil), daily("yahoo.com", 3, tlsrpt.PolicySTS, 10, 4, "mx2.example.com"))
	if got, _ := watch(t, reps, nil); len(got) != 0 {
		t.Errorf("a resolved failure: %v", got)
	}
	// At most MaxBlockingMX findings, however many hosts reports name.
	reps = steady(nil)
	for i := range 30 {
		reps = append(reps, daily(fmt.Sprintf("r%d.example", i), 1, tlsrpt.PolicySTS, 10, int64(i+1), fmt.Sprintf("mx%d.other.example", i)))
	}
	cur := watchCurrent()
	cur.Scan.MXKnown = false // today's MX lookup failed: any host may be an MX
	fs, _ = Watch(WatchInput{Domain: "example.com", Now: watchNow, Current: cur, Summary: Aggregate(reps)})
	fs = slices.DeleteFunc(fs, func(f finding.Finding) bool { return f.ID != finding.ReportsBlockingFailure }) // the rate jumped too
	if len(fs) != MaxBlockingMX || fs[0].Subject != "mx29.other.example" || !strings.Contains(fs[MaxBlockingMX-1].Message, "20 more MX hosts") {
		t.Fatalf("many hosts: %d findings, first %+v last %+v", len(fs), fs[0], fs[len(fs)-1])
	}
}

// The rate jump is judged per policy type against the domain's own
// baseline, with a hysteresis once open.
func TestWatchFailureRate(t *testing.T) {
	// microsoft.com's tlsa sessions fail at 1%, 1.4% or 6% in the last
	// three days, against 0.5% before; sts stays at 0.5%.
	with := func(failed int64) []*tlsrpt.Report {
		reps := steady(func(org string, ago int) bool { return org == "microsoft.com" && ago <= 3 })
		for ago := 1; ago <= 3; ago++ {
			reps = append(reps, daily("microsoft.com", ago, tlsrpt.PolicySTS, 995, 5, "mx1.example.com"),
				daily("microsoft.com", ago, tlsrpt.PolicyTLSA, 1000-failed, failed, "mx1.example.com"))
		}
		return reps
	}
	open := map[finding.ID][]string{finding.ReportsFailureRate: {"tlsa"}}
	for _, tc := range []struct {
		failed int64
		open   bool
		want   bool
	}{
		{10, false, false}, // 1%: 2x the baseline
		{14, false, false}, // 1.4%: not 3x (1.5%) nor one point above
		{60, false, true},  // 6%
		{14, true, true},   // once open, half the jump keeps it (0.75%, half a point)
		{10, true, false},  // back to 1%: resolved
	} {
		var o map[finding.ID][]string
		if tc.open {
			o = open
		}
		got, _ := watch(t, with(tc.failed), o)
		if want := tc.want; slices.Equal(got, []string{"reports-failure-rate@tlsa"}) != want {
			t.Errorf("%d failed per day (open %t): %v, want a tlsa rate finding %t", tc.failed, tc.open, got, want)
		}
	}
	// Too few sessions: no rate.
	reps := []*tlsrpt.Report{daily("google.com", 1, tlsrpt.PolicySTS, 10, 10, "mx1.example.com")}
	for ago := 4; ago < 30; ago++ {
		reps = append(reps, daily("google.com", ago, tlsrpt.PolicySTS, 1000, 0, "mx1.example.com"))
	}
	if got, _ := watch(t, reps, nil); slices.Contains(got, "reports-failure-rate@sts") {
		t.Errorf("20 sessions judged: %v", got)
	}
}

// A reporter that sent daily reports and then none for 7 days is silent
// (tlsrpt-landscape.md §5.2 D-2); one that reported 6 days ago is not;
// once open it stays until the reporter reports again.
func TestWatchSilent(t *testing.T) {
	for _, tc := range []struct {
		quiet int
		want  []string
	}{
		{6, nil},
		{7, []string{"reports-reporter-silent@microsoft.com"}},
		{34, nil}, // reported on fewer than 7 of the 28 days before its silence: not regular
	} {
		reps := steady(func(org string, ago int) bool { return org == "microsoft.com" && ago <= tc.quiet })
		if got, _ := watch(t, reps, nil); !slices.Equal(got, tc.want) {
			t.Errorf("silent for %d days: %v, want %v", tc.quiet, got, tc.want)
		}
	}
	open := map[finding.ID][]string{finding.ReportsReporterSilent: {"microsoft.com"}}
	reps := steady(func(org string, ago int) bool { return org == "microsoft.com" })
	if got, _ := watch(t, reps, open); !slices.Equal(got, []string{"reports-reporter-silent@microsoft.com"}) {
		t.Errorf("silent longer than the lookback, open: %v", got)
	}
	reps = steady(func(org string, ago int) bool { return org == "microsoft.com" && ago > 1 })
	if got, _ := watch(t, reps, open); len(got) != 0 {
		t.Errorf("reporting again: %v", got)
	}
}
