package tlsrptagg

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

var mxs = []string{"mx1.x.test", "mx2.x.test"}

// history is n days of clean daily reports (ending yesterday) from each
// organisation, each with ok sessions about the policy with patterns mx.
func history(t *testing.T, n int, ok int64, mx []string, orgs ...string) []*tlsrpt.Report {
	var out []*tlsrpt.Report
	for _, org := range orgs {
		for i := 1; i <= n; i++ {
			out = append(out, dayRep(t, org, d(i), sts("x.test", mx, ok)))
		}
	}
	return out
}

func codesOf(rs []Reason) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Code)
	}
	return out
}

func expect(t *testing.T, v *Verdict, status Status, codes ...string) {
	t.Helper()
	if v.Status != status {
		t.Errorf("status %s, want %s; reasons %+v", v.Status, status, v.Reasons)
	}
	got := codesOf(v.Reasons)
	for _, c := range codes {
		if !slices.Contains(got, c) {
			t.Errorf("no %s reason in %v", c, got)
		}
	}
	if v.Next == "" || (v.Status != Ready && len(v.Reasons) == 0) {
		t.Errorf("verdict without next step or reasons: %+v", v)
	}
	for _, r := range v.Reasons {
		if r.Text == "" {
			t.Errorf("reason without text: %+v", r)
		}
	}
}

func servedTesting(mx ...string) Current {
	return Current{Policy: policy(mtasts.ModeTesting, mx...), PolicyID: "20260601000000", Scan: healthy(mx...)}
}

// C-1: testing, a clean scan, 14 days of reports from two organisations,
// at least 100 sessions and no failures: ready, citing the reports.
func TestReadyC1(t *testing.T) {
	v := Readiness(Input{Domain: "x.test", Now: today, Current: servedTesting(mxs...), Reports: history(t, 14, 4, mxs, "Google Inc.", "Microsoft Corporation")})
	expect(t, v, Ready)
	if v.Sessions != 112 || len(v.Organizations) != 2 || len(v.Evidence) != 28 || v.PolicyID != "20260601000000" || !v.Since.Equal(d(14)) {
		t.Errorf("%+v", v)
	}
	if !strings.Contains(v.Next, "mailtls policy promote x.test") {
		t.Errorf("next: %s", v.Next)
	}
}

// C-2: one organisation, or 40 sessions, is not enough data, and the
// verdict says what is missing.
func TestNotEnoughDataC2(t *testing.T) {
	v := Readiness(Input{Domain: "x.test", Now: today, Current: servedTesting(mxs...), Reports: history(t, 14, 10, mxs, "Google Inc.")})
	expect(t, v, NotEnoughData, ReasonFewOrgs)
	if !strings.Contains(v.Reasons[0].Text, "1 organisation(s)") {
		t.Errorf("%s", v.Reasons[0].Text)
	}
	v = Readiness(Input{Domain: "x.test", Now: today, Current: servedTesting(mxs...), Reports: history(t, 10, 2, mxs, "Google Inc.", "Microsoft Corporation")[:20]})
	expect(t, v, NotEnoughData, ReasonFewSessions)
	if !strings.Contains(v.Next, "40 session(s)") {
		t.Errorf("next: %s", v.Next)
	}
	// Two days of plenty is not two weeks.
	v = Readiness(Input{Domain: "x.test", Now: today, Current: servedTesting(mxs...), Reports: history(t, 2, 100, mxs, "Google Inc.", "Microsoft Corporation")})
	expect(t, v, NotEnoughData, ReasonShortHistory)
}

// C-3: a validation-failure on an MX host the policy's patterns do not
// match makes the verdict not ready, naming the host and the pattern.
func TestNotCoveredC3(t *testing.T) {
	cur := servedTesting("*.mx.microsoft")
	cur.Scan = &Scan{MXKnown: true, MX: map[string]MXState{"tenant.x-v1.mx.microsoft": {Probed: true, Pass: true}}}
	reps := history(t, 14, 10, []string{"*.mx.microsoft"}, "Google Inc.", "Microsoft Corporation")
	reps = append(reps, dayRep(t, "Google Inc.", d(1), sts("x.test", []string{"*.mx.microsoft"}, 0, fail(tlsrpt.ValidationFailure, "tenant.x-v1.mx.microsoft", 4))))
	// That extra report shares its key with the history's: give it its own.
	reps[len(reps)-1].ReportID += "-2"
	v := Readiness(Input{Domain: "x.test", Now: today, Current: cur, Reports: reps})
	expect(t, v, NotReady, ReasonMXNotCovered, ReasonFailure)
	for _, r := range v.Reasons {
		if !strings.Contains(r.Text, "tenant.x-v1.mx.microsoft") || !strings.Contains(r.Text, `"*.mx.microsoft"`) {
			t.Errorf("reason does not name host and pattern: %s", r.Text)
		}
	}
}

// C-4: certificate-expired failures on mx2 until day D, a scan showing it
// renewed and clean reports after: resolved, ready. With today's scan
// still expired: not ready.
func TestResolvedC4(t *testing.T) {
	reps := history(t, 14, 10, mxs, "Google Inc.", "Microsoft Corporation")
	for i := 6; i <= 9; i++ {
		r := dayRep(t, "Google Inc.", d(i), sts("x.test", mxs, 0, fail(tlsrpt.CertificateExpired, "mx2.x.test", 5)))
		r.ReportID += "-expired"
		reps = append(reps, r)
	}
	v := Readiness(Input{Domain: "x.test", Now: today, Current: servedTesting(mxs...), Reports: reps})
	expect(t, v, Ready)
	if len(v.Failures) != 1 || v.Failures[0].Label != Resolved {
		t.Errorf("failures %+v", v.Failures)
	}
	cur := servedTesting(mxs...)
	cur.Scan.MX["mx2.x.test"] = MXState{Probed: true, Problem: "203.0.113.2: the certificate expired on 2026-06-20", ResultType: tlsrpt.CertificateExpired}
	v = Readiness(Input{Domain: "x.test", Now: today, Current: cur, Reports: reps})
	expect(t, v, NotReady, ReasonMXFailing)
	if v.Failures[0].Label != Blocking {
		t.Errorf("failure %+v", v.Failures[0])
	}
}

// C-5: reports about a policy with another MX set do not count, and the
// verdict says the evidence is for an older policy.
func TestOlderPolicyC5(t *testing.T) {
	old := history(t, 14, 10, []string{"mx1.x.test"}, "Google Inc.", "Microsoft Corporation")
	v := Readiness(Input{Domain: "x.test", Now: today, Current: servedTesting(mxs...), Reports: old})
	expect(t, v, NotEnoughData, ReasonOlderPolicy)
	if v.Sessions != 0 || len(v.OlderPolicy) != 28 || !strings.Contains(v.Next, "older policy") {
		t.Errorf("%+v", v)
	}
	// A different max_age or line order is the same policy.
	same := history(t, 14, 10, []string{"MX2.x.test", "mx1.x.test"}, "Google Inc.", "Microsoft Corporation")
	expect(t, Readiness(Input{Domain: "x.test", Now: today, Current: servedTesting(mxs...), Reports: same}), Ready)
}

// C-6: policy fetch errors warn about the policy host; they do not block.
func TestPolicyHostC6(t *testing.T) {
	reps := history(t, 14, 10, mxs, "Google Inc.", "Microsoft Corporation")
	mailru := dayRep(t, "Mail.ru", d(2), tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "x.test", Failed: 2,
		Failures: []tlsrpt.FailureDetail{{ResultType: tlsrpt.STSPolicyFetchError, FailedSessions: 2, FailureReasonCode: "bad https response code: 404"}}})
	v := Readiness(Input{Domain: "x.test", Now: today, Current: servedTesting(mxs...), Reports: append(reps, mailru)})
	expect(t, v, Ready)
	if !slices.Contains(codesOf(v.Warnings), ReasonPolicyHost) {
		t.Errorf("warnings %+v", v.Warnings)
	}
}

// The domain of the readiness test, day by day with an injected
// clock: not enough data, then not ready (a failure on an MX the policy
// does not cover), then, after the fix and two weeks of clean reports,
// ready.
func TestReadinessJourney(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	oldMX := []string{"mx1.x.test"}
	newMX := []string{"mx1.x.test", "mx2.x.test"}
	var reps []*tlsrpt.Report
	addDay := func(day time.Time, mx []string, failures ...tlsrpt.FailureDetail) {
		for _, org := range []string{"Google Inc.", "Microsoft Corporation"} {
			reps = append(reps, dayRep(t, org, day, sts("x.test", mx, 6, failures...)))
		}
	}
	verdict := func(now time.Time, cur Current) *Verdict {
		return Readiness(Input{Domain: "x.test", Now: now, Current: cur, Reports: reps})
	}
	// Days 0–2: the policy names mx1 only; mail goes to mx1.
	before := Current{Policy: policy(mtasts.ModeTesting, oldMX...), PolicyID: "1", Scan: healthy("mx1.x.test")}
	for i := range 3 {
		addDay(start.AddDate(0, 0, i), oldMX)
	}
	expect(t, verdict(start.AddDate(0, 0, 3), before), NotEnoughData, ReasonShortHistory)
	// Day 3: mx2 is added to the MX records but not to the policy;
	// senders report validation failures on it.
	addDay(start.AddDate(0, 0, 3), oldMX, fail(tlsrpt.ValidationFailure, "mx2.x.test", 2))
	during := Current{Policy: before.Policy, PolicyID: "1", Scan: healthy("mx1.x.test", "mx2.x.test")}
	expect(t, verdict(start.AddDate(0, 0, 4), during), NotReady, ReasonMXNotCovered, ReasonFailure)
	// Day 4: the policy gets mx2 (a new id); reports follow.
	after := Current{Policy: policy(mtasts.ModeTesting, newMX...), PolicyID: "2", Scan: healthy(newMX...)}
	for i := 4; i < 4+14; i++ {
		addDay(start.AddDate(0, 0, i), newMX)
		now := start.AddDate(0, 0, i+1)
		v := verdict(now, after)
		if i < 4+DefaultMinDays-1 {
			if v.Status != NotEnoughData {
				t.Fatalf("day %d: %s %+v", i, v.Status, v.Reasons)
			}
			continue
		}
		expect(t, v, Ready)
		if v.PolicyID != "2" || len(v.OlderPolicy) == 0 || v.Failures[0].Label != Resolved {
			t.Errorf("day %d: %+v", i, v)
		}
		return
	}
	t.Fatal("never ready")
}

func TestReadinessScanAndPolicy(t *testing.T) {
	reps := history(t, 14, 10, mxs, "Google Inc.", "Microsoft Corporation")
	noProbe := servedTesting(mxs...)
	noProbe.Scan.MX["mx2.x.test"] = MXState{}
	for _, tt := range []struct {
		name   string
		cur    Current
		status Status
		code   string
	}{
		{"no policy", Current{Scan: healthy(mxs...)}, NotReady, ReasonNoPolicy},
		{"mode none", Current{Policy: policy(mtasts.ModeNone, mxs...), Scan: healthy(mxs...)}, NotReady, ReasonModeNone},
		{"no scan", Current{Policy: policy(mtasts.ModeTesting, mxs...)}, NotEnoughData, ReasonNoScan},
		{"MX lookup failed", Current{Policy: policy(mtasts.ModeTesting, mxs...), Scan: &Scan{}}, NotEnoughData, ReasonMXUnknown},
		{"an MX not probed", noProbe, NotEnoughData, ReasonMXNotProbed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, Readiness(Input{Domain: "x.test", Now: today, Current: tt.cur, Reports: reps}), tt.status, tt.code)
		})
	}
	// Already enforce: judged the same, with a warning.
	v := Readiness(Input{Domain: "x.test", Now: today, Current: Current{Policy: policy(mtasts.ModeEnforce, mxs...), Scan: healthy(mxs...)}, Reports: reps})
	expect(t, v, Ready)
	if !slices.Contains(codesOf(v.Warnings), ReasonModeEnforce) {
		t.Errorf("warnings %+v", v.Warnings)
	}
}

// A failure nothing explains (no MX host named) blocks when it is in the
// last CleanDays of the window, not when it is older; reports outside the
// window are not read.
func TestCleanPeriod(t *testing.T) {
	reps := history(t, 14, 10, mxs, "Google Inc.", "Microsoft Corporation")
	noHost := func(day time.Time, n int64) *tlsrpt.Report {
		r := dayRep(t, "Google Inc.", day, sts("x.test", mxs, 0, tlsrpt.FailureDetail{ResultType: tlsrpt.ValidationFailure, FailedSessions: n}))
		r.ReportID += "-f"
		return r
	}
	v := Readiness(Input{Domain: "x.test", Now: today, Current: servedTesting(mxs...), Reports: append(reps, noHost(d(10), 3), noHost(d(20), 300))})
	expect(t, v, Ready)
	if len(v.Failures) != 1 || v.Failures[0].Count != 3 || v.Failures[0].Label != Unexplained {
		t.Errorf("failures %+v", v.Failures)
	}
	expect(t, Readiness(Input{Domain: "x.test", Now: today, Current: servedTesting(mxs...), Reports: append(reps, noHost(d(1), 3))}), NotReady, ReasonFailure)
}
