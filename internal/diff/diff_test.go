package diff_test

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/diff"
	"github.com/mailtls/mailtls/internal/diff/difftest"
	"github.com/mailtls/mailtls/internal/report"
)

var t0 = time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC)

func keys(fs []report.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID+"@"+f.Subject)
	}
	return out
}

func TestFindings(t *testing.T) {
	a, b := difftest.Healthy(t0), difftest.Healthy(t0.Add(24*time.Hour))
	difftest.AddFinding(a, "tlsrpt-missing", "warning", "tls-rpt", "", "gone")
	difftest.AddFinding(a, "mx-not-covered", "warning", "mx", "mx3.example.com", "testing")
	difftest.AddFinding(a, "mx-not-covered", "warning", "mx", "mx3.example.com", "a duplicate is one problem")
	difftest.AddFinding(b, "mx-not-covered", "error", "mx", "mx3.example.com", "enforce now")
	difftest.AddFinding(b, "mx-not-covered", "error", "mx", "mx4.example.com", "another host is another problem")
	d := diff.Compare(diff.FromDocument(a), diff.FromDocument(b))
	if got := keys(d.Added); !slices.Equal(got, []string{"mx-not-covered@mx4.example.com"}) {
		t.Errorf("added %v", got)
	}
	if got := keys(d.Removed); !slices.Equal(got, []string{"tlsrpt-missing@"}) {
		t.Errorf("removed %v", got)
	}
	if len(d.Sustained) != 1 || d.Sustained[0].Before.Severity != "warning" || d.Sustained[0].After.Severity != "error" {
		t.Errorf("sustained %+v: the severity change must be visible", d.Sustained)
	}
	if d.Limited != "" || d.Policy == nil || d.Policy.Changed() || d.MX.Changed() || len(d.Certs) != 0 || len(d.TLSA) != 0 {
		t.Errorf("identical setups show changes: %+v", d)
	}
}

// A finding of a component the newer scan did not read (its TLS-RPT
// reports, for a domain not verified) is not compared, never "gone"; one
// of a component it read is gone as before.
func TestNotReadIsNotGone(t *testing.T) {
	a, b := difftest.Healthy(t0), difftest.Healthy(t0.Add(24*time.Hour))
	difftest.AddFinding(a, "tlsrpt-reports-mx-failing", "error", "tls-rpt-reports", "mx1.example.com", "failing")
	difftest.AddFinding(a, "tlsrpt-missing", "warning", "tls-rpt", "", "gone")
	b.NotRead = []report.NotRead{{Component: "tls-rpt-reports", Reason: "not verified"}}
	d := diff.Compare(diff.FromDocument(a), diff.FromDocument(b))
	if got := keys(d.Removed); !slices.Equal(got, []string{"tlsrpt-missing@"}) {
		t.Errorf("removed %v", got)
	}
	if got := keys(d.NotCompared); !slices.Equal(got, []string{"tlsrpt-reports-mx-failing@mx1.example.com"}) {
		t.Errorf("not compared %v", got)
	}
	// The newer scan read the reports and found nothing: gone.
	b.NotRead = nil
	if d := diff.Compare(diff.FromDocument(a), diff.FromDocument(b)); len(d.Removed) != 2 || len(d.NotCompared) != 0 {
		t.Errorf("with the reports read: removed %v, not compared %v", keys(d.Removed), keys(d.NotCompared))
	}
}

func TestGrade(t *testing.T) {
	for _, c := range []struct {
		from, to          string
		dropped, improved bool
	}{
		{"A", "C", true, false},
		{"A+", "A", true, false},
		{"D", "B", false, true},
		{"A", "A", false, false},
		{"A", "", false, false}, // undetermined is not worse (temporary is not absent)
		{"", "F", false, false},
	} {
		g := diff.GradeChange{From: c.from, To: c.to}
		if g.Dropped() != c.dropped || g.Improved() != c.improved {
			t.Errorf("%q → %q: dropped %t improved %t", c.from, c.to, g.Dropped(), g.Improved())
		}
	}
}

func TestPolicy(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*report.Document)
		check  func(*diff.PolicyChange) bool
	}{
		{"mode", func(d *report.Document) { d.Policy.Mode = "testing" },
			func(p *diff.PolicyChange) bool { return p.Mode && !p.IDChanged && p.BodyChanged() }},
		{"max_age and id", func(d *report.Document) { d.Policy.MaxAge = 86400; d.Policy.ID = "2" },
			func(p *diff.PolicyChange) bool { return p.MaxAge && p.IDChanged && p.BodyChanged() && !p.Mode }},
		{"mx patterns", func(d *report.Document) { d.Policy.MX = []string{"mx1.example.com", "*.mail.example.com"} },
			func(p *diff.PolicyChange) bool {
				return slices.Equal(p.MXAdded, []string{"*.mail.example.com"}) && slices.Equal(p.MXRemoved, []string{"mx2.example.com"})
			}},
		{"pattern order is not a change", func(d *report.Document) { d.Policy.MX = []string{"mx2.example.com", "mx1.example.com"} },
			func(p *diff.PolicyChange) bool { return !p.Changed() }},
		{"id only", func(d *report.Document) { d.Policy.ID = "2" },
			func(p *diff.PolicyChange) bool { return p.IDChanged && !p.BodyChanged() && p.Changed() }},
		{"policy gone", func(d *report.Document) { d.Policy = nil },
			func(p *diff.PolicyChange) bool {
				return p.From != nil && p.To == nil && p.Changed() && !p.BodyChanged()
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := difftest.Healthy(t0), difftest.Healthy(t0.Add(time.Hour))
			c.change(b)
			d := diff.Compare(diff.FromDocument(a), diff.FromDocument(b))
			if d.Policy == nil || !c.check(d.Policy) {
				t.Errorf("policy change %+v", d.Policy)
			}
		})
	}
}

func TestMXAndTLSA(t *testing.T) {
	a, b := difftest.Healthy(t0), difftest.Healthy(t0.Add(time.Hour))
	difftest.AddMX(b, "mx3.example.com", "192.0.2.30", false, difftest.Cert("mx3.example.com", "CN=Test CA", "k3", t0.Add(90*24*time.Hour)))
	b.MX[0].DANE.Records = []string{"3 1 1 aaaa", "3 1 1 bbbb"}
	d := diff.Compare(diff.FromDocument(a), diff.FromDocument(b))
	if !reflect.DeepEqual(d.MX, &diff.SetChange{Added: []string{"mx3.example.com"}}) {
		t.Errorf("MX %+v", d.MX)
	}
	if !reflect.DeepEqual(d.TLSA, []diff.TLSAChange{{Host: "mx1.example.com", Added: []string{"3 1 1 bbbb"}}}) {
		t.Errorf("TLSA %+v", d.TLSA)
	}
	// A new host is an MX set change, not a certificate change.
	if len(d.Certs) != 0 {
		t.Errorf("certs %+v", d.Certs)
	}
}

func TestCerts(t *testing.T) {
	a, b := difftest.Healthy(t0), difftest.Healthy(t0.Add(time.Hour))
	// mx1: renewed with a new key by another CA; policy host: renewed
	// with the same key; mx2: TLS failed now.
	difftest.MXCert(b, 0, difftest.Cert("mx1.example.com", "CN=Other CA", "k1-new", t0.Add(120*24*time.Hour)))
	difftest.PolicyCert(b, difftest.Cert("mta-sts.example.com", "CN=Test CA", "p1", t0.Add(150*24*time.Hour)))
	b.Evidence.MXHosts[1].Probes[0].TLS = nil
	b.Evidence.MXHosts[1].Probes[0].Class = "tls-handshake"
	d := diff.Compare(diff.FromDocument(a), diff.FromDocument(b))
	if len(d.Certs) != 3 {
		t.Fatalf("certs %+v", d.Certs)
	}
	mx1, mx2, pol := d.Certs[0], d.Certs[1], d.Certs[2]
	if mx1.Host != "mx1.example.com" || mx1.Address != "192.0.2.10" || !mx1.Key || !mx1.Issuer || !mx1.Expiry {
		t.Errorf("mx1 %+v", mx1)
	}
	if mx2.Host != "mx2.example.com" || mx2.From == nil || mx2.To != nil {
		t.Errorf("mx2 %+v: a certificate no longer seen is a change", mx2)
	}
	if pol.Role != diff.RolePolicyHost || pol.Key || pol.Issuer || !pol.Expiry {
		t.Errorf("policy host %+v", pol)
	}

	// An address the scan did not probe (budget) says nothing: no change.
	c := difftest.Healthy(t0.Add(2 * time.Hour))
	c.Evidence.MXHosts[1].Probes[0].TLS = nil
	c.Evidence.MXHosts[1].Probes[0].Class = "not-probed-budget"
	if d := diff.Compare(diff.FromDocument(a), diff.FromDocument(c)); len(d.Certs) != 0 {
		t.Errorf("an unprobed address changed certificates: %+v", d.Certs)
	}
}

// TestSummary: a scan kept as a summary compares by grade and findings
// only, and says so.
func TestSummary(t *testing.T) {
	a := difftest.Healthy(t0)
	b := difftest.Healthy(t0.Add(time.Hour))
	difftest.SetGrade(b, "C")
	d := diff.Compare(diff.Scan{Grade: "A", Findings: a.Findings}, diff.FromDocument(b))
	if d.Limited == "" || d.Policy != nil || d.MX != nil || !d.Grade.Dropped() {
		t.Errorf("summary diff %+v", d)
	}
}
