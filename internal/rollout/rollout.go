// Package rollout makes each step of an MTA-STS deployment exact: the
// records and policy to start with (init), the switch from testing to
// enforce (promote), the withdrawal (retire) and an MX migration (plan),
// with the dates at which senders' caches have caught up (RFC 8461 §3.1,
// §3.2, §5.1, §8.1, §8.3). It is pure: it works on scan reports and an
// injected clock; the command does the I/O.
package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// RefusedError says why a step cannot be planned for the domain as it is
// or with the options given. Reason is meant for the user as it stands.
type RefusedError struct {
	Reason string
}

func (e *RefusedError) Error() string { return "rollout: " + e.Reason }

func refuse(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// Defaults of a new rollout.
const (
	InitialMaxAge = 86400  // testing: one day, so mistakes expire quickly
	EnforceMaxAge = 604800 // enforce: at least a week (MISC-17)
	RecordTTL     = 3600   // TXT records: id changes propagate within an hour (STS-TXT-21)
	// Margin is added to every waiting time, for clock skew and for senders
	// that refresh a little late.
	Margin = 24 * time.Hour
)

// RUAPlaceholder is the report address used when none is given; the output
// marks it as a placeholder.
const RUAPlaceholder = "mailto:tlsrpt@"

// Record is a DNS record to publish or delete.
type Record struct {
	Action string `json:"action"` // "publish" or "delete"
	Name   string `json:"name"`   // owner name, no trailing dot
	Type   string `json:"type"`
	TTL    int    `json:"ttl"`
	Value  string `json:"value"`
	// Placeholder says that Value must be edited before publishing.
	Placeholder string `json:"placeholder,omitempty"`
}

// Stage is one dated step: a policy file to serve and records to change
// (either may be absent), and what to do in words.
type Stage struct {
	At         time.Time      `json:"at"`
	Title      string         `json:"title"`
	Text       string         `json:"text,omitempty"`
	Policy     *mtasts.Policy `json:"-"`
	PolicyURL  string         `json:"policy_url,omitempty"`
	PolicyText string         `json:"policy,omitempty"` // exactly as served: CRLF, version first
	Records    []Record       `json:"records,omitempty"`
}

// Output is what a lifecycle command prints.
type Output struct {
	Domain   string   `json:"domain"`
	Command  string   `json:"command"`
	Stages   []Stage  `json:"stages"`
	Warnings []string `json:"warnings,omitempty"`
	// Refused is set when the command will not produce its output (promote
	// with failing MX hosts and no --force); Reasons says why.
	Refused bool     `json:"refused,omitempty"`
	Reasons []string `json:"reasons,omitempty"`
}

// withPolicy sets a stage's policy and its served text.
func (s Stage) withPolicy(d string, p *mtasts.Policy) Stage {
	s.Policy, s.PolicyURL, s.PolicyText = p, policyURL(d), p.String()
	return s
}

func policyURL(d string) string { return "https://mta-sts." + d + "/.well-known/mta-sts.txt" }

// stsRecord is the _mta-sts TXT record for a new id.
func stsRecord(d, id string) Record {
	return Record{Action: "publish", Name: "_mta-sts." + d, Type: "TXT", TTL: RecordTTL, Value: mtasts.VersionTag + "; id=" + id}
}

// InitOptions are the inputs of Init besides the MX hosts.
type InitOptions struct {
	RUA         []string // report URIs; empty = the published ones, or a placeholder mailbox
	ExistingRUA []string // usable URIs of the published TLS-RPT record
	HostAddrs   []string // addresses of the web server for mta-sts.<domain>
	HostCNAME   string   // or the provider's host to delegate mta-sts.<domain> to
	Now         time.Time
	CurrentID   string // the published id, if any: the new one differs
}

// Init builds everything a domain publishes to start with MTA-STS: the
// policy in testing mode for the live MX set, the _mta-sts record with a
// fresh id, the TLS-RPT record and the policy host's address records. It
// returns a *RefusedError when there is no MX host to list or a report URI
// is unusable.
func Init(d string, mxHosts []string, o InitOptions) (*Output, error) {
	if len(mxHosts) == 0 {
		return nil, refuse("%s has no MX hosts that could be listed in a policy", d)
	}
	pol := &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeTesting, MaxAge: InitialMaxAge, MX: Patterns(mxHosts)}
	var recs []Record
	rua := o.RUA
	if len(rua) == 0 {
		rua = o.ExistingRUA
	}
	rpt := Record{Action: "publish", Name: "_smtp._tls." + d, Type: "TXT", TTL: RecordTTL}
	if len(rua) == 0 {
		rua = []string{RUAPlaceholder + d}
		rpt.Placeholder = "the report address " + rua[0] + " is a placeholder: replace it with a mailbox (or https: endpoint) that reads TLS reports"
	}
	for _, u := range rua {
		if rec, _ := tlsrpt.ParseRecord(tlsrpt.VersionTag + "; rua=" + u); rec == nil || len(rec.Usable) != 1 {
			return nil, refuse("%q is not a usable mailto: or https: report URI (RFC 8460 §3)", u)
		}
	}
	rpt.Value = tlsrpt.VersionTag + "; rua=" + strings.Join(rua, ",")

	host := "mta-sts." + d
	switch {
	case o.HostCNAME != "":
		recs = append(recs, Record{Action: "publish", Name: host, Type: "CNAME", TTL: RecordTTL, Value: strings.TrimSuffix(o.HostCNAME, ".") + "."})
	case len(o.HostAddrs) > 0:
		for _, a := range o.HostAddrs {
			typ := "A"
			if strings.Contains(a, ":") {
				typ = "AAAA"
			}
			recs = append(recs, Record{Action: "publish", Name: host, Type: typ, TTL: RecordTTL, Value: a})
		}
	default:
		recs = append(recs, Record{Action: "publish", Name: host, Type: "A", TTL: RecordTTL, Value: "192.0.2.1",
			Placeholder: "192.0.2.1 is a placeholder: use the address of the web server that serves " + policyURL(d) + " with a certificate for " + host + " (or a CNAME to your policy-hosting provider: --host-address, --host-cname)"})
	}
	recs = append(recs, stsRecord(d, mtasts.NewID(o.Now, o.CurrentID)), rpt)
	out := &Output{Domain: d, Command: "init"}
	out.Stages = []Stage{
		Stage{At: o.Now, Title: "Start in testing mode",
			Text:    "Point " + host + " at a web server with a publicly trusted certificate for it, serve the policy file there (Content-Type: text/plain), then publish the TXT records. Check with: mailtls check " + d,
			Records: recs}.withPolicy(d, pol),
		{At: o.Now.Add(14 * 24 * time.Hour), Title: "Review the reports",
			Text: "Read the TLS-RPT reports for about two weeks. When they show no failures, switch to enforce: mailtls policy promote " + d},
	}
	return out, nil
}

// Patterns builds mx patterns for a set of MX hosts (see
// mtasts.SuggestPatterns).
func Patterns(hosts []string) []string { return mtasts.SuggestPatterns(hosts) }
