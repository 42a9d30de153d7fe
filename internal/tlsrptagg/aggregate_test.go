package tlsrptagg

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/tlsrpt"
)

var today = time.Date(2026, 6, 30, 9, 0, 0, 0, time.UTC)

func d(n int) time.Time { return Day(today).AddDate(0, 0, -n) } // n days before today

// rep builds a report the way a sender writes it and reads it back with
// the parser, so the patterns and notes are what the real intake sees.
func rep(t testing.TB, org, id string, start, end time.Time, pols ...tlsrpt.Policy) *tlsrpt.Report {
	t.Helper()
	r := &tlsrpt.Report{OrganizationName: org, ContactInfo: "tlsrpt@" + org, ReportID: id, Start: start, End: end, Policies: pols}
	b, err := r.MarshalRFC()
	if err != nil {
		t.Fatal(err)
	}
	out, err := tlsrpt.ParseJSON(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dayRep is a one-day report (Google's 00:00:00Z–23:59:59Z).
func dayRep(t testing.TB, org string, day time.Time, pols ...tlsrpt.Policy) *tlsrpt.Report {
	return rep(t, org, fmt.Sprintf("%s_%s", day.Format(time.RFC3339), org), day, day.Add(24*time.Hour-time.Second), pols...)
}

func sts(domain string, mx []string, ok int64, failures ...tlsrpt.FailureDetail) tlsrpt.Policy {
	strs := []string{"version: STSv1", "mode: testing"}
	for _, m := range mx {
		strs = append(strs, "mx: "+m)
	}
	strs = append(strs, "max_age: 604800")
	p := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: domain, Strings: strs, Successful: ok, Failures: failures}
	for _, f := range failures {
		p.Failed += f.FailedSessions
	}
	return p
}

func fail(rt tlsrpt.ResultType, mx string, n int64) tlsrpt.FailureDetail {
	return tlsrpt.FailureDetail{ResultType: rt, ReceivingMXHostname: mx, SendingMTAIP: "192.0.2.7", FailedSessions: n}
}

func TestSplit(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		ws   []int64
		want []int64
	}{
		{7, []int64{86400}, []int64{7}},
		{7, []int64{1, 1, 1, 1, 1, 1, 1}, []int64{1, 1, 1, 1, 1, 1, 1}},
		{1, []int64{86400, 86400, 86400}, []int64{1, 0, 0}},
		{10, []int64{7200, 7200}, []int64{5, 5}},
		{5, []int64{86400, 86399}, []int64{3, 2}},
		{0, []int64{5, 5}, []int64{0, 0}},
		{1 << 40, []int64{86400, 86400}, []int64{1 << 39, 1 << 39}},
	} {
		got := split(tt.n, tt.ws)
		if !slices.Equal(got, tt.want) {
			t.Errorf("split(%d, %v) = %v, want %v", tt.n, tt.ws, got, tt.want)
		}
	}
}

// RFC 8460 §4.4: one UTC day, however the sender writes its end.
func TestDays(t *testing.T) {
	day0 := time.Date(2024, 2, 22, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name       string
		start, end time.Time
		days       int
	}{
		{"Google 23:59:59Z", day0, day0.Add(24*time.Hour - time.Second), 1},
		{"Mail.ru next day 00:00Z", day0, day0.Add(24 * time.Hour), 1},
		{"one hour", day0.Add(13 * time.Hour), day0.Add(14 * time.Hour), 1},
		{"a week", day0, day0.AddDate(0, 0, 7).Add(-time.Second), 7},
		{"across midnight", day0.Add(22 * time.Hour), day0.Add(26 * time.Hour), 2},
		{"zero length", day0.Add(5 * time.Hour), day0.Add(5 * time.Hour), 1},
	} {
		ds, ws := days(tt.start, tt.end)
		if len(ds) != tt.days || len(ws) != tt.days || !ds[0].Equal(Day(tt.start)) {
			t.Errorf("%s: %v %v", tt.name, ds, ws)
		}
	}
}

// B-1: Microsoft reports a DANE domain's 7 sessions (6 failed) under both
// sts and tlsa: each type shows 7/6, and so does the per-domain figure,
// never 14/12.
func TestNoDoubleCount(t *testing.T) {
	tlsa := tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, Domain: "dane.test", Strings: []string{"3 1 1 ABCD"}, Successful: 1, Failed: 6,
		Failures: []tlsrpt.FailureDetail{fail(tlsrpt.ValidationFailure, "mx.dane.test", 6)}}
	r := dayRep(t, "Microsoft Corporation", d(1), sts("dane.test", []string{"mx.dane.test"}, 1, fail(tlsrpt.ValidationFailure, "mx.dane.test", 6)), tlsa)
	s := Aggregate([]*tlsrpt.Report{r})
	for _, typ := range []tlsrpt.PolicyType{tlsrpt.PolicySTS, tlsrpt.PolicyTLSA} {
		tot := s.Totals(Filter{Domain: "dane.test", Type: typ})
		if tot.Sessions() != 7 || tot.Failed != 6 || tot.ByMX["mx.dane.test"] != 6 {
			t.Errorf("%s: %d sessions, %d failed, %v", typ, tot.Sessions(), tot.Failed, tot.ByMX)
		}
	}
	if sess, failed := s.DomainTotals(Filter{Domain: "dane.test"}); sess != 7 || failed != 6 {
		t.Errorf("per-domain figure %d/%d, want 7/6", sess, failed)
	}
	if tot := s.Totals(Filter{Domain: "dane.test"}); tot.Sessions() != 0 {
		t.Errorf("Totals without a type summed %d sessions", tot.Sessions())
	}
	// A no-policy-found entry beside them adds its own sessions.
	r2 := dayRep(t, "Google Inc.", d(1), sts("dane.test", []string{"mx.dane.test"}, 10), tlsrpt.Policy{Type: tlsrpt.PolicyNotFound, Domain: "dane.test", Successful: 3})
	s = Aggregate([]*tlsrpt.Report{r, r2})
	if sess, _ := s.DomainTotals(Filter{Domain: "dane.test"}); sess != 7+13 {
		t.Errorf("per-domain figure %d, want 20", sess)
	}
}

// B-2: two organisations, one domain and day: summed per type; every MX in
// the per-MX table, failures without a host under an explicit unknown MX.
func TestPerMX(t *testing.T) {
	a := dayRep(t, "Google Inc.", d(1), sts("x.test", []string{"*.x.test"}, 50, fail(tlsrpt.CertificateExpired, "mx1.x.test", 3), fail(tlsrpt.STARTTLSNotSupported, "mx2.x.test", 2)))
	b := dayRep(t, "Mail.ru", d(1), tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "x.test", Failed: 4,
		Failures: []tlsrpt.FailureDetail{{ResultType: tlsrpt.STSPolicyFetchError, FailedSessions: 4, FailureReasonCode: "bad https response code: 404"}}})
	s := Aggregate([]*tlsrpt.Report{a, b})
	tot := s.Totals(Filter{Domain: "x.test", Type: tlsrpt.PolicySTS})
	if tot.Successful != 50 || tot.Failed != 9 {
		t.Errorf("%d/%d", tot.Successful, tot.Failed)
	}
	want := map[string]int64{"mx1.x.test": 3, "mx2.x.test": 2, UnknownMX: 4}
	for mx, n := range want {
		if tot.ByMX[mx] != n {
			t.Errorf("ByMX[%s] = %d, want %d (%v)", mx, tot.ByMX[mx], n, tot.ByMX)
		}
	}
	if len(tot.ByOrganization) != 2 || tot.ByOrganization["Mail.ru"].Failed != 4 || tot.BySendingIP["192.0.2.7"] != 5 {
		t.Errorf("%+v %+v", tot.ByOrganization, tot.BySendingIP)
	}
	if tot.ByResult[tlsrpt.STSPolicyFetchError] != 4 || tot.ByResult[tlsrpt.CertificateExpired] != 3 {
		t.Errorf("%v", tot.ByResult)
	}
}

// B-3: a report of one hour and one of a week are attributed to the days
// they overlap; no day counts a report twice, and a report given twice
// counts once.
func TestAttribution(t *testing.T) {
	hour := rep(t, "Stalwart", "h1", d(10).Add(13*time.Hour), d(10).Add(14*time.Hour), sts("x.test", []string{"mx.x.test"}, 5))
	week := rep(t, "Weekly", "w1", d(9), d(2).Add(-time.Second), sts("x.test", []string{"mx.x.test"}, 70, fail(tlsrpt.CertificateExpired, "mx.x.test", 7)))
	s := Aggregate([]*tlsrpt.Report{hour, week, week})
	if len(s.Duplicates) != 1 || s.Duplicates[0].ReportID != "w1" {
		t.Errorf("duplicates %+v", s.Duplicates)
	}
	daily := s.Daily(Filter{Domain: "x.test", Type: tlsrpt.PolicySTS})
	if len(daily) != 8 {
		t.Fatalf("%d days: %+v", len(daily), daily)
	}
	if daily[0].Day != d(10) || daily[0].Successful != 5 {
		t.Errorf("hour report: %+v", daily[0])
	}
	var ok, failed int64
	for _, x := range daily[1:] {
		if x.Successful != 10 || x.Failed != 1 {
			t.Errorf("week day %+v", x)
		}
		ok += x.Successful
		failed += x.Failed
	}
	if ok != 70 || failed != 7 {
		t.Errorf("week sums %d/%d", ok, failed)
	}
	tot := s.Totals(Filter{Domain: "x.test", Type: tlsrpt.PolicySTS, From: d(9), To: d(8)})
	if tot.Sessions() != 11 || len(tot.Reports) != 1 {
		t.Errorf("one day of the week: %+v", tot)
	}
}

// A store keeps each report's rows and merges those of a window: the
// result must be Aggregate's, whatever the order the rows come back in.
func TestMergeIsAggregate(t *testing.T) {
	tlsa := tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, Domain: "x.test", Strings: []string{"3 1 1 ABCD"}, Successful: 1, Failed: 6,
		Failures: []tlsrpt.FailureDetail{fail(tlsrpt.ValidationFailure, "mx.x.test", 6)}}
	reps := []*tlsrpt.Report{
		rep(t, "Stalwart", "h1", d(10).Add(13*time.Hour), d(10).Add(14*time.Hour), sts("x.test", []string{"mx.x.test"}, 5)),
		rep(t, "Weekly", "w1", d(9), d(2).Add(-time.Second), sts("x.test", []string{"mx.x.test"}, 70, fail(tlsrpt.CertificateExpired, "mx.x.test", 7))),
		dayRep(t, "Microsoft Corporation", d(3), sts("x.test", []string{"mx.x.test"}, 1, fail(tlsrpt.ValidationFailure, "mx.x.test", 6)), tlsa),
		// Google when the policy changed during the day: two sts entries.
		dayRep(t, "Google Inc.", d(3), sts("x.test", []string{"mx.x.test"}, 9), sts("x.test", []string{"mx.x.test", "mx2.x.test"}, 4,
			fail(tlsrpt.CertificateHostMismatch, "mx2.x.test", 1)), tlsrpt.Policy{Type: tlsrpt.PolicyNotFound, Domain: "x.test", Successful: 3}),
		dayRep(t, "Google Inc.", d(2), sts("y.test", []string{"mx.y.test"}, 9)),
	}
	want := Aggregate(reps)
	var rows []Row
	var doms []DomainRow
	for i := len(reps) - 1; i >= 0; i-- {
		r, d := ReportRows(reps[i])
		rows = append(rows, r...)
		doms = append(doms, d...)
	}
	slices.Reverse(rows)
	got := Merge(rows, doms)
	if fmt.Sprint(got.Rows) != fmt.Sprint(want.Rows) || fmt.Sprint(got.DomainRows) != fmt.Sprint(want.DomainRows) {
		t.Fatalf("merged rows differ from Aggregate:\n%+v\n%+v", got.Rows, want.Rows)
	}
	if n := len(got.Rows); n != 13 {
		t.Errorf("%d rows", n)
	}
}
