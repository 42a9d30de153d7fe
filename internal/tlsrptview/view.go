// Package tlsrptview answers the questions asked of stored TLS-RPT reports
// (RFC 8460): the reports of a domain, a window's sums per policy type,
// the failures with their explanations, the reporters, and the readiness
// verdict. The CLI (`mailtls reports`, `mailtls policy promote`) and the
// web page print what it returns; it reads the store and judges with
// internal/tlsrptagg. The JSON shapes here are a contract (docs/json.md).
package tlsrptview

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
)

// SchemaVersion of the JSON documents of this package.
const SchemaVersion = 1

// View reads a store.
type View struct {
	Store store.TLSRPT
	Now   func() time.Time
}

func (v *View) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

// PolicyItem is one policy of a stored report, as `reports list --json`
// prints it.
type PolicyItem struct {
	Type              tlsrpt.PolicyType           `json:"type"`
	Domain            string                      `json:"domain"`
	MXPatterns        []string                    `json:"mx_patterns"`
	Successful        int64                       `json:"successful"`
	Failed            int64                       `json:"failed"`
	DetailsFailed     int64                       `json:"details_failed"`
	FailuresByResult  map[tlsrpt.ResultType]int64 `json:"failures_by_result_type"`
	FailuresByMX      map[string]int64            `json:"failures_by_receiving_mx"`
	PolicyString      []string                    `json:"policy_string,omitempty"`
	FailureDetailsCut int                         `json:"failure_details_dropped,omitempty"`
}

// Receipt is one arrival of a report.
type Receipt struct {
	Channel    string    `json:"channel"`
	ReceivedAt time.Time `json:"received_at"`
	ClientIP   string    `json:"client_ip,omitempty"`
	DKIM       string    `json:"dkim,omitempty"`
	DKIMDomain string    `json:"dkim_domain,omitempty"`
	FileName   string    `json:"file_name,omitempty"`
	MessageID  string    `json:"message_id,omitempty"`
}

// Item is one stored report, as `reports list --json` prints it (one per
// line).
type Item struct {
	SchemaVersion int               `json:"schema_version"`
	ID            int64             `json:"id"`
	Organization  string            `json:"organization"`
	ReportID      string            `json:"report_id"`
	ContactInfo   string            `json:"contact_info,omitempty"`
	Start         time.Time         `json:"start"`
	End           time.Time         `json:"end"`
	State         store.ReportState `json:"state"`
	Reason        string            `json:"reason,omitempty"`
	// Channel and DKIM are the first arrival's; DKIM is "pass" when any
	// arrival passed. Receipts lists every arrival.
	Channel  string        `json:"channel"`
	DKIM     string        `json:"dkim"`
	Notes    []tlsrpt.Note `json:"notes"`
	Policies []PolicyItem  `json:"policies"`
	Receipts []Receipt     `json:"receipts"`
	StoredAt time.Time     `json:"stored_at"`
	RawSize  int           `json:"raw_size"`
	// RawPruned: retention removed the raw bytes; the parsed report stays.
	RawPruned bool `json:"raw_pruned,omitempty"`
}

// NewItem turns a stored report into its list entry.
func NewItem(s store.StoredTLSRPT) Item {
	r := s.Report
	it := Item{SchemaVersion: SchemaVersion, ID: int64(s.ID), Organization: r.OrganizationName, ReportID: r.ReportID, ContactInfo: r.ContactInfo,
		Start: r.Start.UTC(), End: r.End.UTC(), State: s.State, Reason: s.Reason, Notes: r.Notes, StoredAt: s.CreatedAt,
		RawSize: s.RawSize, RawPruned: s.RawPruned, Policies: []PolicyItem{}, Receipts: []Receipt{}}
	if it.Notes == nil {
		it.Notes = []tlsrpt.Note{}
	}
	for _, p := range r.Policies {
		pi := PolicyItem{Type: p.Type, Domain: p.Domain, MXPatterns: p.MXPatterns, Successful: p.Successful, Failed: p.Failed,
			DetailsFailed: p.DetailsFailed, FailuresByResult: map[tlsrpt.ResultType]int64{}, FailuresByMX: map[string]int64{},
			PolicyString: p.Strings, FailureDetailsCut: p.DetailsDropped}
		if pi.MXPatterns == nil {
			pi.MXPatterns = []string{}
		}
		for _, f := range p.Failures {
			pi.FailuresByResult[f.ResultType] += f.FailedSessions
			mx := f.ReceivingMXHostname
			if mx == "" {
				mx = tlsrptagg.UnknownMX
			}
			pi.FailuresByMX[mx] += f.FailedSessions
		}
		it.Policies = append(it.Policies, pi)
	}
	for i, rc := range s.Receipts {
		it.Receipts = append(it.Receipts, Receipt{Channel: rc.Channel, ReceivedAt: rc.ReceivedAt, ClientIP: rc.ClientIP, DKIM: rc.DKIM,
			DKIMDomain: rc.DKIMDomain, FileName: rc.FileName, MessageID: rc.MessageID})
		if i == 0 {
			it.Channel, it.DKIM = rc.Channel, rc.DKIM
		}
		if rc.DKIM == "pass" {
			it.DKIM = "pass"
		}
	}
	return it
}

// Window is a range of UTC days [From, To).
type Window struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"` // exclusive
}

// LastDays is the window of the n whole UTC days before now's day.
func LastDays(now time.Time, n int) Window {
	to := tlsrptagg.Day(now)
	return Window{From: to.AddDate(0, 0, -n), To: to}
}

// TypeSums are the sums of one policy type over a window.
type TypeSums struct {
	Type          tlsrpt.PolicyType              `json:"type"`
	Successful    int64                          `json:"successful"`
	Failed        int64                          `json:"failed"`
	DetailsFailed int64                          `json:"details_failed"`
	ByResult      map[tlsrpt.ResultType]int64    `json:"failures_by_result_type"`
	ByMX          map[string]int64               `json:"failures_by_receiving_mx"`
	BySendingIP   map[string]int64               `json:"failures_by_sending_ip"`
	Organizations map[string]tlsrptagg.OrgTotals `json:"by_organization"`
	Days          int                            `json:"days"`
	Reports       int                            `json:"reports"`
}

// Summary is `reports summary DOMAIN --json`: the counted reports'
// sums per policy type over a window, after deduplication. sts and tlsa
// are never added: Microsoft reports a DANE domain's sessions under both.
type Summary struct {
	SchemaVersion int        `json:"schema_version"`
	Domain        string     `json:"domain"`
	Window        Window     `json:"window"`
	Types         []TypeSums `json:"policies"`
	// Sessions and Failed count each session once whatever the policy
	// type (per report, the larger of sts and tlsa plus no-policy-found).
	Sessions int64 `json:"sessions"`
	Failed   int64 `json:"failed"`
	// Reports by state in the window: counted, conflict, ignored (no valid
	// DKIM signature), held.
	States map[store.ReportState]int `json:"reports_by_state"`
	// Daily is the day-by-day series per policy type.
	Daily map[tlsrpt.PolicyType][]tlsrptagg.DayTotals `json:"daily"`
}

// Summary sums domain's counted reports over w (the store sums them).
func (v *View) Summary(ctx context.Context, domain string, w Window) (*Summary, error) {
	sum, err := v.Store.TLSRPTSums(ctx, domain, w.From, w.To)
	if err != nil {
		return nil, err
	}
	// The counted reports are those summed; the others are few and
	// counted apart (counting all would look up every report).
	states, err := v.Store.CountTLSRPTReports(ctx, store.TLSRPTQuery{Domain: domain, From: w.From, To: w.To,
		States: []store.ReportState{store.ReportConflict, store.ReportIgnored, store.ReportHeld}})
	if err != nil {
		return nil, err
	}
	if sum.Reports > 0 {
		states[store.ReportCounted] = sum.Reports
	}
	out := &Summary{SchemaVersion: SchemaVersion, Domain: domain, Window: w, States: states, Types: []TypeSums{},
		Daily: map[tlsrpt.PolicyType][]tlsrptagg.DayTotals{}, Sessions: sum.Sessions, Failed: sum.Failed}
	types := slices.Clone(sum.Types)
	slices.SortFunc(types, func(a, b tlsrptagg.TypeSums) int { return cmp.Compare(typeRank(a.Type), typeRank(b.Type)) })
	for _, t := range types {
		out.Types = append(out.Types, TypeSums{Type: t.Type, Successful: t.Successful, Failed: t.Failed, DetailsFailed: t.DetailsFailed,
			ByResult: t.ByResult, ByMX: t.ByMX, BySendingIP: t.BySendingIP, Organizations: t.ByOrganization,
			Days: len(t.Daily), Reports: t.Reports})
		out.Daily[t.Type] = t.Daily
	}
	return out, nil
}

// typeRank orders policy types: sts, tlsa, no-policy-found, then others
// by name.
func typeRank(t tlsrpt.PolicyType) string {
	switch t {
	case tlsrpt.PolicySTS:
		return "0"
	case tlsrpt.PolicyTLSA:
		return "1"
	case tlsrpt.PolicyNotFound:
		return "2"
	}
	return "3" + strings.ToLower(string(t))
}

// Readiness is the verdict for domain now (tlsrptagg.Readiness) over the
// counted reports of the window th asks for.
func (v *View) Readiness(ctx context.Context, domain string, cur tlsrptagg.Current, th tlsrptagg.Thresholds) (*tlsrptagg.Verdict, error) {
	now := v.now()
	window := th.Window
	if window <= 0 {
		window = tlsrptagg.DefaultWindow
	}
	w := LastDays(now, int(window/(24*time.Hour)))
	sum, err := v.Store.TLSRPTSummary(ctx, domain, w.From, w.To)
	if err != nil {
		return nil, err
	}
	return tlsrptagg.Readiness(tlsrptagg.Input{Domain: domain, Now: now, Current: cur, Summary: sum, Thresholds: th}), nil
}

// Failures are the failure groups of domain over w, each explained
// against the current policy and scan (blocking, resolved, policy-host,
// unexplained), largest first.
func (v *View) Failures(ctx context.Context, domain string, w Window, cur tlsrptagg.Current) ([]tlsrptagg.Explanation, error) {
	sum, err := v.Store.TLSRPTSummary(ctx, domain, w.From, w.To)
	if err != nil {
		return nil, err
	}
	last := sum.LastReportDay(domain, tlsrpt.PolicySTS)
	out := []tlsrptagg.Explanation{}
	for _, g := range sum.Groups(tlsrptagg.Filter{Domain: domain}) {
		lastDay := last
		if g.Type != tlsrpt.PolicySTS {
			lastDay = sum.LastReportDay(domain, g.Type)
		}
		out = append(out, tlsrptagg.Explain(g, cur, lastDay))
	}
	return out, nil
}

// Reporter is one reporting organisation over a window.
type Reporter struct {
	Organization string    `json:"organization"`
	Reports      int       `json:"reports"`
	Sessions     int64     `json:"sessions"`
	Failed       int64     `json:"failed"`
	FirstDay     time.Time `json:"first_day"`
	LastDay      time.Time `json:"last_day"`
}

// Reporters lists who reported about domain over w, by organisation.
func (v *View) Reporters(ctx context.Context, domain string, w Window) ([]Reporter, error) {
	sum, err := v.Store.TLSRPTSums(ctx, domain, w.From, w.To)
	if err != nil {
		return nil, err
	}
	out := []Reporter{}
	for _, rp := range sum.Reporters {
		out = append(out, Reporter(rp))
	}
	return out, nil
}
