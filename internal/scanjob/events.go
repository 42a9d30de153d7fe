package scanjob

import (
	"fmt"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// Event is one stage of a scan that has finished: a DNS answer, a policy
// fetch, an SMTP probe. Events are what the progress page and the API's
// event stream show while a scan runs.
type Event struct {
	Seq     int       `json:"seq"` // 1, 2, 3, … within the job
	Stage   Stage     `json:"stage"`
	Subject string    `json:"subject"` // the name or address looked at
	Status  Status    `json:"status"`
	Text    string    `json:"text"` // what was seen, in plain words
	At      time.Time `json:"at"`   // when the stage finished
}

// Stage groups events the way the report is organised.
type Stage string

// Stages, in the order a page lists them.
const (
	StageRecord     Stage = "mta-sts-record" // _mta-sts TXT (and the names checked beside it)
	StagePolicyHost Stage = "policy-host"    // mta-sts.<domain> A/AAAA
	StagePolicy     Stage = "policy"         // the HTTPS fetch from each address
	StageMX         Stage = "mx"             // the MX records
	StageMXHost     Stage = "mx-host"        // each MX host's addresses
	StageSMTP       Stage = "smtp"           // STARTTLS at each MX address
	StageDANE       Stage = "dane"           // TLSA records and the names beside them
	StageTLSRPT     Stage = "tls-rpt"        // _smtp._tls TXT
	StageDNSSEC     Stage = "dnssec"         // whether the resolver validates
)

// Stages lists every stage in page order.
var Stages = []Stage{StageRecord, StagePolicyHost, StagePolicy, StageMX, StageMXHost, StageSMTP, StageDANE, StageTLSRPT, StageDNSSEC}

// Title is the heading of a stage.
func (s Stage) Title() string {
	switch s {
	case StageRecord:
		return "MTA-STS record"
	case StagePolicyHost:
		return "Policy host"
	case StagePolicy:
		return "Policy file"
	case StageMX:
		return "MX records"
	case StageMXHost:
		return "MX host addresses"
	case StageSMTP:
		return "STARTTLS on each MX address"
	case StageDANE:
		return "DANE"
	case StageTLSRPT:
		return "TLS-RPT record"
	case StageDNSSEC:
		return "DNSSEC validation"
	}
	return string(s)
}

// Status is how a stage ended.
type Status string

// Event statuses.
const (
	StatusOK           Status = "ok"           // found and usable
	StatusAbsent       Status = "absent"       // a definite "does not exist"
	StatusUndetermined Status = "undetermined" // a temporary failure: could not tell, retry
	StatusFailed       Status = "failed"       // the server answered badly or not at all
	StatusBlocked      Status = "blocked"      // not connected to: not a public address
	StatusStopped      Status = "stopped"      // cut off by the scan's time budget
	StatusSkipped      Status = "skipped"      // not looked at: beyond the scan's limits
)

// describe turns a step of a scan of domain into an event. overBudget
// says that the scan's time budget had run out when the step ended.
func describe(domain string, st scan.Step, overBudget bool) Event {
	var e Event
	switch {
	case st.DNS != nil:
		e = describeDNS(domain, st.DNS)
	case st.Fetch != nil:
		e = describeFetch(st.Fetch)
	case st.Probe != nil:
		e = describeProbe(st.Probe)
	}
	if overBudget && (e.Status == StatusFailed || e.Status == StatusUndetermined) {
		e.Status = StatusStopped
		e.Text += " (the scan's time budget ran out)"
	}
	return e
}

func dnsStage(domain string, a *resolve.Answer) Stage {
	n := a.Name
	switch {
	case a.Type == "TLSA" || strings.HasPrefix(n, "_tcp."):
		return StageDANE
	case n == "_mta-sts."+domain || n == "_mta_sts."+domain || n == domain && a.Type == "TXT" || n == scan.WildcardProbeLabel+"."+domain:
		return StageRecord
	case n == "_smtp._tls."+domain || n == "_smtp-tlsrpt."+domain || n == "_smtp_tlsrpt."+domain:
		return StageTLSRPT
	case strings.HasPrefix(n, "_smtp._tls."):
		return StageDANE // the TLS-RPT record of an MX host with TLSA records
	case n == "mta-sts."+domain:
		return StagePolicyHost
	case a.Type == "MX":
		return StageMX
	case a.Type == "SOA" && n == ".":
		return StageDNSSEC
	}
	return StageMXHost
}

func describeDNS(domain string, a *resolve.Answer) Event {
	e := Event{Stage: dnsStage(domain, a), Subject: a.Name + " " + a.Type}
	if a.Name == "." {
		e.Subject = "the root zone (. SOA)"
	}
	switch {
	case a.Status == resolve.StatusOK:
		e.Status = StatusOK
		e.Text = found(a)
	case a.Status == resolve.StatusNXDomain:
		e.Status, e.Text = StatusAbsent, "the name does not exist (NXDOMAIN)"
	case a.Status == resolve.StatusNoData:
		e.Status, e.Text = StatusAbsent, "no "+a.Type+" records"
	case a.Status.Temporary():
		e.Status = StatusUndetermined
		e.Text = fmt.Sprintf("could not be determined (%s); this is not the same as absent: retry", orStatus(a.Rcode, string(a.Status)))
	default:
		e.Status = StatusFailed
		e.Text = "lookup failed: " + orStatus(a.Error, string(a.Status))
	}
	if a.Status == resolve.StatusOK && a.Type == "SOA" {
		if a.Authenticated {
			e.Text = "the resolver validates DNSSEC (AD bit set)"
		} else {
			e.Text = "the resolver does not report DNSSEC validation (no trusted AD bit)"
		}
	}
	return e
}

func orStatus(s, fallback string) string {
	if s != "" {
		return s
	}
	return fallback
}

// found summarises an answer with records.
func found(a *resolve.Answer) string {
	n := len(a.Records)
	var what string
	switch a.Type {
	case "MX":
		var hosts []string
		for _, mx := range a.MX() {
			hosts = append(hosts, fmt.Sprintf("%d %s", mx.Preference, mx.Host))
		}
		what = "MX " + limitList(hosts, 6)
	case "A", "AAAA":
		var ips []string
		for _, ip := range a.Addrs() {
			ips = append(ips, ip.String())
		}
		what = limitList(ips, 6)
	default:
		what = fmt.Sprintf("%d %s %s", n, a.Type, plural(n, "record", "records"))
	}
	if a.Authenticated {
		what += ", DNSSEC-signed (AD)"
	}
	if len(a.CNAMEs) > 0 {
		what += ", via CNAME " + a.CNAMEs[len(a.CNAMEs)-1].Host
	}
	return what
}

func limitList(s []string, n int) string {
	if len(s) > n {
		return strings.Join(s[:n], ", ") + fmt.Sprintf(" and %d more", len(s)-n)
	}
	return strings.Join(s, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func describeFetch(r *fetch.Result) Event {
	e := Event{Stage: StagePolicy, Subject: r.Address}
	if e.Subject == "" {
		e.Subject = r.Host
	}
	switch {
	case r.Class == fetch.ConnectBlocked:
		e.Status, e.Text = StatusBlocked, r.Error
	case r.Error != "" && r.Status == 0:
		e.Status, e.Text = StatusFailed, r.Error
	default:
		e.Text = fmt.Sprintf("HTTP %d, %d bytes", r.Status, r.BodyBytes)
		if r.TLS != nil {
			e.Text += ", " + r.TLS.Version
		}
		e.Status = StatusOK
		if r.Status != 200 || r.Error != "" {
			e.Status = StatusFailed
			if r.Error != "" {
				e.Text += ": " + r.Error
			}
		}
		if r.TLS != nil && !r.TLS.Verdict.OK() {
			e.Status = StatusFailed
			e.Text += ", certificate not accepted by senders"
		}
	}
	return e
}

func describeProbe(r *smtpprobe.Result) Event {
	e := Event{Stage: StageSMTP, Subject: r.Host + " " + r.Address}
	switch {
	case r.Class == smtpprobe.ConnectBlocked:
		e.Status, e.Text = StatusBlocked, r.Error
	case r.Class == smtpprobe.NotProbedLimit:
		e.Status, e.Text = StatusSkipped, r.Error
	case !r.Class.Observed():
		e.Status, e.Text = StatusStopped, r.Error // the budget ran out: nothing about the server
	case r.Class != "":
		e.Status, e.Text = StatusFailed, r.Error
		if r.Class == smtpprobe.BannerTemporary || r.Class == smtpprobe.BannerPermanent {
			e.Text += " (a refusal of the scanner is not proof of a fault)"
		}
	case r.TLS == nil:
		e.Status, e.Text = StatusFailed, "no TLS session"
	default:
		e.Status, e.Text = StatusOK, "STARTTLS, "+r.TLS.Version
		if r.TLS.Verdict.OK() {
			e.Text += ", certificate valid for the host name"
		} else {
			e.Status = StatusFailed
			e.Text += ", certificate not valid for the host name (DANE may still apply)"
		}
	}
	return e
}
