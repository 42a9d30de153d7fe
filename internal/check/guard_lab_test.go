package check_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// TestGuardedScan: the web checker's scans run behind a dial.Guard. A
// target that is not public is a finding in the report (policy host: the
// policy cannot be fetched from the internet; MX: not probed), never a
// network failure that blames the server (smtp-unreachable,
// policy-fetch-failed). Only the lab address of mx2 is allowed here.
func TestGuardedScan(t *testing.T) {
	l := lab.New(t)
	w := mxWorld{world{t, l, "guarded.test"}}
	w.sts(`"v=STSv1; id=1"`)
	w.tlsrpt()
	// The policy host points at the cloud metadata address.
	w.dns("mta-sts.$D. 300 IN A 169.254.169.254", "$D. 300 IN MX 10 mx1.$D.", "mx1.$D. 300 IN A 10.0.0.25", "mx1.$D. 300 IN AAAA ::1")
	mx2IP := l.NextAddr()
	w.dns("$D. 300 IN MX 20 mx2.$D.")
	mx2 := l.MustMX(t, "mx2.guarded.test", []netip.Addr{mx2IP}, lab.SMTPOptions{Cert: w.cert("mx2.guarded.test", nil)})

	// Net dials for real: the lab's rules send mx2's fake address to a
	// loopback listener, which the guard's own socket check would refuse.
	guard := dial.NewGuard(netip.PrefixFrom(mx2IP, 32))
	d := &dial.Dialer{Rules: l.Rules(), Guard: guard, Net: (&net.Dialer{}).DialContext}
	ctx, cancel := context.WithTimeout(context.Background(), lab.ScanBudget)
	defer cancel()
	r := check.Evaluate(labScanner(l, d, true).Scan(ctx, "guarded.test"), now)

	got := map[finding.ID][]finding.Finding{}
	for _, f := range r.Findings {
		got[f.ID] = append(got[f.ID], f)
	}
	if fs := got[finding.PolicyHostNotPublic]; len(fs) != 1 || fs[0].Severity != finding.Error {
		t.Errorf("policy-host-not-public = %+v, want one error", fs)
	}
	// One warning per address of mx1, each naming its range.
	wantMX := map[string]string{"mx1.guarded.test (10.0.0.25)": "private-use", "mx1.guarded.test (::1)": "loopback"}
	if fs := got[finding.MXAddressNotPublic]; len(fs) != len(wantMX) {
		t.Errorf("mx-address-not-public = %+v, want %d warnings", fs, len(wantMX))
	}
	for _, f := range got[finding.MXAddressNotPublic] {
		if word, ok := wantMX[f.Subject]; !ok || f.Severity != finding.Warning || !strings.Contains(f.Message, word) {
			t.Errorf("unexpected %+v", f)
		}
	}
	for _, id := range []finding.ID{finding.SMTPUnreachable, finding.PolicyFetchFailed} {
		if len(got[id]) > 0 {
			t.Errorf("%s reported for a target that was never connected to: %+v", id, got[id])
		}
	}
	if r.Status != check.StatusUnreachable {
		t.Errorf("status = %s, want unreachable (no sender on the internet can fetch the policy)", r.Status)
	}
	// mx2 is public (allowed) and was probed; every probe of mx1 says why
	// it did not run.
	for _, m := range r.MX {
		for _, a := range m.Addresses {
			switch m.Host {
			case "mx1.guarded.test":
				if a.Probe.Class != smtpprobe.ConnectBlocked {
					t.Errorf("%s %s: class %q, want connect-blocked", m.Host, a.IP, a.Probe.Class)
				}
			case "mx2.guarded.test":
				if !a.Pass {
					t.Errorf("mx2 %s does not pass: %+v", a.IP, a.Probe)
				}
			}
		}
	}
	if n := len(mx2.Sessions()); n != 1 {
		t.Errorf("mx2 saw %d sessions, want 1", n)
	}
}
