package check_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/webpki"
)

// The conformance vectors were transcribed from the test suites of twelve
// other MTA-STS and TLS-RPT implementations. They live in the shared folder
// beside the repository (../shared/conformance/peer-vectors) and are read
// at run time, never copied; the format is described in
// ../shared/conformance/README.md.

// modelled maps a vector file to the sender model that predicts that
// implementation (internal/mtasts/senders.go, docs/senders.md).
var modelled = map[string]string{
	"mox.json":                      mtasts.SenderMox,
	"postfix-mta-sts-resolver.json": mtasts.SenderSnawoot,
	"postfix-tlspol.json":           mtasts.SenderTLSPol,
	"go-mtasts.json":                mtasts.SenderGoMTASTS,
}

// knownDisagreements lists vectors where mailtls knowingly differs, keyed
// "file: test", with the reason. "rfc" entries concern rfc_expect, "peer"
// entries a sender model's prediction of peer_expect. Keep it empty unless
// the vector itself is wrong or the behaviour cannot be modelled; the
// reasons are repeated in docs/senders.md.
var knownDisagreements = map[string]string{}

type vector struct {
	Source     string          `json:"source"`
	Test       string          `json:"test"`
	Kind       string          `json:"kind"`
	Input      json.RawMessage `json:"input"`
	PeerExpect expectation     `json:"peer_expect"`
	RFCExpect  expectation     `json:"rfc_expect"`
	ServedAs   *string         `json:"served_as"`
	Skip       string          `json:"skip"`

	file string
}

// expectation is a verdict and the details the vector pins, if any.
type expectation struct {
	Verdict string    `json:"verdict"`
	ID      *string   `json:"id"`
	Mode    *string   `json:"mode"`
	MaxAge  *int64    `json:"max_age"`
	MX      *[]string `json:"mx"`
	RUA     *[]string `json:"rua"`
}

// outcome is what mailtls (or one of its sender models) concluded.
type outcome struct {
	verdict string
	id      string
	mode    string
	maxAge  int64
	mx      []string
	rua     []string
	haveID  bool // id is known (sender models do not all report it)
	haveRUA bool
}

// differs returns why got does not meet want, or "".
func (want expectation) differs(got outcome) string {
	if want.Verdict == "either" {
		return ""
	}
	if got.verdict != want.Verdict {
		return fmt.Sprintf("verdict %s, want %s", got.verdict, want.Verdict)
	}
	if got.verdict != "valid" {
		return ""
	}
	var d []string
	if want.ID != nil && got.haveID && got.id != *want.ID {
		d = append(d, fmt.Sprintf("id %q, want %q", got.id, *want.ID))
	}
	if want.Mode != nil && got.mode != *want.Mode {
		d = append(d, fmt.Sprintf("mode %q, want %q", got.mode, *want.Mode))
	}
	if want.MaxAge != nil && got.maxAge != *want.MaxAge {
		d = append(d, fmt.Sprintf("max_age %d, want %d", got.maxAge, *want.MaxAge))
	}
	if want.MX != nil && !slices.Equal(got.mx, *want.MX) {
		d = append(d, fmt.Sprintf("mx %q, want %q", got.mx, *want.MX))
	}
	if want.RUA != nil && got.haveRUA && !slices.Equal(got.rua, *want.RUA) {
		d = append(d, fmt.Sprintf("rua %q, want %q", got.rua, *want.RUA))
	}
	return strings.Join(d, "; ")
}

// loadVectors reads every vector file, or skips (fails under CI) when the
// shared folder is absent (lab.Shared).
func loadVectors(t *testing.T) []vector {
	t.Helper()
	dir := lab.Shared(t, "conformance/peer-vectors")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance vectors in %s", dir)
	}
	var all []vector
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var vs []vector
		if err := json.Unmarshal(b, &vs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i := range vs {
			vs[i].file = filepath.Base(f)
		}
		all = append(all, vs...)
	}
	return all
}

// TestPeerVectors replays every conformance vector through mailtls: the
// policy parser and lint (RFC 8461 §3.2, §3.3), the _mta-sts TXT record
// selection (§3.1), the TLS-RPT record (RFC 8460 §3) and MX matching
// (RFC 8461 §4.1), comparing with rfc_expect; and, for the implementations
// mailtls models as senders, the model's verdict with peer_expect. Any
// disagreement not in knownDisagreements fails.
func TestPeerVectors(t *testing.T) {
	vectors := loadVectors(t)
	var (
		compared, skipped, peerCompared, peerSkipped int
		failures                                     []string
		used                                         = map[string]bool{}
	)
	report := func(v vector, which, why string) {
		key := v.file + ": " + v.Test
		if reason, ok := knownDisagreements[which+" "+key]; ok {
			used[which+" "+key] = true
			t.Logf("known %s disagreement %s: %s (%s)", which, key, why, reason)
			return
		}
		failures = append(failures, fmt.Sprintf("%s %s [%s]: %s", which, key, v.Source, why))
	}
	for _, v := range vectors {
		if v.Skip != "" {
			skipped++
			t.Logf("skipped %s: %s: %s", v.file, v.Test, v.Skip)
			continue
		}
		in := decodeInput(t, v)
		compared++
		if why := v.RFCExpect.differs(rfcOutcome(t, v, in)); why != "" {
			report(v, "rfc", why)
		}
		sender, ok := modelled[v.file]
		if !ok {
			continue
		}
		got, reason := peerOutcome(v, in, sender)
		if reason != "" {
			peerSkipped++
			t.Logf("not compared with %s: %s: %s", sender, v.Test, reason)
			continue
		}
		peerCompared++
		if why := v.PeerExpect.differs(got); why != "" {
			report(v, "peer", sender+": "+why)
		}
	}
	for k := range knownDisagreements {
		if !used[k] {
			t.Errorf("knownDisagreements lists %q, which now agrees: remove it", k)
		}
	}
	sort.Strings(failures)
	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("%d vectors: %d compared with rfc_expect, %d skipped; %d sender-model predictions compared with peer_expect, %d not modelled; %d disagreements",
		len(vectors), compared, skipped, peerCompared, peerSkipped, len(failures))
}

// input is a decoded vector input.
type input struct {
	body    []byte // policy
	txt     [][]string
	rcode   string
	nodata  bool
	cnames  int
	pattern []string // mx-match
	host    string
	prefix  *string
}

func decodeInput(t *testing.T, v vector) input {
	t.Helper()
	var in input
	switch v.Kind {
	case "policy":
		var s string
		if json.Unmarshal(v.Input, &s) == nil {
			in.body = []byte(s)
			break
		}
		var p struct {
			Parts []struct {
				Text   *string `json:"text"`
				Hex    *string `json:"hex"`
				Repeat *string `json:"repeat"`
				Count  int     `json:"count"`
			} `json:"parts"`
		}
		if err := json.Unmarshal(v.Input, &p); err != nil {
			t.Fatalf("%s %s: input: %v", v.file, v.Test, err)
		}
		for _, part := range p.Parts {
			switch {
			case part.Text != nil:
				in.body = append(in.body, *part.Text...)
			case part.Hex != nil:
				b, err := hex.DecodeString(*part.Hex)
				if err != nil {
					t.Fatalf("%s %s: hex: %v", v.file, v.Test, err)
				}
				in.body = append(in.body, b...)
			case part.Repeat != nil:
				in.body = append(in.body, strings.Repeat(*part.Repeat, part.Count)...)
			}
		}
	case "sts-txt", "tlsrpt-txt":
		var d struct {
			TXT    [][]string `json:"txt"`
			Rcode  string     `json:"rcode"`
			NoData bool       `json:"nodata"`
			CNAMEs int        `json:"cnames"`
		}
		if err := json.Unmarshal(v.Input, &d); err != nil {
			t.Fatalf("%s %s: input: %v", v.file, v.Test, err)
		}
		in.txt, in.rcode, in.nodata, in.cnames = d.TXT, d.Rcode, d.NoData, d.CNAMEs
	case "mx-match":
		var d struct {
			Patterns []string `json:"patterns"`
			Host     string   `json:"host"`
			HostDNS  string   `json:"host_dns"`
			Prefix   *string  `json:"policy_prefix"`
		}
		if err := json.Unmarshal(v.Input, &d); err != nil {
			t.Fatalf("%s %s: input: %v", v.file, v.Test, err)
		}
		in.pattern, in.host, in.prefix = d.Patterns, d.Host, d.Prefix
		if d.HostDNS != "" {
			in.host = d.HostDNS // what an MX answer carries
		}
	default:
		t.Fatalf("%s %s: unknown kind %q", v.file, v.Test, v.Kind)
	}
	return in
}

// servedAs is the Content-Type a policy vector is served with.
func (v vector) servedAs() string {
	if v.ServedAs != nil {
		return *v.ServedAs
	}
	return "text/plain; charset=utf-8"
}

// rfcOutcome is what mailtls itself reports for a vector.
func rfcOutcome(t *testing.T, v vector, in input) outcome {
	switch v.Kind {
	case "policy":
		// mailtls policy lint and mailtls check judge a served file the
		// same way: Lint serves the draft under a valid record.
		r := check.Lint(in.body, check.LintOptions{ServedAs: v.servedAs(), Now: now})
		if v.ServedAs != nil && hasFinding(r.Findings, finding.PolicyContentType, finding.Error) {
			return outcome{verdict: "flagged"}
		}
		return policyOutcome(r.Policy)
	case "sts-txt":
		o := vectorObservations(in, "sts-txt")
		r := check.Evaluate(o, now)
		switch r.Status {
		case check.StatusUndetermined:
			return outcome{verdict: "undetermined"}
		case check.StatusEnforce:
			return outcome{verdict: "valid", id: r.PolicyID, haveID: true}
		}
		return outcome{verdict: "unusable"}
	case "tlsrpt-txt":
		o := vectorObservations(in, "tlsrpt-txt")
		r := check.Evaluate(o, now)
		switch {
		case hasFinding(r.Findings, finding.TLSRPTUndetermined, finding.Warning):
			return outcome{verdict: "undetermined"}
		case r.TLSRPT != nil && len(r.TLSRPT.Usable) > 0:
			return outcome{verdict: "valid", rua: r.TLSRPT.RUA, haveRUA: true}
		}
		return outcome{verdict: "unusable"}
	case "mx-match":
		pp := mtasts.ParsePolicy(mxPolicy(in))
		if pp.Policy == nil {
			return outcome{verdict: "policy-invalid"}
		}
		if _, ok := pp.Policy.Match(in.host); ok {
			return outcome{verdict: "match"}
		}
		return outcome{verdict: "nomatch"}
	}
	t.Fatalf("unknown kind %q", v.Kind)
	return outcome{}
}

func policyOutcome(p *mtasts.Policy) outcome {
	if p == nil {
		return outcome{verdict: "invalid"}
	}
	return outcome{verdict: "valid", mode: string(p.Mode), maxAge: p.MaxAge, mx: p.MX}
}

// peerOutcome is what the sender model predicts for the implementation, or
// the reason the vector cannot be put to the model.
func peerOutcome(v vector, in input, sender string) (outcome, string) {
	goodBody := []byte("version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 604800\r\n")
	view := func(si mtasts.SenderInput) mtasts.SenderView {
		for _, s := range mtasts.SenderViews(si) {
			if s.Sender == sender {
				return s
			}
		}
		panic("no sender model " + sender)
	}
	switch v.Kind {
	case "policy":
		body, tooLarge := capBody(in.body)
		s := view(mtasts.SenderInput{TXT: []string{"v=STSv1; id=1"}, ContentType: v.servedAs(), HasContentType: true, Body: body, TooLarge: tooLarge})
		if !s.Applies {
			return outcome{verdict: "invalid"}, ""
		}
		return outcome{verdict: "valid", mode: string(s.Mode), maxAge: s.MaxAge, mx: s.MX}, ""
	case "sts-txt":
		if in.rcode == "SERVFAIL" {
			return outcome{}, "a temporary DNS failure is judged by the scan before any sender model runs (rfc_expect covers it)"
		}
		var txts []string
		for _, rr := range in.txt {
			txts = append(txts, strings.Join(rr, ""))
		}
		s := view(mtasts.SenderInput{TXT: txts, ContentType: "text/plain", HasContentType: true, Body: goodBody})
		if !s.Applies {
			return outcome{verdict: "unusable"}, ""
		}
		return outcome{verdict: "valid", id: s.ID, haveID: true}, ""
	case "mx-match":
		s := view(mtasts.SenderInput{TXT: []string{"v=STSv1; id=1"}, ContentType: "text/plain", HasContentType: true, Body: mxPolicy(in)})
		if !s.Applies {
			return outcome{verdict: "policy-invalid"}, ""
		}
		if s.Match(in.host) {
			return outcome{verdict: "match"}, ""
		}
		return outcome{verdict: "nomatch"}, ""
	}
	return outcome{}, "mailtls has no sender model for " + v.Kind + " records"
}

// capBody cuts a body at 64 KiB as the scan's fetch does (RFC 8461 §3.3).
func capBody(b []byte) ([]byte, bool) {
	if len(b) > mtasts.MaxPolicySize {
		return b[:mtasts.MaxPolicySize], true
	}
	return b, false
}

// mxPolicy builds the policy of an mx-match vector: the prefix plus one mx
// line per pattern, with the prefix's line ending.
func mxPolicy(in input) []byte {
	prefix := "version: STSv1\r\nmode: enforce\r\nmax_age: 604800\r\n"
	if in.prefix != nil {
		prefix = *in.prefix
	}
	eol := "\r\n"
	if !strings.Contains(prefix, "\r\n") {
		eol = "\n"
	}
	var b strings.Builder
	b.WriteString(prefix)
	for _, p := range in.pattern {
		b.WriteString("mx: " + p + eol)
	}
	return []byte(b.String())
}

// vectorObservations builds the scan evidence of a domain whose TXT answer
// (at _mta-sts or _smtp._tls) is the vector's, with a valid policy served.
func vectorObservations(in input, kind string) *scan.Observations {
	const d = "example.com"
	o := &scan.Observations{Domain: d, PolicyHost: "mta-sts." + d}
	name := "_mta-sts." + d
	if kind == "tlsrpt-txt" {
		name = "_smtp._tls." + d
	}
	a := &resolve.Answer{Name: name, Type: "TXT", Status: resolve.StatusOK, Rcode: "NOERROR"}
	owner := name
	for i := range in.cnames {
		target := fmt.Sprintf("c%d.example.net", i)
		a.CNAMEs = append(a.CNAMEs, resolve.Record{Name: owner, Type: "CNAME", TTL: 300, Host: target, Value: target + "."})
		owner = target
	}
	switch {
	case in.rcode == "SERVFAIL":
		a.Status, a.Rcode = resolve.StatusServFail, "SERVFAIL"
	case in.rcode == "NXDOMAIN":
		a.Status, a.Rcode = resolve.StatusNXDomain, "NXDOMAIN"
	case in.rcode != "":
		panic("unknown rcode " + in.rcode)
	case in.nodata || len(in.txt) == 0:
		a.Status = resolve.StatusNoData
	}
	for _, rr := range in.txt {
		a.Records = append(a.Records, resolve.Record{Name: owner, Type: "TXT", TTL: 300, Text: rr, Value: fmt.Sprintf("%q", strings.Join(rr, ""))})
	}
	sts := &resolve.Answer{Name: "_mta-sts." + d, Type: "TXT", Status: resolve.StatusOK, Records: []resolve.Record{
		{Name: "_mta-sts." + d, Type: "TXT", TTL: 300, Text: []string{"v=STSv1; id=20260101"}}}}
	if kind == "sts-txt" {
		o.DNS.STS = a
		o.DNS.TLSRPT = &resolve.Answer{Name: "_smtp._tls." + d, Type: "TXT", Status: resolve.StatusNXDomain}
	} else {
		o.DNS.STS = sts
		o.DNS.TLSRPT = a
	}
	o.DNS.PolicyHostA = &resolve.Answer{Name: o.PolicyHost, Type: "A", Status: resolve.StatusOK,
		Records: []resolve.Record{{Name: o.PolicyHost, Type: "A", Addr: netip.MustParseAddr("192.0.2.1")}}}
	o.DNS.PolicyHostAAAA = &resolve.Answer{Name: o.PolicyHost, Type: "AAAA", Status: resolve.StatusNoData}
	body := "version: STSv1\r\nmode: enforce\r\nmx: mx." + d + "\r\nmax_age: 604800\r\n"
	o.Fetches = []*fetch.Result{{
		URL: "https://" + o.PolicyHost + fetch.Path, Host: o.PolicyHost, Address: "192.0.2.1:443",
		TLS:    &fetch.TLS{Version: "TLS 1.3", Verdict: webpki.Verdict{Trusted: true, NameMatch: true}},
		Status: 200, Header: map[string]string{"Content-Type": "text/plain; charset=utf-8"}, Body: fetch.Body(body), BodyBytes: int64(len(body)),
	}}
	return o
}

func hasFinding(fs []finding.Finding, id finding.ID, sev finding.Severity) bool {
	return slices.ContainsFunc(fs, func(f finding.Finding) bool { return f.ID == id && f.Severity >= sev })
}
