package tlsrptview

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
)

func rep(org string, day time.Time, ok int64, fails ...tlsrpt.FailureDetail) *tlsrpt.Report {
	p := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "v.test", Strings: []string{"version: STSv1", "mode: testing", "mx: mx1.v.test", "max_age: 86400"},
		MXPatterns: []string{"mx1.v.test"}, Successful: ok, Failures: fails}
	for _, f := range fails {
		p.Failed += f.FailedSessions
		p.DetailsFailed += f.FailedSessions
	}
	return &tlsrpt.Report{OrganizationName: org, ReportID: org + day.Format(time.DateOnly), Start: day, End: day.Add(24*time.Hour - time.Second), Policies: []tlsrpt.Policy{p}}
}

// The queries a reports page needs: the window's reporters, the failures
// explained against the current policy and scan, the verdict.
func TestView(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 8, 20, 10, 0, 0, 0, time.UTC)
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "s.db"), sqlstore.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	today := tlsrptagg.Day(now)
	for i := 1; i <= 5; i++ {
		d := today.AddDate(0, 0, -i)
		for _, r := range []*tlsrpt.Report{rep("google.com", d, 10), rep("microsoft.com", d, 5, tlsrpt.FailureDetail{ResultType: tlsrpt.CertificateExpired, ReceivingMXHostname: "mx2.v.test", FailedSessions: 2})} {
			if _, _, err := db.AddTLSRPTReport(ctx, store.NewTLSRPTReport{Report: r}); err != nil {
				t.Fatal(err)
			}
		}
	}
	v := &View{Store: db, Now: func() time.Time { return now }}
	w := LastDays(now, 3)
	rps, err := v.Reporters(ctx, "v.test", w)
	if err != nil {
		t.Fatal(err)
	}
	if len(rps) != 2 || rps[1].Organization != "microsoft.com" || rps[1].Reports != 3 || rps[1].Sessions != 21 || rps[1].Failed != 6 || !rps[1].FirstDay.Equal(today.AddDate(0, 0, -3)) || !rps[1].LastDay.Equal(today.AddDate(0, 0, -1)) {
		t.Errorf("reporters %+v", rps)
	}
	cur := tlsrptagg.Current{Policy: &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeTesting, MX: []string{"mx1.v.test"}, MaxAge: 86400}, PolicyID: "7",
		Scan: &tlsrptagg.Scan{MXKnown: true, MX: map[string]tlsrptagg.MXState{"mx1.v.test": {Probed: true, Pass: true}, "mx2.v.test": {Probed: true, Pass: true}}}}
	fs, err := v.Failures(ctx, "v.test", w, cur)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Label != tlsrptagg.Blocking || fs[0].Count != 6 || fs[0].MX != "mx2.v.test" {
		t.Errorf("failures %+v", fs)
	}
	vd, err := v.Readiness(ctx, "v.test", cur, tlsrptagg.Thresholds{})
	if err != nil {
		t.Fatal(err)
	}
	if vd.Status != tlsrptagg.NotReady || vd.PolicyID != "7" || vd.Sessions != 5*10+5*5+5*2 {
		t.Errorf("verdict %s %d %+v", vd.Status, vd.Sessions, vd.Reasons)
	}
	sum, err := v.Summary(ctx, "v.test", w)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Types) != 1 || sum.Types[0].Successful != 45 || len(sum.Daily[tlsrpt.PolicySTS]) != 3 || sum.States[store.ReportCounted] != 6 {
		t.Errorf("summary %+v", sum)
	}
}
