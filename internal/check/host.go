package check

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/webpki"
)

// Thresholds for the policy host (STS-FETCH-13, STS-HOST-5).
const (
	slowFetchMS   = 4000 // postfix-mta-sts-resolver gives up after 4 s
	longCacheSecs = 3600 // edge caching beyond an hour risks stale policies under a new id
)

// fetchView is one policy fetch as a sender judges it.
type fetchView struct {
	r        *fetch.Result
	where    string    // the address, for messages
	problems []pending // what makes a sender reject this fetch, and warnings
	usable   bool      // a sender gets a policy response (200, trusted chain, TLS 1.2+)
	// body is the policy as a client that asks for no content coding
	// reads it: the body decoded from its Content-Encoding (RFC 9110
	// §8.4); nil when it cannot be read (codingFailed).
	body         []byte
	codingFailed bool
}

// pending is a finding not yet added: fetch problems are merged across
// addresses before they become findings.
type pending struct {
	id  finding.ID
	sev finding.Severity
	msg string
}

var certCodes = map[webpki.Code]finding.ID{
	webpki.NoCertificate:   finding.PolicyCertUntrusted,
	webpki.Expired:         finding.PolicyCertExpired,
	webpki.NotYetValid:     finding.PolicyCertNotYetValid,
	webpki.SelfSigned:      finding.PolicyCertUntrusted,
	webpki.IncompleteChain: finding.PolicyCertIncompleteChain,
	webpki.Untrusted:       finding.PolicyCertUntrusted,
	webpki.Invalid:         finding.PolicyCertUntrusted,
	webpki.NameMismatch:    finding.PolicyCertNameMismatch,
	webpki.ExpiresSoon:     finding.PolicyCertExpiring,
}

// judgeFetch decides what a sender makes of one fetch (RFC 8461 §3.3).
func (e *evaluator) judgeFetch(r *fetch.Result) *fetchView {
	v := &fetchView{r: r, where: r.Address}
	if v.where == "" {
		v.where = r.Dialed + " (connect-to)"
	}
	bad := func(id finding.ID, format string, args ...any) {
		v.problems = append(v.problems, pending{id, finding.Error, fmt.Sprintf(format, args...)})
	}
	if r.TLS == nil {
		if r.Class == fetch.ConnectBlocked {
			bad(finding.PolicyHostNotPublic, "%s: %s.", r.Host, r.Error)
			return v
		}
		if r.Class == fetch.TLSVersion {
			bad(finding.PolicyTLSVersion, "%s at %s: the server offers no TLS version senders accept (%s).", r.Host, v.where, r.Error)
		} else {
			bad(finding.PolicyFetchFailed, "%s at %s: %s.", r.URL, v.where, r.Error)
		}
		return v
	}
	if n := webpki.CertificateMessageSize(r.TLS.Chain, r.TLS.Version); n > webpki.OpenSSLMaxCertList {
		v.problems = append(v.problems, pending{finding.PolicyCertChainTooLarge, finding.Warning,
			fmt.Sprintf("The certificate chain of %s (at %s) takes at least %d bytes in the TLS handshake, more than the %d bytes OpenSSL accepts by default: postfix-mta-sts-resolver (Python's ssl, on OpenSSL) fails the handshake and finds no policy, while Go-based senders (mox, go-mtasts, postfix-tlspol) accept it.", r.Host, v.where, n, webpki.OpenSSLMaxCertList)})
	}
	if tlsOld(r.TLS.Version) {
		bad(finding.PolicyTLSVersion, "%s at %s negotiated %s; senders require TLS 1.2 or newer.", r.Host, v.where, r.TLS.Version)
	}
	for _, p := range r.TLS.Verdict.Problems {
		id := certCodes[p.Code]
		if p.Code == webpki.ExpiresSoon {
			v.problems = append(v.problems, pending{id, finding.Warning, fmt.Sprintf("The certificate of %s (at %s): %s.", r.Host, v.where, p.Detail)})
			continue
		}
		bad(id, "The certificate of %s (at %s): %s.", r.Host, v.where, p.Detail)
	}
	switch {
	case r.Status == 0:
	case r.Status >= 300 && r.Status < 400:
		loc := r.Header["Location"]
		if loc == "" {
			loc = "(no Location header)"
		}
		bad(finding.PolicyHTTPRedirect, "%s answers %d with a redirect to %s; senders do not follow redirects.", r.URL, r.Status, loc)
	case r.Status != 200:
		bad(finding.PolicyHTTPStatus, "%s answers %d %s%s.", r.URL, r.Status, http.StatusText(r.Status), wafHint(r.Status))
	}
	if r.Error != "" {
		bad(finding.PolicyFetchFailed, "%s at %s: %s.", r.URL, v.where, r.Error)
	}
	if r.TooLarge {
		bad(finding.PolicyTooLarge, "%s is larger than %d bytes; senders that cap the policy at 64 KiB find no policy.", r.URL, mtasts.MaxPolicySize)
	}
	v.body = r.Body
	if ce := r.Header["Content-Encoding"]; ce != "" && r.Status == 200 && r.Error == "" && !r.TooLarge {
		body, tooLarge, err := mtasts.DecodedBody(ce, r.Body)
		switch {
		case err != nil:
			v.body, v.codingFailed = nil, true
			bad(finding.PolicyContentEncoding, "%s at %s, asked without Accept-Encoding: %v, so a sender that asks that way finds no policy.", r.URL, v.where, err)
		case tooLarge:
			v.body = nil
			bad(finding.PolicyTooLarge, "%s decoded from Content-Encoding: %s is larger than %d bytes (mailtls stopped decoding there); senders that cap the policy at 64 KiB find no policy.", r.URL, ce, mtasts.MaxPolicySize)
		default:
			v.body = body
		}
	}
	v.usable = !slices.ContainsFunc(v.problems, func(p pending) bool { return p.sev == finding.Error })
	return v
}

func tlsOld(version string) bool {
	return version == "TLS 1.0" || version == "TLS 1.1" || strings.HasPrefix(version, "SSL")
}

// hostVerdict is the verdict on the policy host and its fetches.
type hostVerdict struct {
	state hostState
	why   string // why no sender gets the policy, for the status
	// primary is the fetch a sender would use, or the best one to lint
	// when none works; nil when nothing was fetched.
	primary *fetchView
	usable  []*fetchView // the fetches a sender accepts
}

// policyHost judges mta-sts.<domain>: its addresses and the fetches
// (RFC 8461 §3.3, spec-checklist §B). Problems of the host matter only
// when there is a record (valid or not) or a policy online.
func (e *evaluator) policyHost(rec recState) hostVerdict {
	o := e.o
	host := o.PolicyHost
	a, aaaa := o.DNS.PolicyHostA, o.DNS.PolicyHostAAAA
	var addrs int
	for _, x := range []*resolve.Answer{a, aaaa} {
		if x != nil {
			addrs += len(x.Addrs())
		}
	}
	var v hostVerdict
	switch {
	case o.PolicyHostOverride != "" || addrs > 0:
		v.state = hostResolved
	case a == nil || aaaa == nil || a.Status.Temporary() || aaaa.Status.Temporary():
		v.state = hostUndetermined
	default:
		v.state = hostNoAddress
	}

	var views []*fetchView
	for _, r := range o.Fetches {
		views = append(views, e.judgeFetch(r))
	}
	policyOnline := slices.ContainsFunc(views, func(v *fetchView) bool {
		return v.r.Status == 200 && v.r.Error == "" && bytes.Contains(v.body, []byte("version:"))
	})
	relevant := rec == recValid || rec == recInvalid || policyOnline
	if !relevant {
		return v
	}

	// DNS of the policy host.
	if failed, answered := familyFailure(a, aaaa); failed != nil && o.PolicyHostOverride == "" {
		e.add(finding.PolicyHostFamilyUndetermined, finding.Warning, host,
			fmt.Sprintf("The %s lookup of %s failed (%s) while %s answered (%s): the policy was fetched only from the %s addresses; %s addresses, if any, were not checked.",
				failed.Type, host, temporaryWhy(failed), answered.Type, addrList(answered), family(answered), family(failed)),
			e.fixText(finding.PolicyHostFamilyUndetermined))
	}
	if a != nil && len(a.CNAMEs) > 0 {
		if v.state == hostResolved {
			e.add(finding.PolicyHostDelegated, finding.Info, host,
				fmt.Sprintf("%s is a CNAME to %s.", host, a.Target()), e.fixText(finding.PolicyHostDelegated))
		}
	}
	switch v.state {
	case hostUndetermined:
		why := temporaryWhy(a)
		if a != nil && !a.Status.Temporary() {
			why = temporaryWhy(aaaa)
		}
		v.why = "the address lookup of " + host + " failed (" + why + ")"
		e.add(finding.PolicyHostUndetermined, finding.Warning, host,
			fmt.Sprintf("Could not look up the addresses of %s: %s; retry.", host, why), e.fixText(finding.PolicyHostUndetermined))
		return v
	case hostNoAddress:
		msg := fmt.Sprintf("%s has no A or AAAA record (%s), so senders cannot fetch the policy and treat %s as having none.", host, a.Status, o.Domain)
		if len(a.CNAMEs) > 0 {
			msg = fmt.Sprintf("%s is a CNAME to %s, which has no address (%s); senders cannot fetch the policy.", host, a.Target(), a.Status)
		}
		v.why = host + " has no address"
		if rec == recAbsent {
			return v
		}
		e.add(finding.PolicyHostNoAddress, finding.Error, host, msg, e.fixText(finding.PolicyHostNoAddress))
		return v
	}
	if len(views) == 0 {
		return v
	}

	for _, f := range views {
		if f.usable {
			v.usable = append(v.usable, f)
		}
	}
	switch {
	case len(v.usable) > 0:
		v.primary = v.usable[0]
	default:
		v.primary = views[0]
		for _, f := range views {
			if f.r.Status == 200 {
				v.primary = f
				break
			}
		}
	}

	switch {
	case len(v.usable) == len(views):
		// Every address works; warnings (expiring certificate) once.
		e.addPending(host, views[0].problems)
	case len(v.usable) > 0:
		var failing []string
		for _, f := range views {
			if !f.usable {
				failing = append(failing, fmt.Sprintf("%s (%s)", f.where, firstError(f.problems)))
			}
		}
		e.add(finding.PolicyFetchPartial, finding.Warning, host,
			fmt.Sprintf("%s serves the policy on %d of %d addresses; it fails on %s. Senders that pick a failing address find no policy.", host, len(v.usable), len(views), strings.Join(failing, "; ")),
			e.fixText(finding.PolicyFetchPartial))
	default:
		v.why = "the policy cannot be fetched: " + firstError(views[0].problems)
		if sameProblems(views) {
			e.addPending(host, views[0].problems)
		} else {
			for _, f := range views {
				e.addPending(f.where, f.problems)
			}
		}
	}
	e.consistencyAcrossAddresses(v.usable)
	if v.primary.r.Status == 200 && v.primary.r.Error == "" {
		e.responseHeaders(v.primary.r)
	}
	return v
}

// addPending turns merged fetch problems into findings.
func (e *evaluator) addPending(subject string, ps []pending) {
	for _, p := range ps {
		e.add(p.id, p.sev, subject, p.msg, e.fixText(p.id))
	}
}

func firstError(ps []pending) string {
	for _, p := range ps {
		if p.sev == finding.Error {
			return strings.TrimSuffix(p.msg, ".")
		}
	}
	return "no error"
}

// sameProblems reports whether every address fails for the same reasons.
func sameProblems(views []*fetchView) bool {
	ids := func(v *fetchView) []finding.ID {
		var out []finding.ID
		for _, p := range v.problems {
			out = append(out, p.id)
		}
		slices.Sort(out)
		return out
	}
	first := ids(views[0])
	for _, v := range views[1:] {
		if !slices.Equal(ids(v), first) {
			return false
		}
	}
	return true
}

// consistencyAcrossAddresses compares what the working addresses serve
// (MISC-34, MISC-37).
func (e *evaluator) consistencyAcrossAddresses(usable []*fetchView) {
	if len(usable) < 2 {
		return
	}
	first := usable[0]
	var diff []string
	for _, v := range usable[1:] {
		switch {
		case !bytes.Equal(v.r.Body, first.r.Body):
			diff = append(diff, fmt.Sprintf("%s serves a different policy than %s", v.where, first.where))
		case leafHash(v.r) != leafHash(first.r):
			diff = append(diff, fmt.Sprintf("%s presents a different certificate than %s", v.where, first.where))
		}
	}
	if len(diff) > 0 {
		e.add(finding.PolicyFetchInconsistent, finding.Warning, e.o.PolicyHost, strings.Join(diff, "; ")+".", e.fixText(finding.PolicyFetchInconsistent))
	}
}

func leafHash(r *fetch.Result) string {
	if r.TLS == nil || len(r.TLS.Chain) == 0 {
		return ""
	}
	return r.TLS.Chain[0].SHA256
}

// responseHeaders judges the 200 response a sender would use: media type,
// charset, speed and caching (STS-FETCH-9..13, STS-HOST-5).
func (e *evaluator) responseHeaders(r *fetch.Result) {
	host := e.o.PolicyHost
	ct, has := r.Header["Content-Type"]
	mt, params, err := mime.ParseMediaType(ct)
	switch {
	case !has:
		e.add(finding.PolicyContentType, finding.Error, r.URL,
			fmt.Sprintf("%s is served without a Content-Type header. postfix-mta-sts-resolver, postfix-tlspol (since v1.12.1) and go-mtasts (maddy) ignore such a policy; mox uses it.", r.URL),
			e.fixText(finding.PolicyContentType))
	case err != nil || mt != "text/plain":
		e.add(finding.PolicyContentType, finding.Error, r.URL,
			fmt.Sprintf("%s is served as %q, not text/plain. postfix-mta-sts-resolver, postfix-tlspol (since v1.12.1) and go-mtasts (maddy) ignore such a policy; mox uses it.", r.URL, ct),
			e.fixText(finding.PolicyContentType))
	default:
		if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
			e.add(finding.PolicyCharset, finding.Warning, r.URL,
				fmt.Sprintf("%s is served with charset %q; the policy must be UTF-8 and senders ignore other charset labels.", r.URL, params["charset"]),
				e.fixText(finding.PolicyCharset))
		}
	}
	if r.Timings.Total > slowFetchMS {
		e.add(finding.PolicySlow, finding.Warning, host,
			fmt.Sprintf("Fetching %s took %.1f s; postfix-mta-sts-resolver gives up after 4 s.", r.URL, r.Timings.Total/1000),
			e.fixText(finding.PolicySlow))
	}
	if age := cacheLifetime(r.Header); age > longCacheSecs {
		e.add(finding.PolicyCaching, finding.Warning, host,
			fmt.Sprintf("The policy response allows caching for %d seconds (%s); a CDN may keep serving an old policy after you change it.", age, cacheHeaders(r.Header)),
			e.fixText(finding.PolicyCaching))
	}
}

// cacheLifetime returns the longest lifetime the response's caching headers
// allow or report (Cache-Control max-age or s-maxage, Age).
func cacheLifetime(h map[string]string) int {
	best := 0
	for _, d := range strings.Split(h["Cache-Control"], ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(strings.ToLower(d)), "=")
		if ok && (k == "max-age" || k == "s-maxage") {
			if n, err := strconv.Atoi(strings.Trim(v, `"`)); err == nil {
				best = max(best, n)
			}
		}
	}
	if n, err := strconv.Atoi(h["Age"]); err == nil {
		best = max(best, n)
	}
	return best
}

func cacheHeaders(h map[string]string) string {
	var parts []string
	for _, k := range []string{"Cache-Control", "Age"} {
		if v, ok := h[k]; ok {
			parts = append(parts, k+": "+v)
		}
	}
	return strings.Join(parts, ", ")
}

func wafHint(code int) string {
	switch code {
	case 401, 403, 429, 503:
		return " (often a CDN or firewall bot check that also blocks mail servers)"
	case 404:
		return " (no file at /.well-known/mta-sts.txt)"
	}
	return ""
}
