package tlsrptmail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"golang.org/x/net/publicsuffix"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// DKIMStatus is the RFC 8460 §3 verdict on a report mail's DKIM.
type DKIMStatus string

// DKIM verdicts. Only DKIMPass counts: RFC 8460 §3 says reports sent by
// mail "MUST contain a valid DKIM signature by the reporting domain" and
// that reports lacking one "MUST be ignored".
const (
	DKIMPass       DKIMStatus = "pass"        // a valid signature by the reporting domain, without l=
	DKIMNone       DKIMStatus = "none"        // no DKIM-Signature at all
	DKIMFail       DKIMStatus = "fail"        // no signature verifies (tampered, no key, bad key, expired)
	DKIMBodyLength DKIMStatus = "body-length" // the only signatures that could count use l= (RFC 8460 §3 forbids it)
	DKIMUnaligned  DKIMStatus = "unaligned"   // valid signatures, but none by the reporting domain
	DKIMTempError  DKIMStatus = "temperror"   // a key lookup failed temporarily: could not determine, retry
)

// Signature is the check of one DKIM-Signature field.
type Signature struct {
	Domain   string `json:"domain"`   // d=
	Selector string `json:"selector"` // s=
	// Valid: the signature verifies (key found, body and header hashes
	// match, not expired) and has no l= tag.
	Valid      bool   `json:"valid"`
	BodyLength bool   `json:"body_length,omitempty"` // an l= tag is present
	Temporary  bool   `json:"temporary,omitempty"`   // the key lookup failed temporarily
	Error      string `json:"error,omitempty"`
	// KeyServices is the key record's s= list (RFC 6376 §3.6.1); nil when
	// the record has none (all services) or was not found.
	KeyServices []string `json:"key_services,omitempty"`
}

// DKIMResult is the verdict on one report carried by one mail.
type DKIMResult struct {
	Status DKIMStatus `json:"status"`
	Reason string     `json:"reason"`
	// ReportingDomain is the domain the signature had to be by, and
	// ReportingFrom where it came from: "contact-info",
	// "TLS-Report-Submitter", "organization-name" or "From".
	ReportingDomain string `json:"reporting_domain,omitempty"`
	ReportingFrom   string `json:"reporting_from,omitempty"`
	// Domain and Selector of the signature that passed.
	Domain   string `json:"domain,omitempty"`
	Selector string `json:"selector,omitempty"`
	// ServiceTLSRPT: the passing key declares the tlsrpt service type
	// (RFC 8460 §3 SHOULD; a key without s= serves all services).
	ServiceTLSRPT bool        `json:"service_tlsrpt"`
	Signatures    []Signature `json:"signatures,omitempty"`
}

// Counts reports whether the report may be counted (RFC 8460 §3).
func (r *DKIMResult) Counts() bool { return r != nil && r.Status == DKIMPass }

// Ignored says why a report does not count, in the words a list of
// reports shows ("ignored: no valid DKIM signature", and why), or "" when
// it counts. A temporary failure is not ignored for good: it says retry.
func (r *DKIMResult) Ignored() string {
	switch {
	case r.Counts():
		return ""
	case r == nil:
		return "ignored: no valid DKIM signature (not checked)"
	case r.Status == DKIMTempError:
		return "not counted yet: " + r.Reason
	}
	return "ignored: no valid DKIM signature (" + r.Reason + ")"
}

// MaxSignatures bounds the DKIM-Signature fields checked per message.
const MaxSignatures = 5

// DKIMTimeout bounds the key lookups of one message when ctx has no
// deadline.
const DKIMTimeout = 20 * time.Second

// VerifySignatures checks every DKIM signature of raw, the message as
// received, with go-msgauth's verifier and keys looked up through res
// (RFC 6376 §3.6.2.2: the TXT record at <selector>._domainkey.<domain>).
// Signatures with l= are never valid (RFC 8460 §3). A key that declares
// only the tlsrpt service type (s=tlsrpt, as RFC 8460 §3's sample record)
// is appropriate for a report mail, so it is accepted though the library
// knows only "email". At most MaxSignatures are checked.
func VerifySignatures(ctx context.Context, raw []byte, res resolve.Resolver) []Signature {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DKIMTimeout)
		defer cancel()
	}
	raw = crlf(raw)
	var mu sync.Mutex
	services := map[string][]string{} // key record name -> s= list
	lookup := func(name string) ([]string, error) {
		a := res.Lookup(ctx, name, resolve.TypeTXT)
		switch {
		case a.Status == resolve.StatusOK:
			txts := a.TXT()
			for i, t := range txts {
				s := keyServices(t)
				if s != nil {
					mu.Lock()
					services[strings.ToLower(name)] = s
					mu.Unlock()
					if slices.Contains(s, "tlsrpt") && !slices.Contains(s, "email") && !slices.Contains(s, "*") {
						txts[i] = setServices(t, "email")
					}
				}
			}
			return txts, nil
		case a.Status.Temporary():
			return nil, &net.DNSError{Err: fmt.Sprintf("%s (%s)", a.Status, a.Error), Name: name, IsTemporary: true}
		default:
			return nil, &net.DNSError{Err: "no key record (" + string(a.Status) + ")", Name: name, IsNotFound: true}
		}
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: lookup, MaxVerifications: MaxSignatures})
	if err != nil && verifs == nil {
		return []Signature{{Error: "the message could not be read for DKIM: " + err.Error()}}
	}
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// go-msgauth clears a signature's error when it reports an
		// unexpected one for the whole message: trust none of them.
		for _, v := range verifs {
			v.Err = err
		}
	}
	tags := signatureTags(raw)
	var out []Signature
	for i, v := range verifs {
		s := Signature{Domain: domain.Canonical(v.Domain)}
		if i < len(tags) {
			s.Selector = tags[i]["s"]
			_, s.BodyLength = tags[i]["l"]
			if s.Domain == "" {
				s.Domain = domain.Canonical(tags[i]["d"])
			}
		}
		s.KeyServices = services[strings.ToLower(s.Selector+"._domainkey."+s.Domain)]
		switch {
		case s.BodyLength:
			s.Error = "the signature limits the signed body length with l=, which RFC 8460 §3 forbids for reports"
		case v.Err != nil:
			s.Error = v.Err.Error()
			s.Temporary = dkim.IsTempFail(v.Err)
		default:
			s.Valid = true
		}
		out = append(out, s)
	}
	return out
}

// crlf turns a message stored with bare LF line endings (a file, an mbox)
// back into the CRLF form it was signed in.
func crlf(raw []byte) []byte {
	if bytes.Contains(raw, []byte("\r\n")) || !bytes.Contains(raw, []byte("\n")) {
		return raw
	}
	return bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))
}

// keyServices returns a key record's s= list, or nil without one.
func keyServices(rec string) []string {
	for _, tag := range strings.Split(rec, ";") {
		k, v, ok := strings.Cut(tag, "=")
		if ok && strings.TrimSpace(k) == "s" {
			var out []string
			for _, s := range strings.Split(v, ":") {
				if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
					out = append(out, s)
				}
			}
			return out
		}
	}
	return nil
}

// setServices replaces a key record's s= value.
func setServices(rec, services string) string {
	tags := strings.Split(rec, ";")
	for i, tag := range tags {
		if k, _, ok := strings.Cut(tag, "="); ok && strings.TrimSpace(k) == "s" {
			tags[i] = "s=" + services
		}
	}
	return strings.Join(tags, ";")
}

// signatureTags reads the tags of each DKIM-Signature field, in header
// order (the order go-msgauth reports its verifications in).
func signatureTags(raw []byte) []map[string]string {
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(raw)
	}
	var out []map[string]string
	lines := strings.Split(string(raw[:end]), "\r\n")
	for i := 0; i < len(lines); i++ {
		name, val, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "DKIM-Signature") {
			continue
		}
		for i+1 < len(lines) && len(lines[i+1]) > 0 && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			val += lines[i]
		}
		tags := map[string]string{}
		for _, t := range strings.Split(val, ";") {
			if k, v, ok := strings.Cut(t, "="); ok {
				tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
			}
		}
		out = append(out, tags)
		if len(out) == MaxSignatures {
			break
		}
	}
	return out
}

// ReportingDomain is the domain whose signature RFC 8460 §3 requires for
// rep: the domain of its contact-info (RFC 8460 §5.3 ties the
// TLS-Report-Submitter, the "Sender-Domain", to it), else the
// TLS-Report-Submitter, else an organization-name that is a domain name
// (Stalwart and Postfix write host names there), else the From domain.
func ReportingDomain(rep *tlsrpt.Report, env *Envelope) (dom, from string) {
	if d := tlsrpt.ContactDomain(rep.ContactInfo); d != "" {
		return d, "contact-info"
	}
	if env != nil && env.Submitter != "" && domain.CheckHostname(env.Submitter) == nil {
		return env.Submitter, "TLS-Report-Submitter"
	}
	if o := domain.Canonical(rep.OrganizationName); strings.Contains(o, ".") && domain.CheckHostname(o) == nil {
		return o, "organization-name"
	}
	if env != nil && env.FromDomain != "" {
		return env.FromDomain, "From"
	}
	return "", ""
}

// Aligned reports whether a signing domain speaks for the reporting
// domain: both have the same organizational domain (the public suffix
// plus one label), as DMARC's relaxed alignment (RFC 7489 §3.1.1).
// Mail.ru signs as corp.mail.ru and submits as mail.ru.
func Aligned(signer, reporting string) bool {
	signer, reporting = domain.Canonical(signer), domain.Canonical(reporting)
	if signer == "" || reporting == "" {
		return false
	}
	if signer == reporting {
		return true
	}
	a, err1 := publicsuffix.EffectiveTLDPlusOne(signer)
	b, err2 := publicsuffix.EffectiveTLDPlusOne(reporting)
	return err1 == nil && err2 == nil && a == b
}

// Judge decides RFC 8460 §3 for one report from the signatures of the
// mail that carried it.
func Judge(sigs []Signature, rep *tlsrpt.Report, env *Envelope) *DKIMResult {
	r := &DKIMResult{Signatures: sigs}
	r.ReportingDomain, r.ReportingFrom = ReportingDomain(rep, env)
	var valid, aligned []Signature
	var bodyLen, temp bool
	for _, s := range sigs {
		al := r.ReportingDomain != "" && Aligned(s.Domain, r.ReportingDomain)
		switch {
		case s.Valid:
			valid = append(valid, s)
			if al {
				aligned = append(aligned, s)
			}
		case s.BodyLength && al:
			bodyLen = true
		case s.Temporary && al:
			temp = true
		}
	}
	switch {
	case len(aligned) > 0:
		best := aligned[0]
		for _, s := range aligned {
			if hasTLSRPT(s.KeyServices) {
				best = s
				break
			}
		}
		r.Status, r.Domain, r.Selector = DKIMPass, best.Domain, best.Selector
		r.ServiceTLSRPT = hasTLSRPT(best.KeyServices)
		r.Reason = fmt.Sprintf("valid DKIM signature by %s (selector %s), the reporting domain from the %s", best.Domain, best.Selector, r.ReportingFrom)
		if !r.ServiceTLSRPT {
			r.Reason += "; its key does not declare the tlsrpt service type (RFC 8460 §3 SHOULD), which is accepted"
		}
	case len(sigs) == 0:
		r.Status = DKIMNone
		r.Reason = "the mail has no DKIM signature; RFC 8460 §3 says such reports must be ignored"
	case temp:
		r.Status = DKIMTempError
		r.Reason = fmt.Sprintf("the DKIM key of %s could not be looked up just now; could not determine, retry", r.ReportingDomain)
	case bodyLen:
		r.Status = DKIMBodyLength
		r.Reason = fmt.Sprintf("the signature by %s uses l= to limit the signed body, which RFC 8460 §3 forbids: data could be appended to the report", r.ReportingDomain)
	case len(valid) > 0:
		r.Status = DKIMUnaligned
		var ds []string
		for _, s := range valid {
			ds = append(ds, s.Domain)
		}
		if r.ReportingDomain == "" {
			r.Reason = fmt.Sprintf("valid DKIM signatures by %s, but the report names no reporting domain to match them", strings.Join(ds, ", "))
		} else {
			r.Reason = fmt.Sprintf("valid DKIM signatures by %s, but none by the reporting domain %s (from the %s)", strings.Join(ds, ", "), r.ReportingDomain, r.ReportingFrom)
		}
	default:
		r.Status = DKIMFail
		var why []string
		for _, s := range sigs {
			why = append(why, fmt.Sprintf("%s: %s", orUnknown(s.Domain), s.Error))
		}
		r.Reason = "no DKIM signature verifies (" + strings.Join(why, "; ") + ")"
	}
	return r
}

// hasTLSRPT: the key declares the tlsrpt service type explicitly.
func hasTLSRPT(s []string) bool { return slices.Contains(s, "tlsrpt") }

func orUnknown(s string) string {
	if s == "" {
		return "(no d=)"
	}
	return s
}

// Verify checks the DKIM signatures of a report mail (raw, as received)
// and judges each report it carried: the results are in the order of
// m.Parsed().
func Verify(ctx context.Context, raw []byte, m *Message, res resolve.Resolver) []*DKIMResult {
	var sigs []Signature
	if m.Envelope.DKIMSignatures > 0 {
		sigs = VerifySignatures(ctx, skipMboxLine(raw), res)
	}
	var out []*DKIMResult
	for _, rep := range m.Parsed() {
		out = append(out, Judge(sigs, rep, &m.Envelope))
	}
	return out
}
