package tlsrptagg

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// Status is the readiness verdict.
type Status string

// Verdicts (tlsrpt-landscape.md §5.1.8).
const (
	Ready         Status = "ready"
	NotReady      Status = "not-ready"
	NotEnoughData Status = "not-enough-data"
)

// Default thresholds.
const (
	DefaultWindow      = 14 * 24 * time.Hour
	DefaultMinOrgs     = 2
	DefaultMinSessions = 100
	DefaultMinDays     = 12
	DefaultCleanDays   = 7
)

// Thresholds tune the verdict; zero fields take the defaults.
type Thresholds struct {
	// Window is how far back reports are read, in whole days before
	// today (UTC).
	Window time.Duration `json:"window"`
	// MinOrgs and MinSessions are the evidence needed: reporting
	// organisations and sessions about the policy now served. Sessions
	// are TLS sessions, not messages, and no sender reports connection
	// failures, so this is a floor on evidence, not a delivery count.
	MinOrgs     int   `json:"min_organizations"`
	MinSessions int64 `json:"min_sessions"`
	// MinDays: the evidence must reach back this many days from the end
	// of the window (a sender may skip a day without traffic).
	MinDays int `json:"min_days"`
	// CleanDays: the last days of the window that must hold no blocking
	// or unexplained failure.
	CleanDays int `json:"clean_days"`
}

func (t Thresholds) withDefaults() Thresholds {
	if t.Window <= 0 {
		t.Window = DefaultWindow
	}
	if t.MinOrgs <= 0 {
		t.MinOrgs = DefaultMinOrgs
	}
	if t.MinSessions <= 0 {
		t.MinSessions = DefaultMinSessions
	}
	if t.MinDays <= 0 {
		t.MinDays = DefaultMinDays
	}
	if t.CleanDays <= 0 {
		t.CleanDays = DefaultCleanDays
	}
	windowDays := int(t.Window / (24 * time.Hour))
	t.MinDays = min(t.MinDays, windowDays)
	t.CleanDays = min(t.CleanDays, windowDays)
	return t
}

// Input is everything the verdict rests on.
type Input struct {
	Domain  string
	Now     time.Time
	Current Current
	// Reports about the domain: deduplicated, and only those that count
	// (for mail, a valid DKIM signature by the reporting domain).
	Reports []*tlsrpt.Report
	// Summary, when set, stands for Reports: the aggregate of the counted
	// reports over at least the window (a store keeps each report's rows
	// and merges those of the window, see [Merge]). Rows outside the
	// window are not read.
	Summary    *Summary
	Thresholds Thresholds
}

// Reason is one thing the verdict rests on, with the reports behind it.
type Reason struct {
	Code string `json:"code"`
	Text string `json:"text"`
	Refs []Ref  `json:"reports,omitempty"`
}

// Reason codes.
const (
	ReasonNoPolicy      = "no-policy"
	ReasonModeNone      = "mode-none"
	ReasonModeEnforce   = "mode-enforce"
	ReasonNoScan        = "no-scan"
	ReasonMXUnknown     = "mx-unknown"
	ReasonMXNotCovered  = "mx-not-covered"
	ReasonMXFailing     = "mx-failing"
	ReasonMXNotProbed   = "mx-not-probed"
	ReasonFailure       = "failure"
	ReasonFewOrgs       = "few-organizations"
	ReasonFewSessions   = "few-sessions"
	ReasonShortHistory  = "short-history"
	ReasonOlderPolicy   = "older-policy"
	ReasonPolicyHost    = "policy-host"
	ReasonNoPolicyFound = "no-policy-found"
)

// Verdict is the answer to "is it safe to move to enforce now?".
type Verdict struct {
	Domain   string    `json:"domain"`
	Status   Status    `json:"status"`
	PolicyID string    `json:"policy_id"` // the served policy the verdict is about
	From     time.Time `json:"window_start"`
	To       time.Time `json:"window_end"` // exclusive: today
	// Blocking reasons (not-ready) or what is missing (not-enough-data).
	Reasons  []Reason `json:"reasons,omitempty"`
	Warnings []Reason `json:"warnings,omitempty"`
	// The evidence: sessions and organisations in reports about the
	// served policy, the days they cover and the reports themselves.
	Sessions      int64     `json:"sessions"`
	Failed        int64     `json:"failed"`
	Organizations []string  `json:"organizations"`
	Since         time.Time `json:"evidence_since,omitzero"`
	Evidence      []Ref     `json:"evidence"`
	// Reports about another MX set: shown, not counted.
	OlderPolicy []Ref         `json:"older_policy,omitempty"`
	Failures    []Explanation `json:"failures,omitempty"`
	Next        string        `json:"next"`
}

// Readiness decides whether in.Domain can move from testing to enforce
// (tlsrpt-landscape.md §5.1.8). It is not-ready when anything would bounce
// mail under enforce: no valid policy, an MX the policy does not cover or
// that fails in today's scan, or a blocking or unexplained failure in the
// last CleanDays of the window. Otherwise it is not-enough-data until
// reports about the policy now served (the same MX set; reports about
// another are shown but not counted) come from MinOrgs organisations,
// hold MinSessions sessions and reach back MinDays days; then it is
// ready. Policy-host failures are warnings: senders that cannot fetch the
// policy fall back to no policy, which enforce does not change.
func Readiness(in Input) *Verdict {
	th := in.Thresholds.withDefaults()
	today := Day(in.Now)
	v := &Verdict{Domain: domain.Canonical(in.Domain), PolicyID: in.Current.PolicyID, To: today, Organizations: []string{}, Evidence: []Ref{},
		From: today.Add(-time.Duration(int(th.Window/(24*time.Hour))) * 24 * time.Hour)}
	dom := v.Domain
	pol := in.Current.Policy
	block := func(code, format string, args ...any) {
		v.Reasons = append(v.Reasons, Reason{Code: code, Text: fmt.Sprintf(format, args...)})
	}
	var missing []Reason
	need := func(code, format string, args ...any) {
		missing = append(missing, Reason{Code: code, Text: fmt.Sprintf(format, args...)})
	}
	warn := func(r Reason) { v.Warnings = append(v.Warnings, r) }

	// The policy now served (RFC 8461 §5: testing first, then enforce).
	switch {
	case pol == nil:
		block(ReasonNoPolicy, "no valid MTA-STS policy is served for %s", dom)
	case pol.Mode == mtasts.ModeNone:
		block(ReasonModeNone, "the served policy has mode none; publish mode testing and collect reports first")
	case pol.Mode == mtasts.ModeEnforce:
		warn(Reason{Code: ReasonModeEnforce, Text: "the served policy is already in enforce mode; the verdict says whether that is safe"})
	}

	// Today's scan: every MX covered and healthy.
	scan := in.Current.Scan
	switch {
	case scan == nil:
		need(ReasonNoScan, "there is no scan of %s from today; scan it", dom)
	case !scan.MXKnown:
		need(ReasonMXUnknown, "today's MX lookup for %s failed; could not determine the MX hosts, retry", dom)
	default:
		hosts := make([]string, 0, len(scan.MX))
		for h := range scan.MX {
			hosts = append(hosts, h)
		}
		slices.Sort(hosts)
		for _, h := range hosts {
			st := scan.MX[h]
			if pol != nil {
				if _, ok := pol.Match(h); !ok {
					block(ReasonMXNotCovered, "MX not covered by policy: %s matches none of the patterns %s; under enforce senders would refuse it", h, quoteAll(pol.MX))
					continue
				}
			}
			switch {
			case !st.Probed:
				need(ReasonMXNotProbed, "today's scan could not reach %s over SMTP, so its STARTTLS and certificate are unknown", h)
			case !st.Pass:
				block(ReasonMXFailing, "%s: %s; under enforce senders would refuse it", h, st.Problem)
			}
		}
	}

	// The reports in the window.
	sum := in.Summary
	if sum == nil {
		var inWindow []*tlsrpt.Report
		for _, r := range in.Reports {
			if r != nil && r.End.After(v.From) && r.Start.Before(today) {
				inWindow = append(inWindow, r)
			}
		}
		sum = Aggregate(inWindow)
	}
	served := ""
	if pol != nil {
		served = MXSet(pol.MX)
	}
	orgs := map[string]bool{}
	var first time.Time
	for _, r := range sum.Rows {
		if r.Domain != dom || r.Type != tlsrpt.PolicySTS || r.Day.Before(v.From) || !r.Day.Before(today) {
			continue
		}
		if pol == nil || !slices.Contains(r.MXSets, served) {
			for _, ref := range r.Reports {
				if !slices.Contains(v.OlderPolicy, ref) {
					v.OlderPolicy = append(v.OlderPolicy, ref)
				}
			}
			continue
		}
		v.Sessions += r.Successful + r.Failed
		v.Failed += r.Failed
		orgs[r.Organization] = true
		if first.IsZero() || r.Day.Before(first) {
			first = r.Day
		}
		for _, ref := range r.Reports {
			if !slices.Contains(v.Evidence, ref) {
				v.Evidence = append(v.Evidence, ref)
			}
		}
	}
	v.OlderPolicy = slices.DeleteFunc(v.OlderPolicy, func(r Ref) bool { return slices.Contains(v.Evidence, r) })
	for o := range orgs {
		v.Organizations = append(v.Organizations, o)
	}
	slices.Sort(v.Organizations)
	v.Since = first

	// Failures, re-judged against today (only the MTA-STS ones decide).
	cleanFrom := today.AddDate(0, 0, -th.CleanDays)
	last := sum.lastDay(dom, tlsrpt.PolicySTS, v.From, today)
	for _, g := range sum.Groups(Filter{Domain: dom, From: v.From, To: today}) {
		e := Explain(g, in.Current, last)
		v.Failures = append(v.Failures, e)
		if e.Scope != ScopeMTASTS {
			continue
		}
		switch {
		case e.Label == PolicyHost:
			warn(Reason{Code: ReasonPolicyHost, Text: e.Why, Refs: g.Reports})
		case (e.Label == Blocking || e.Label == Unexplained) && !g.Last.Before(cleanFrom):
			block(ReasonFailure, "%s: %d %s session(s) on %s, last on %s: %s", e.Label, g.Count, g.ResultType, g.MX, g.Last.Format(time.DateOnly), e.Why)
			v.Reasons[len(v.Reasons)-1].Refs = g.Reports
		}
	}

	// Enough evidence about the served policy?
	if len(v.OlderPolicy) > 0 {
		r := Reason{Code: ReasonOlderPolicy, Refs: v.OlderPolicy,
			Text: fmt.Sprintf("%d report(s) in the window are about a policy with another MX set than the one served now; they are shown but not counted", len(v.OlderPolicy))}
		if len(v.Evidence) == 0 {
			r.Text = fmt.Sprintf("the evidence is for an older policy: all %d report(s) in the window name another MX set than the policy served now, so none counts", len(v.OlderPolicy))
			missing = append(missing, r)
		} else {
			warn(r)
		}
	}
	if n := len(v.Organizations); n < th.MinOrgs {
		need(ReasonFewOrgs, "reports from %d organisation(s) about the served policy; %d are needed", n, th.MinOrgs)
	}
	if v.Sessions < th.MinSessions {
		need(ReasonFewSessions, "%d session(s) reported for the served policy; %d are needed", v.Sessions, th.MinSessions)
	}
	if len(v.Evidence) > 0 {
		if span := int(today.Sub(first) / (24 * time.Hour)); span < th.MinDays {
			need(ReasonShortHistory, "reports about the served policy go back %d day(s), to %s; %d are needed (until %s)", span, first.Format(time.DateOnly), th.MinDays, first.AddDate(0, 0, th.MinDays).Format(time.DateOnly))
		}
	}
	npf := sum.Totals(Filter{Domain: dom, Type: tlsrpt.PolicyNotFound, From: v.From, To: today})
	if npf.Sessions() > 0 {
		warn(Reason{Code: ReasonNoPolicyFound, Refs: npf.Reports,
			Text: fmt.Sprintf("%d session(s) were reported as no-policy-found: those senders did not apply the policy (not cached yet, or they found none); they are not evidence either way", npf.Sessions())})
	}

	switch {
	case len(v.Reasons) > 0:
		v.Status = NotReady
		v.Next = "fix first: " + v.Reasons[0].Text
	case len(missing) > 0:
		v.Status = NotEnoughData
		v.Reasons = missing
		var what []string
		for _, m := range missing {
			what = append(what, m.Text)
		}
		v.Next = "wait for more reports: " + strings.Join(what, "; ")
	default:
		v.Status = Ready
		v.Next = fmt.Sprintf("switch the policy to mode: enforce (mailtls policy promote %s); %d session(s) from %s since %s show no blocking failure", dom, v.Sessions, strings.Join(v.Organizations, ", "), v.Since.Format(time.DateOnly))
	}
	return v
}
