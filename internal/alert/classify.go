package alert

import (
	"strings"

	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// transientIDs are findings that a temporary condition can cause: a
// timeout, a lookup that could not be answered, an MX host that did not
// answer. They are told only when a second scan confirms them.
var transientIDs = map[string]bool{
	"sts-record-undetermined":         true,
	"policy-host-undetermined":        true,
	"policy-host-family-undetermined": true,
	"mx-undetermined":                 true,
	"mx-address-undetermined":         true,
	"mx-address-family-undetermined":  true,
	"tlsrpt-undetermined":             true,
	"dane-lookup-failed":              true,
	"smtp-unreachable":                true,
	"smtp-no-banner":                  true,
	"smtp-not-probed":                 true,
}

// blinds says which components a temporary failure in a component leaves
// the scan unable to judge: without the record or the policy, MX coverage
// and the severity of certificate problems (which follows the policy's
// mode) cannot be told; without the MX set, nothing below it.
//
// What the TLS-RPT reports show ("tls-rpt-reports") is explained against
// the scan's policy and MX hosts: without them a blocking failure cannot
// be told from a fixed one.
var blinds = map[string][]string{
	"mta-sts-record": {"mta-sts-record", "policy-host", "policy", "mx", "smtp", "dane", "tls-rpt", "history", "tls-rpt-reports"},
	"policy-host":    {"policy-host", "policy", "mx", "smtp", "history", "tls-rpt-reports"},
	"policy":         {"policy", "mx", "smtp", "history", "tls-rpt-reports"},
	"mx":             {"mx", "smtp", "dane", "history", "tls-rpt-reports"},
	"smtp":           {"smtp", "dane", "history", "tls-rpt-reports"},
	"dane":           {"dane", "history", "tls-rpt-reports"},
	"tls-rpt":        {"tls-rpt", "history"},
}

// Classify turns a document's findings into observations: each with the
// stage of its history finding (stages by Key; nil for none) and whether
// it is transient. held lists the components the scan could not see, whose
// open problems this scan must not resolve.
func Classify(doc *report.Document, stages map[string]int) (obs []Observation, held map[string]bool) {
	held = map[string]bool{}
	if doc.PolicyStatus == "undetermined" {
		for _, c := range blinds["mta-sts-record"] {
			held[c] = true
		}
	}
	for _, f := range doc.Findings {
		o := Observation{Finding: f, Stage: stages[Key(f)], Transient: transient(doc, f)}
		if o.Transient {
			for _, c := range blinds[f.Component] {
				held[c] = true
			}
		}
		obs = append(obs, o)
	}
	return obs, held
}

func transient(doc *report.Document, f report.Finding) bool {
	if transientIDs[f.ID] {
		return true
	}
	switch f.ID {
	case "policy-fetch-failed", "policy-fetch-partial":
		if doc.Evidence == nil {
			return true // cannot tell why: confirm
		}
		for _, r := range doc.Evidence.Fetches {
			switch r.Class {
			case fetch.ConnectRefused, fetch.ConnectTimeout, fetch.ConnectError, fetch.TLSTimeout, fetch.HTTPTimeout:
				return true
			}
		}
	case "smtp-banner-refused", "smtp-starttls-failed":
		// A 4xx banner is greylisting, a rate limit or a busy server; a
		// handshake that timed out may be load. A 5xx banner or a failed
		// handshake is the server's answer.
		if doc.Evidence == nil {
			return true
		}
		host, _, _ := strings.Cut(f.Subject, " (")
		for _, h := range doc.Evidence.MXHosts {
			if h.Host != host {
				continue
			}
			for _, p := range h.Probes {
				if p.Class == smtpprobe.BannerTemporary || p.Class == smtpprobe.TLSTimeout {
					return true
				}
			}
		}
	}
	return false
}
