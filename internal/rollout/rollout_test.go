package rollout

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/webpki"
)

var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func TestPatterns(t *testing.T) {
	tests := []struct {
		hosts []string
		want  []string
	}{
		{[]string{"mx1.example.com", "MX2.example.com."}, []string{"mx1.example.com", "mx2.example.com"}},
		{[]string{"contoso-com.mail.protection.outlook.com"}, []string{"*.mail.protection.outlook.com"}},
		// *.mx.microsoft never matches <tenant>.<x>-v1.mx.microsoft (realworld-facts §1.2).
		{[]string{"contoso-com.b-v1.mx.microsoft"}, []string{"*.b-v1.mx.microsoft"}},
		{[]string{"aspmx.l.google.com", "alt1.aspmx.l.google.com"}, []string{"aspmx.l.google.com", "alt1.aspmx.l.google.com"}},
		{[]string{"_dc-mx.abc123.example.com"}, []string{"*.abc123.example.com"}},
		{[]string{"route1.mx.cloudflare.net", "route2.mx.cloudflare.net"}, []string{"*.mx.cloudflare.net"}},
	}
	for _, tt := range tests {
		got := Patterns(tt.hosts)
		if !slices.Equal(got, tt.want) {
			t.Errorf("Patterns(%q) = %q, want %q", tt.hosts, got, tt.want)
		}
		p := mtasts.Policy{MX: got}
		for _, h := range tt.hosts {
			if _, ok := p.Match(h); !ok {
				t.Errorf("patterns %q do not cover %s", got, h)
			}
		}
	}
}

func TestInit(t *testing.T) {
	out, err := Init("example.com", []string{"mx1.example.com"}, InitOptions{Now: now, CurrentID: "20261128120000"})
	if err != nil {
		t.Fatal(err)
	}
	st := out.Stages[0]
	if st.Policy.Mode != mtasts.ModeTesting || st.Policy.MaxAge != InitialMaxAge || st.PolicyText != "version: STSv1\r\nmode: testing\r\nmx: mx1.example.com\r\nmax_age: 86400\r\n" {
		t.Errorf("policy %q", st.PolicyText)
	}
	var sts, rpt, host *Record
	for i, r := range st.Records {
		switch r.Name {
		case "_mta-sts.example.com":
			sts = &st.Records[i]
		case "_smtp._tls.example.com":
			rpt = &st.Records[i]
		case "mta-sts.example.com":
			host = &st.Records[i]
		}
	}
	if sts == nil || sts.Value != "v=STSv1; id=202611281200001" {
		t.Errorf("the id must differ from the published one: %+v", sts)
	}
	if rpt == nil || rpt.Placeholder == "" || !strings.Contains(rpt.Value, "mailto:tlsrpt@example.com") {
		t.Errorf("TLS-RPT without --rua is a marked placeholder: %+v", rpt)
	}
	if host == nil || host.Placeholder == "" {
		t.Errorf("the policy host address is a marked placeholder: %+v", host)
	}
	if p := mtasts.ParsePolicy([]byte(st.PolicyText)); p.Policy == nil || len(p.Problems) != 0 {
		t.Errorf("the policy does not parse cleanly: %v", p.Problems)
	}

	out, err = Init("example.com", []string{"mx1.example.com"}, InitOptions{Now: now, RUA: []string{"mailto:reports@example.net", "https://r.example.net/tlsrpt"}, HostCNAME: "policies.provider.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Stages[0].Records {
		if r.Placeholder != "" {
			t.Errorf("no placeholder expected: %+v", r)
		}
		if r.Type == "CNAME" && r.Value != "policies.provider.example." {
			t.Errorf("CNAME %q", r.Value)
		}
		if r.Name == "_smtp._tls.example.com" && r.Value != "v=TLSRPTv1; rua=mailto:reports@example.net,https://r.example.net/tlsrpt" {
			t.Errorf("TLS-RPT %q", r.Value)
		}
	}
	if _, err := Init("example.com", nil, InitOptions{Now: now}); err == nil {
		t.Error("Init without MX hosts must fail")
	}
	if _, err := Init("example.com", []string{"mx"}, InitOptions{Now: now, RUA: []string{"tlsrpt@example.com"}}); err == nil {
		t.Error("a rua without scheme must be refused")
	}
}

// report builds a check.Report of a domain in the given mode whose MX hosts
// pass or fail.
func report(mode mtasts.Mode, maxAge int64, hosts map[string]bool, patterns ...string) *check.Report {
	pol := &mtasts.Policy{Version: "STSv1", Mode: mode, MaxAge: maxAge, MX: patterns}
	r := &check.Report{Domain: "example.com", Status: check.Status(mode), Policy: pol, PolicyID: "1"}
	var names []string
	for h := range hosts {
		names = append(names, h)
	}
	slices.Sort(names)
	for i, h := range names {
		pat, ok := pol.Match(h)
		probe := &smtpprobe.Result{Host: h, Address: "192.0.2.1:25", STARTTLS: true,
			TLS: &smtpprobe.TLS{Version: "TLS 1.3", Chain: []webpki.Cert{{DNSNames: []string{h}}}, Verdict: webpki.Verdict{Trusted: true, NameMatch: true}}}
		if !hosts[h] {
			probe = &smtpprobe.Result{Host: h, Address: "192.0.2.1:25", Class: smtpprobe.STARTTLSNotOffered, Error: "the EHLO reply does not offer STARTTLS"}
		}
		r.MX = append(r.MX, check.MX{Host: h, Preference: uint16(10 * (i + 1)), Pattern: pat, Covered: &ok,
			Addresses: []check.Address{{IP: "192.0.2.1", Probe: probe, Pass: hosts[h]}}})
	}
	return r
}

func TestPromote(t *testing.T) {
	ready := report(mtasts.ModeTesting, 86400, map[string]bool{"mx1.example.com": true}, "mx1.example.com")
	out := Promote(ready, PromoteOptions{Now: now})
	if out.Refused || len(out.Stages) == 0 {
		t.Fatalf("ready domain refused: %q", out.Reasons)
	}
	p := out.Stages[0].Policy
	if p.Mode != mtasts.ModeEnforce || p.MaxAge != EnforceMaxAge || out.Stages[0].Records[0].Value == "v=STSv1; id=1" {
		t.Errorf("promoted policy %+v, records %+v", p, out.Stages[0].Records)
	}
	if got := Promote(ready, PromoteOptions{Now: now, MaxAge: 1209600}).Stages[0].Policy.MaxAge; got != 1209600 {
		t.Errorf("--max-age ignored: %d", got)
	}
	if !out.Stages[1].At.Equal(now.Add(86400 * time.Second)) {
		t.Errorf("senders switch at the latest after the testing max_age: %v", out.Stages[1].At)
	}

	noTLS := report(mtasts.ModeTesting, 86400, map[string]bool{"mx1.example.com": true, "mx2.example.com": false}, "*.example.com")
	out = Promote(noTLS, PromoteOptions{Now: now})
	if !out.Refused || len(out.Stages) != 0 || !strings.Contains(strings.Join(out.Reasons, "\n"), "mx2.example.com (192.0.2.1) does not pass: the EHLO reply does not offer STARTTLS") {
		t.Errorf("an MX without STARTTLS must refuse: %+v", out)
	}
	forced := Promote(noTLS, PromoteOptions{Now: now, Force: true})
	if forced.Refused || len(forced.Stages) == 0 || len(forced.Warnings) == 0 {
		t.Errorf("--force prints the policy with the reasons as warnings: %+v", forced)
	}

	uncovered := report(mtasts.ModeTesting, 86400, map[string]bool{"mx1.example.com": true, "backup.other.example": true}, "mx1.example.com")
	if out := Promote(uncovered, PromoteOptions{Now: now}); !out.Refused || !strings.Contains(strings.Join(out.Reasons, "\n"), "backup.other.example matches no mx pattern") {
		t.Errorf("an uncovered MX must refuse: %+v", out.Reasons)
	}
	if out := Promote(report(mtasts.ModeEnforce, 604800, map[string]bool{"mx1.example.com": true}, "mx1.example.com"), PromoteOptions{Now: now}); !out.Refused || !strings.Contains(out.Reasons[0], "already") {
		t.Errorf("enforce: %+v", out)
	}
	absent := &check.Report{Domain: "example.com", Status: check.StatusAbsent, StatusReason: "no record"}
	if out := Promote(absent, PromoteOptions{Now: now}); !out.Refused || !strings.Contains(out.Reasons[0], "policy init") {
		t.Errorf("absent: %+v", out)
	}
}

func TestRetire(t *testing.T) {
	r := report(mtasts.ModeEnforce, 604800, map[string]bool{"mx1.example.com": true}, "mx1.example.com")
	out := Retire(r, RetireOptions{Now: now})
	if out.Refused || out.Stages[0].Policy.Mode != mtasts.ModeNone {
		t.Fatalf("%+v", out)
	}
	if want := now.Add(604800*time.Second + Margin); !out.Stages[1].At.Equal(want) {
		t.Errorf("earliest removal %v, want %v (max_age + margin)", out.Stages[1].At, want)
	}
	if out := Retire(r, RetireOptions{Now: now, PreviousMaxAge: 31557600}); !out.Stages[1].At.Equal(now.Add(31557600*time.Second + Margin)) {
		t.Errorf("a larger previous max_age wins: %v", out.Stages[1].At)
	}
	broken := &check.Report{Domain: "example.com", Status: check.StatusUnreachable, StatusReason: "404", PolicyID: "7"}
	out = Retire(broken, RetireOptions{Now: now})
	if len(out.Warnings) == 0 || !out.Stages[1].At.Equal(now.Add(mtasts.MaxMaxAge*time.Second+Margin)) {
		t.Errorf("an unreadable policy assumes a year, with a warning: %+v", out)
	}
}

func TestPlan(t *testing.T) {
	r := report(mtasts.ModeEnforce, 604800, map[string]bool{"mx1.example.com": true, "mx2.example.com": true}, "mx1.example.com", "mx2.example.com")
	failing := &smtpprobe.Result{Host: "new.example.net", Address: "198.51.100.1:25", Class: smtpprobe.STARTTLSNotOffered, Error: "the EHLO reply does not offer STARTTLS"}
	out, err := Plan(r, PlanOptions{Add: []string{"new.example.net"}, Remove: []string{"mx2.example.com"}, Now: now,
		Probes: map[string][]*smtpprobe.Result{"new.example.net": {failing}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Stages) != 3 {
		t.Fatalf("want 3 stages, got %+v", out.Stages)
	}
	if got := out.Stages[0].Policy.MX; !slices.Equal(got, []string{"mx1.example.com", "mx2.example.com", "new.example.net"}) {
		t.Errorf("stage 1 patterns %q", got)
	}
	if want := now.Add(604800*time.Second + Margin); !out.Stages[1].At.Equal(want) {
		t.Errorf("MX switch at %v, want after the max_age %v", out.Stages[1].At, want)
	}
	if got := out.Stages[2].Policy.MX; !slices.Equal(got, []string{"mx1.example.com", "new.example.net"}) {
		t.Errorf("stage 3 patterns %q", got)
	}
	if out.Stages[0].Records[0].Value == out.Stages[2].Records[0].Value {
		t.Error("each policy change needs its own id")
	}
	if !strings.Contains(strings.Join(out.Warnings, "\n"), "new.example.net (198.51.100.1:25) fails today") {
		t.Errorf("warnings %q", out.Warnings)
	}
	var refused *RefusedError
	if _, err := Plan(r, PlanOptions{Now: now}); !errors.As(err, &refused) || !strings.HasPrefix(refused.Reason, "name the MX hosts") {
		t.Errorf("a plan without hosts: %v, want a *RefusedError", err)
	}
}

// TestRefused: what cannot be planned is a *RefusedError whose Reason the
// command prints as it stands.
func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"init without MX hosts", func() error { _, err := Init("example.com", nil, InitOptions{Now: now}); return err },
			"example.com has no MX hosts"},
		{"init with an unusable report URI", func() error {
			_, err := Init("example.com", []string{"mx1.example.com"}, InitOptions{Now: now, RUA: []string{"tlsrpt@example.com"}})
			return err
		}, `"tlsrpt@example.com" is not a usable`},
		{"plan without a policy in effect", func() error {
			r := report(mtasts.ModeEnforce, 604800, nil, "mx1.example.com")
			r.Policy, r.Status, r.StatusReason = nil, check.StatusAbsent, "no record"
			_, err := Plan(r, PlanOptions{Add: []string{"mx2.example.com"}, Now: now})
			return err
		}, "example.com has no policy in effect (absent: no record)"},
	}
	for _, tt := range tests {
		err := tt.run()
		var refused *RefusedError
		if !errors.As(err, &refused) || !strings.HasPrefix(refused.Reason, tt.want) || err.Error() != "rollout: "+refused.Reason {
			t.Errorf("%s: %v, want a *RefusedError starting %q", tt.name, err, tt.want)
		}
	}
}
