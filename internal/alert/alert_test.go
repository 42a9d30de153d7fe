package alert_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/alert"
	"github.com/mailtls/mailtls/internal/diff/difftest"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

var t0 = time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC)

func obs(id, sev, comp, subject string) alert.Observation {
	return alert.Observation{Finding: report.Finding{ID: id, Severity: sev, Component: comp, Subject: subject, Message: id + " at " + subject}}
}

var (
	notCovered = obs("mx-not-covered", "error", "mx", "mx3.example.com")
	expired    = obs("smtp-cert-expired", "error", "smtp", "mx1.example.com")
	unreach    = func() alert.Observation {
		o := obs("smtp-unreachable", "warning", "smtp", "mx2.example.com")
		o.Transient = true
		return o
	}()
	tlsrpt = obs("tlsrpt-missing", "warning", "tls-rpt", "")
)

// monitor runs decisions like the worker: one scan a day at t0 + n days
// unless at is given.
type monitor struct {
	t     *testing.T
	state alert.State
	scan  int64
	muted bool
	held  map[string]bool
}

func (m *monitor) at(when time.Time, fs ...alert.Observation) alert.Output {
	m.scan++
	out := alert.Decide(alert.Input{State: m.state, ScanID: m.scan, Findings: fs, Held: m.held, Muted: m.muted, Now: when})
	// The state survives a round trip through the store.
	st, err := alert.Unmarshal(out.State.Marshal())
	if err != nil {
		m.t.Fatal(err)
	}
	m.state = st
	return out
}

func (m *monitor) day(n int, fs ...alert.Observation) alert.Output {
	return m.at(t0.Add(time.Duration(n)*24*time.Hour), fs...)
}

func events(out alert.Output) []string {
	var s []string
	for _, e := range out.Events {
		s = append(s, e.Kind+" "+e.Problem.ID+"@"+e.Problem.Subject)
	}
	return s
}

func expect(t *testing.T, step string, out alert.Output, want ...string) {
	t.Helper()
	if got := events(out); !slices.Equal(got, want) {
		t.Errorf("%s: events %q, want %q", step, got, want)
	}
}

// TestTransitionsOnly: the baseline is not told; a new problem is told
// once; a sustained problem is not told again the same day; its fix is
// told once as resolved.
func TestTransitionsOnly(t *testing.T) {
	m := &monitor{t: t}
	expect(t, "baseline", m.day(0, tlsrpt))
	expect(t, "new problem", m.at(t0.Add(24*time.Hour), tlsrpt, notCovered), "opened mx-not-covered@mx3.example.com")
	expect(t, "same day again", m.at(t0.Add(30*time.Hour), tlsrpt, notCovered))
	expect(t, "fixed", m.at(t0.Add(31*time.Hour), tlsrpt), "resolved mx-not-covered@mx3.example.com")
	expect(t, "baseline problem fixed: known to the user, never told, not told now", m.at(t0.Add(32*time.Hour)))
	if n := len(m.state.Resolved); n != 2 {
		t.Errorf("resolved kept: %d", n)
	}
	expect(t, "a week later", m.day(10))
	if n := len(m.state.Resolved); n != 0 {
		t.Errorf("resolved problems are forgotten after a week: %d left", n)
	}
}

// TestSavedBaseline: the scan the domain was saved from is the baseline;
// the first monitoring scan already tells what changed since.
func TestSavedBaseline(t *testing.T) {
	out := alert.Decide(alert.Input{ScanID: 2, Baseline: []alert.Observation{tlsrpt}, BaselineScan: 1, Findings: []alert.Observation{tlsrpt, expired}, Now: t0})
	expect(t, "first scan after save", out, "opened smtp-cert-expired@mx1.example.com")
	if p := out.State.Problems[0]; p.ID != "tlsrpt-missing" || p.SinceScan != 1 || !p.Told.IsZero() {
		t.Errorf("baseline problem %+v", p)
	}
}

// TestTransientConfirmed: a transient problem waits for a second scan; if
// it went away, nothing is ever told.
func TestTransientConfirmed(t *testing.T) {
	m := &monitor{t: t}
	m.day(0)
	out := m.day(1, unreach)
	expect(t, "first sight", out)
	if !out.Confirm {
		t.Error("a pending problem must ask for a confirming scan")
	}
	expect(t, "gone at the confirming scan", m.at(t0.Add(25*time.Hour)))
	expect(t, "back", m.day(2, unreach))
	expect(t, "confirmed", m.at(t0.Add(49*time.Hour), unreach), "opened smtp-unreachable@mx2.example.com")
	expect(t, "fixed", m.day(3), "resolved smtp-unreachable@mx2.example.com")
}

// TestHeldNotResolved: a problem the scan could not see (its component
// held by a temporary failure) stays open, without a resolved notice.
func TestHeldNotResolved(t *testing.T) {
	m := &monitor{t: t}
	m.day(0)
	expect(t, "opened", m.day(1, expired), "opened smtp-cert-expired@mx1.example.com")
	m.held = map[string]bool{"smtp": true}
	expect(t, "smtp not seen", m.at(t0.Add(26*time.Hour), unreach))
	if len(m.state.Open()) != 1 {
		t.Errorf("open %+v", m.state.Open())
	}
	m.held = nil
	expect(t, "seen again, fixed", m.at(t0.Add(27*time.Hour)), "resolved smtp-cert-expired@mx1.example.com")
}

// TestWorse: a higher stage or severity is told; a lower one is not.
func TestWorse(t *testing.T) {
	exp := func(sev string, stage int) alert.Observation {
		o := obs("history-cert-expires", sev, "history", "mx1.example.com")
		o.Stage = stage
		return o
	}
	m := &monitor{t: t}
	m.day(0)
	expect(t, "21 days", m.day(1, exp("warning", 1)), "opened history-cert-expires@mx1.example.com")
	expect(t, "20 days", m.at(t0.Add(47*time.Hour), exp("warning", 1)))
	out := m.at(t0.Add(48*time.Hour), exp("warning", 2))
	expect(t, "7 days", out, "worse history-cert-expires@mx1.example.com")
	if out.Events[0].Before == nil || out.Events[0].Before.Stage != 1 {
		t.Errorf("worse without before: %+v", out.Events[0])
	}
	expect(t, "2 days", m.at(t0.Add(49*time.Hour), exp("error", 3)), "worse history-cert-expires@mx1.example.com")
	expect(t, "less bad", m.at(t0.Add(50*time.Hour), exp("warning", 2)))
	expect(t, "renewed", m.at(t0.Add(51*time.Hour)), "resolved history-cert-expires@mx1.example.com")
}

// TestReminders: at most one reminder a day, for problems told; scans in
// between (confirmations, rescans) remind of nothing.
func TestReminders(t *testing.T) {
	m := &monitor{t: t}
	m.day(0, tlsrpt)
	expect(t, "opened", m.day(1, tlsrpt, expired), "opened smtp-cert-expired@mx1.example.com")
	expect(t, "an hour before a day", m.at(t0.Add(47*time.Hour), tlsrpt, expired))
	expect(t, "a day later", m.day(2, tlsrpt, expired), "reminder smtp-cert-expired@mx1.example.com")
	expect(t, "rescan the same day", m.at(t0.Add(50*time.Hour), tlsrpt, expired))
	expect(t, "next day", m.day(3, tlsrpt, expired, notCovered), "opened mx-not-covered@mx3.example.com", "reminder smtp-cert-expired@mx1.example.com")
	// mx-not-covered was told today: the next reminder lists both.
	out := m.day(4, tlsrpt, expired, notCovered)
	expect(t, "both", out, "reminder smtp-cert-expired@mx1.example.com", "reminder mx-not-covered@mx3.example.com")

	off := &monitor{t: t}
	off.day(0)
	alert.Decide(alert.Input{})
	off.day(1, expired)
	out = alert.Decide(alert.Input{State: off.state, ScanID: 9, Findings: []alert.Observation{expired}, Now: t0.Add(72 * time.Hour), Policy: alert.Policy{RemindEvery: -1}})
	expect(t, "reminders off", out)
}

// TestMuted: nothing is told while muted, and problems opened then are not
// told later either.
func TestMuted(t *testing.T) {
	m := &monitor{t: t}
	m.day(0)
	expect(t, "opened", m.day(1, expired), "opened smtp-cert-expired@mx1.example.com")
	m.muted = true
	expect(t, "muted: new problem", m.day(2, expired, notCovered))
	expect(t, "muted: reminder", m.day(3, expired, notCovered))
	m.muted = false
	expect(t, "unmuted: no alert for what opened while muted; the reminder of the problem told before",
		m.day(4, expired, notCovered), "reminder smtp-cert-expired@mx1.example.com")
	expect(t, "both fixed: only the told one is resolved aloud", m.day(5), "resolved smtp-cert-expired@mx1.example.com")
}

// TestNotAlerting: info findings and the 14-day expiry warnings (told by
// history-cert-expires) open no problem; one finding repeated is one
// problem.
func TestNotAlerting(t *testing.T) {
	m := &monitor{t: t}
	m.day(0)
	out := m.day(1, obs("dane-absent", "info", "dane", "mx1.example.com"), obs("smtp-cert-expiring", "warning", "smtp", "mx1.example.com"),
		obs("policy-cert-expiring", "warning", "policy-host", "mta-sts.example.com"), notCovered, notCovered)
	expect(t, "one", out, "opened mx-not-covered@mx3.example.com")
}

func TestStateVersion(t *testing.T) {
	if _, err := alert.Unmarshal([]byte(`{"v": 99}`)); err == nil {
		t.Error("a state from a newer build must be refused")
	}
	if s, err := alert.Unmarshal(nil); err != nil || s.Baselined {
		t.Errorf("empty state: %+v %v", s, err)
	}
	if _, err := alert.Unmarshal([]byte(`{`)); err == nil {
		t.Error("a broken state must be an error")
	}
}

// TestClassify: transient classes from the evidence, and what a temporary
// failure leaves the scan blind to.
func TestClassify(t *testing.T) {
	d := difftest.Healthy(t0)
	difftest.AddFinding(d, "smtp-banner-refused", "warning", "smtp", "mx1.example.com", "421")
	difftest.AddFinding(d, "smtp-banner-refused", "warning", "smtp", "mx2.example.com", "554")
	difftest.AddFinding(d, "tlsrpt-undetermined", "warning", "tls-rpt", "_smtp._tls.example.com", "SERVFAIL")
	difftest.AddFinding(d, "mx-not-covered", "error", "mx", "mx3.example.com", "not covered")
	d.Evidence.MXHosts[0].Probes[0].Class = smtpprobe.BannerTemporary
	d.Evidence.MXHosts[1].Probes[0].Class = smtpprobe.BannerPermanent
	os, held := alert.Classify(d, map[string]int{"mx-not-covered\x00mx3.example.com": 4})
	var got []string
	for _, o := range os {
		got = append(got, fmt.Sprintf("%s@%s %t %d", o.ID, o.Subject, o.Transient, o.Stage))
	}
	want := []string{"smtp-banner-refused@mx1.example.com true 0", "smtp-banner-refused@mx2.example.com false 0",
		"tlsrpt-undetermined@_smtp._tls.example.com true 0", "mx-not-covered@mx3.example.com false 4"}
	if !slices.Equal(got, want) {
		t.Errorf("observations %q", got)
	}
	var hs []string
	for c := range held {
		hs = append(hs, c)
	}
	slices.Sort(hs)
	if strings.Join(hs, " ") != "dane history smtp tls-rpt tls-rpt-reports" {
		t.Errorf("held %v", hs)
	}

	u := difftest.Healthy(t0)
	u.PolicyStatus = "undetermined"
	if _, held := alert.Classify(u, nil); !held["mx"] || !held["policy"] || !held["smtp"] {
		t.Errorf("an undetermined policy must hold everything: %v", held)
	}
}

// TestOpenCounts: the dashboard's count of open problems agrees with the
// full state: pending problems are not open, resolved ones are gone.
func TestOpenCounts(t *testing.T) {
	st := alert.State{Version: alert.StateVersion, Baselined: true, Problems: []alert.Problem{
		{Key: "a", Severity: "error", Status: alert.Open}, {Key: "b", Severity: "warning", Status: alert.Open},
		{Key: "c", Severity: "error", Status: alert.Pending}, {Key: "d", Severity: "error", Status: alert.Open},
	}, Resolved: []alert.Problem{{Key: "e", Severity: "error", Status: alert.Open}}}
	e, w, err := alert.OpenCounts(st.Marshal())
	if err != nil || e != 2 || w != 1 {
		t.Errorf("OpenCounts = %d errors, %d warnings, %v; want 2, 1", e, w, err)
	}
	var fe, fw int
	for _, p := range st.Open() {
		if p.Severity == "error" {
			fe++
		} else {
			fw++
		}
	}
	if fe != e || fw != w {
		t.Errorf("Open() says %d/%d", fe, fw)
	}
	if e, w, err := alert.OpenCounts(nil); e != 0 || w != 0 || err != nil {
		t.Errorf("no state: %d %d %v", e, w, err)
	}
	if _, _, err := alert.OpenCounts([]byte(`{"v":99}`)); err == nil {
		t.Error("a newer state version was read")
	}
	if _, _, err := alert.OpenCounts([]byte(`{`)); err == nil {
		t.Error("garbage was read")
	}
}
