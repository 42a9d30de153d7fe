package bulk

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// Output formats of a run.
const (
	FormatJSON = "json" // JSON Lines: the document of docs/json.md, one per domain
	FormatCSV  = "csv"  // the fixed columns of CSVHeader
)

// CSVHeader is the fixed column set of --format csv (docs/bulk.md). Columns
// are only ever added at the end.
var CSVHeader = []string{
	"line", "domain", "grade", "policy_status", "mode", "max_age",
	"mx_count", "mx_covered", "starttls_failures", "dane", "tlsrpt",
	"error_findings", "duration_ms",
}

// Facts are the per-domain answers that the CSV columns and the summary
// share, so that each is worked out in one place.
type Facts struct {
	Grade        string // "" when the scan could not determine the policy
	Status       string // policy_status
	Mode         string // of the policy senders apply; "" without one
	MaxAge       int64  // -1 without a policy
	MTASTSRecord bool   // _mta-sts has a TXT record that looks like MTA-STS
	MXCount      int
	MXCovered    int  // MX hosts the policy covers (0 without a policy)
	FullCoverage bool // a policy covers every MX host
	// STARTTLSFailures counts addresses that answered SMTP but did not
	// complete STARTTLS and a TLS handshake (not offered, refused, failed
	// or timed out handshake, plain text after 220). Addresses that could
	// not be reached or were not probed are not counted: they say nothing
	// about STARTTLS.
	STARTTLSFailures int
	// STARTTLSEverywhere: every MX host was looked at, and every address
	// of every one completed STARTTLS and a TLS handshake.
	STARTTLSEverywhere bool
	DANE               string // see daneState
	TLSRPT             bool
	ErrorFindings      []string // IDs of findings with severity error, sorted, once each
	Findings           []string // every finding ID, sorted, once each
	ScanErrors         []string // kinds of "could not look" (see scanErrors)
	DurationMS         float64
}

// NewFacts works out the facts of a report.
func NewFacts(r *check.Report) Facts {
	f := Facts{Grade: string(r.Grade), Status: string(r.Status), MaxAge: -1, TLSRPT: r.TLSRPT != nil}
	if p := r.Policy; p != nil {
		f.Mode, f.MaxAge = string(p.Mode), p.MaxAge
	}
	if o := r.Evidence; o != nil {
		f.DurationMS = o.DurationMS
		if a := o.DNS.STS; a != nil {
			f.MTASTSRecord = slices.ContainsFunc(a.TXT(), mtasts.LooksLikeRecord)
		}
		f.ScanErrors = scanErrors(o)
	}
	if r.Status == check.StatusUndetermined {
		f.ScanErrors = append([]string{"policy-undetermined"}, f.ScanErrors...)
	}
	f.MXCount = len(r.MX)
	addrs, tlsOK, allLooked := 0, 0, true
	for _, m := range r.MX {
		if m.Covered != nil && *m.Covered {
			f.MXCovered++
		}
		if m.NotChecked != "" {
			allLooked = false
		}
		for _, a := range m.Addresses {
			addrs++
			if a.TLSVersion != "" {
				tlsOK++
			} else if a.Probe != nil && startTLSFailure(a.Probe.Class) {
				f.STARTTLSFailures++
			}
		}
	}
	f.FullCoverage = r.Policy != nil && f.MXCount > 0 && f.MXCovered == f.MXCount
	f.STARTTLSEverywhere = allLooked && addrs > 0 && tlsOK == addrs
	f.DANE = daneState(r.MX)
	for _, x := range r.Findings {
		f.Findings = append(f.Findings, string(x.ID))
		if x.Severity == finding.Error {
			f.ErrorFindings = append(f.ErrorFindings, string(x.ID))
		}
	}
	slices.Sort(f.Findings)
	f.Findings = slices.Compact(f.Findings)
	slices.Sort(f.ErrorFindings)
	f.ErrorFindings = slices.Compact(f.ErrorFindings)
	return f
}

func startTLSFailure(c smtpprobe.Class) bool {
	switch c {
	case smtpprobe.STARTTLSNotOffered, smtpprobe.STARTTLSRefused, smtpprobe.TLSHandshake, smtpprobe.TLSTimeout, smtpprobe.TLSPlaintext:
		return true
	}
	return false
}

// daneOrder ranks the DANE states of MX hosts, worst first: a domain shows
// its worst host's state.
var daneOrder = []string{"invalid", "lookup-failed", "unusable", "unverified", "unknown", "insecure", "valid", "none"}

// daneState is the DANE state of a domain: "" without MX hosts that can
// have DANE, the state every such host shares, "partial" when some hosts
// are valid and the others have no TLSA records, and otherwise the worst
// state among the hosts (the order of daneOrder).
func daneState(mx []check.MX) string {
	seen := map[string]bool{}
	for _, m := range mx {
		if m.DANE != nil {
			seen[m.DANE.Status] = true
		}
	}
	switch {
	case len(seen) == 0:
		return ""
	case len(seen) == 1:
		for s := range seen {
			return s
		}
	case len(seen) == 2 && seen["valid"] && seen["none"]:
		return "partial"
	}
	for _, s := range daneOrder {
		if seen[s] {
			return s
		}
	}
	return "unknown"
}

// scanErrors lists what a scan could not look at, by kind, once each:
// "dns-<status>" for a lookup that failed temporarily, "policy-fetch-<class>"
// for a policy fetch that got no response, "smtp-<class>" for an address
// that could not be reached or was not probed. Findings about what was seen
// (no STARTTLS, a bad certificate) are not scan errors.
func scanErrors(o *scan.Observations) []string {
	var out []string
	add := func(k string) {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	dnsAnswer := func(a *resolve.Answer) {
		if a != nil && a.Status.Temporary() {
			add("dns-" + string(a.Status))
		}
	}
	d := o.DNS
	for _, a := range []*resolve.Answer{d.STS, d.STSDraft, d.Apex, d.WildcardProbe, d.TLSRPT, d.TLSRPTDraft, d.TLSRPTDraftUnder, d.MX, d.PolicyHostA, d.PolicyHostAAAA, d.Root} {
		dnsAnswer(a)
	}
	for _, f := range o.Fetches {
		if f.Class != "" {
			add("policy-fetch-" + string(f.Class))
		}
	}
	for _, h := range o.MXHosts {
		for _, a := range []*resolve.Answer{h.A, h.AAAA, h.TLSA, h.TLSAExpanded, h.TCPNode, h.TLSRPT} {
			dnsAnswer(a)
		}
		for _, p := range h.Probes {
			switch p.Class {
			case smtpprobe.ConnectRefused, smtpprobe.ConnectTimeout, smtpprobe.ConnectError, smtpprobe.ConnectBlocked,
				smtpprobe.BannerTimeout, smtpprobe.BannerClosed, smtpprobe.BannerTemporary,
				smtpprobe.CutOff, smtpprobe.NotProbedBudget:
				add("smtp-" + string(p.Class))
			}
		}
	}
	slices.Sort(out)
	return out
}

// EncodeJSON returns the JSON document of r as one line, with the input
// line it came from.
func EncodeJSON(r *check.Report, it Item) ([]byte, error) {
	d := report.NewDocument(r, it.Input)
	d.Line = it.Line
	var b bytes.Buffer
	if err := report.WriteJSON(&b, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// EncodeCSV returns the CSV row of r (CSVHeader's columns).
func EncodeCSV(f Facts, domain string, line int) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	lineCol := ""
	if line > 0 {
		lineCol = strconv.Itoa(line)
	}
	maxAge, covered := "", ""
	if f.MaxAge >= 0 {
		maxAge = strconv.FormatInt(f.MaxAge, 10)
	}
	if f.Mode != "" {
		covered = strconv.Itoa(f.MXCovered)
	}
	_ = w.Write([]string{
		lineCol, domain, f.Grade, f.Status, f.Mode, maxAge,
		strconv.Itoa(f.MXCount), covered, strconv.Itoa(f.STARTTLSFailures), f.DANE, strconv.FormatBool(f.TLSRPT),
		strings.Join(f.ErrorFindings, " "), strconv.FormatFloat(f.DurationMS, 'f', 0, 64),
	})
	w.Flush()
	return b.Bytes()
}

// EncodeCSVHeader returns the header line.
func EncodeCSVHeader() []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(CSVHeader)
	w.Flush()
	return b.Bytes()
}

// recordDomain reads the domain and line of one output record (a JSON
// line, or a CSV row after the header).
func recordDomain(format string, rec []byte) (string, bool) {
	if format == FormatCSV {
		row, err := csv.NewReader(bytes.NewReader(rec)).Read()
		if err != nil || len(row) < 2 || row[1] == "" {
			return "", false
		}
		return row[1], true
	}
	var d struct {
		Domain string `json:"domain"`
	}
	if json.Unmarshal(rec, &d) != nil || d.Domain == "" {
		return "", false
	}
	return d.Domain, true
}
