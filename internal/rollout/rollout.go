// Package rollout makes each step of an MTA-STS deployment exact: the
// records and policy to start with (init), the switch from testing to
// enforce (promote), the withdrawal (retire) and an MX migration (plan),
// with the dates at which senders' caches have caught up (RFC 8461 §3.1,
// §3.2, §5.1, §8.1, §8.3). It is pure: it works on scan reports and an
// injected clock; the command does the I/O.
package rollout

import (
	"fmt"
	"time"

	"github.com/mailtls/mailtls/internal/check"
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

// Margin is added to every waiting time, for clock skew and for senders
// that refresh a little late.
const Margin = 24 * time.Hour

// RUAPlaceholder is the report address used when none is given; the output
// marks it as a placeholder.
const RUAPlaceholder = "mailto:tlsrpt@"

// Stage is one dated step: a policy file to serve and records to change
// (either may be absent), and what to do in words.
type Stage struct {
	At         time.Time      `json:"at"`
	Title      string         `json:"title"`
	Text       string         `json:"text,omitempty"`
	Policy     *mtasts.Policy `json:"-"`
	PolicyURL  string         `json:"policy_url,omitempty"`
	PolicyText string         `json:"policy,omitempty"` // exactly as served: CRLF, version first
	Records    []check.Record `json:"records,omitempty"`
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

func policyURL(d string) string { return mtasts.PolicyURL(d) }

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
	pol := &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeTesting, MaxAge: mtasts.TestingMaxAge, MX: Patterns(mxHosts)}
	rua := o.RUA
	if len(rua) == 0 {
		rua = o.ExistingRUA
	}
	var placeholder string
	if len(rua) == 0 {
		rua = []string{RUAPlaceholder + d}
		placeholder = "the report address " + rua[0] + " is a placeholder: replace it with a mailbox (or https: endpoint) that reads TLS reports"
	}
	for _, u := range rua {
		if !tlsrpt.UsableURI(u) {
			return nil, refuse("%q is not a usable mailto: or https: report URI (RFC 8460 §3)", u)
		}
	}
	rpt := check.TLSRPTRecord(d, rua)
	rpt.Placeholder = placeholder

	host := "mta-sts." + d
	recs := check.HostRecords(d, o.HostCNAME, o.HostAddrs)
	if len(recs) == 0 {
		recs = []check.Record{{Action: "publish", Name: host, Type: "A", TTL: check.RecordTTL, Value: "192.0.2.1",
			Placeholder: "192.0.2.1 is a placeholder: use the address of the web server that serves " + policyURL(d) + " with a certificate for " + host + " (or a CNAME to your policy-hosting provider: --host-address, --host-cname)"}}
	}
	recs = append(recs, check.STSRecord(d, mtasts.NewID(o.Now, o.CurrentID)), rpt)
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
