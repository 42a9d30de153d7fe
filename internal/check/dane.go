package check

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/mailtls/mailtls/internal/dane"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// DANE verdicts for one address.
const (
	DANEAddrValid      = "valid"      // a usable, secure TLSA record authenticates the presented chain
	DANEAddrMismatch   = "mismatch"   // DANE applies and the chain does not match: DANE senders refuse it
	DANEAddrUnverified = "unverified" // DANE applies but the probe got no certificate to check
)

// DNSSEC states of an answer.
const (
	DNSSECSecure   = "secure"
	DNSSECInsecure = "insecure"
	DNSSECUnknown  = "unknown" // no validating resolver on a trusted path
	DNSSECFailed   = "failed"  // the lookup failed (SERVFAIL from a validator may be bogus DNSSEC)
)

// DANEHost is the DANE state of one MX host.
type DANEHost struct {
	// Status: none, unknown, insecure, lookup-failed, unusable, valid,
	// invalid (an address does not match) or unverified (nothing to check).
	Status   string
	DNSSEC   string   // of the TLSA RRset
	Owner    string   // the name the TLSA records were found at
	Records  []string // as published, "3 1 1 <hex>"
	Rollover string   // the rollover scheme, or why there is none
}

// daneState is what the evaluation knows about one MX host's DANE.
type daneState struct {
	answer     *resolve.Answer
	owner      string
	dnssec     string
	records    []dane.TLSA
	usable     []dane.TLSA
	bad        []badRecord
	addrSecure bool
	applies    bool // secure usable records and secure addresses: DANE decides (RFC 7672 §2.2)
}

type badRecord struct {
	rec    string
	u      dane.Usability
	reason string
}

// validates reports whether the resolver is known to validate DNSSEC: it
// is trusted (loopback or --trust-ad) and sets AD on the signed root.
func (e *evaluator) validates() bool {
	r := e.o.DNS.Root
	return r != nil && r.Authenticated
}

func (e *evaluator) dnssecOf(a *resolve.Answer) string {
	switch {
	case a == nil || !e.validates():
		return DNSSECUnknown
	case a.Status.Temporary():
		return DNSSECFailed
	case a.Authenticated:
		return DNSSECSecure
	}
	return DNSSECInsecure
}

// daneStates works out the DANE state of every MX host: which TLSA RRset
// a sender uses (the CNAME-expanded name first, RFC 7672 §2.2.3), its
// DNSSEC status, and which records are usable.
func (e *evaluator) daneStates() map[*scan.MXHost]*daneState {
	out := make(map[*scan.MXHost]*daneState, len(e.o.MXHosts))
	for _, h := range e.o.MXHosts {
		out[h] = e.daneOf(h)
	}
	return out
}

// daneOf works out the DANE state of one MX host.
func (e *evaluator) daneOf(h *scan.MXHost) *daneState {
	st := &daneState{answer: h.TLSA, owner: "_25._tcp." + h.Host}
	if x := h.TLSAExpanded; x != nil && x.Status == resolve.StatusOK && len(x.Records) > 0 {
		st.answer, st.owner = x, x.Name
	}
	st.dnssec = e.dnssecOf(st.answer)
	st.addrSecure = h.A != nil && h.A.Authenticated && len(h.A.Addrs()) > 0 || h.AAAA != nil && h.AAAA.Authenticated && len(h.AAAA.Addrs()) > 0
	if a := st.answer; a != nil && a.Status == resolve.StatusOK {
		for _, r := range a.Records {
			data, err := hex.DecodeString(r.Data)
			t := dane.TLSA{Usage: r.Usage, Selector: r.Selector, MatchingType: r.MatchingType, Data: data}
			if err != nil {
				st.bad = append(st.bad, badRecord{rec: r.Value, u: dane.Malformed, reason: "the association data is not hexadecimal"})
				continue
			}
			st.records = append(st.records, t)
			if u, why := t.Usability(); u == dane.Usable {
				st.usable = append(st.usable, t)
			} else {
				st.bad = append(st.bad, badRecord{rec: t.String(), u: u, reason: why})
			}
		}
	}
	st.applies = st.dnssec == DNSSECSecure && len(st.usable) > 0 && st.addrSecure
	return st
}

// daneNames are the DANE-TA reference identifiers (RFC 7672 §3.2.2): the
// TLSA base domain, the MX host name and, when the MX lookup was secure,
// the domain itself.
func (e *evaluator) daneNames(h *scan.MXHost, st *daneState) []string {
	names := []string{h.Host}
	if base := strings.TrimPrefix(st.owner, "_25._tcp."); base != h.Host {
		names = append(names, base)
	}
	if mx := e.o.DNS.MX; mx != nil && mx.Authenticated {
		names = append(names, e.o.Domain)
	}
	return names
}

// daneAddress verifies the chain presented at one address against the
// host's TLSA records (RFC 7672 §3.2, DANE-VER-12), sets the address's
// DANE verdict and returns the mismatch, if any.
func (e *evaluator) daneAddress(h *scan.MXHost, st *daneState, a *Address) *daneMiss {
	if !st.applies {
		return nil
	}
	if a.Probe == nil || a.Probe.TLS == nil {
		a.DANE = DANEAddrUnverified
		return nil
	}
	chain, err := a.Probe.TLS.Certificates()
	if err != nil || len(chain) == 0 {
		a.DANE = DANEAddrUnverified
		return nil
	}
	res := dane.Verify(st.usable, chain, dane.VerifyOptions{Names: e.daneNames(h, st), Now: e.now})
	if res.Authenticated {
		a.DANE = DANEAddrValid
		if res.Matched != nil {
			a.DANERecord = res.Matched.String()
		}
		return nil
	}
	a.DANE = DANEAddrMismatch
	a.ResultType = tlsrpt.TLSAInvalid
	return &daneMiss{h: h, ip: a.IP, res: res, chain: chain}
}

type daneMiss struct {
	h     *scan.MXHost
	ip    string
	res   dane.Result
	chain []*x509.Certificate
}

// daneFindings judges the TLSA records of every MX host (RFC 7672,
// spec-checklist §F) after the probes have been verified (misses), sets
// the DANE state of each host in mx and returns the TLSA records to
// publish.
func (e *evaluator) daneFindings(mx []MX, daneOf map[*scan.MXHost]*daneState, misses []daneMiss) []Fix {
	d := &daneJudge{evaluator: e, misses: misses}
	var withDANE, without []string
	unknownSaid := false
	for _, h := range e.o.MXHosts {
		m := mxFor(mx, h.Host)
		if h.Implicit || h.Skipped != "" || m == nil {
			continue
		}
		st := daneOf[h]
		info := &DANEHost{DNSSEC: st.dnssec, Owner: st.owner}
		m.DANE = info
		for _, r := range st.records {
			info.Records = append(info.Records, r.String())
		}
		for _, b := range st.bad {
			if b.u == dane.Malformed {
				info.Records = append(info.Records, b.rec)
			}
		}
		a := st.answer
		switch {
		case a == nil:
			continue
		case a.Status.Temporary():
			info.Status = "lookup-failed"
			sev := finding.Warning
			if e.validates() && a.Status == resolve.StatusServFail {
				sev = finding.Error
			}
			e.add(finding.DANELookupFailed, sev, st.owner,
				fmt.Sprintf("The TLSA lookup %s failed (%s). DANE senders treat %s as unreachable while this lasts and do not fall back to MTA-STS or plain TLS.", st.owner, temporaryWhy(a), h.Host),
				e.fixText(finding.DANELookupFailed, "<mx>", h.Host))
			continue
		case len(a.Records) == 0:
			info.Status = "none"
			if st.addrSecure && e.validates() {
				without = append(without, h.Host)
				e.add(finding.DANEAbsent, finding.Info, h.Host,
					fmt.Sprintf("%s has DNSSEC-signed addresses but no TLSA records at %s.", h.Host, st.owner),
					e.fixText(finding.DANEAbsent, "<mx>", h.Host))
			}
			continue
		}
		if st.dnssec == DNSSECUnknown {
			info.Status = "unknown"
			if !unknownSaid {
				unknownSaid = true
				e.add(finding.DANEDNSSECUnknown, finding.Info, h.Host, e.unknownDNSSECMessage(), e.fixText(finding.DANEDNSSECUnknown))
			}
		}
		e.daneRecords(h, st)
		switch {
		case st.dnssec == DNSSECInsecure:
			info.Status = "insecure"
			e.add(finding.DANETLSAInsecure, finding.Warning, st.owner,
				fmt.Sprintf("%s has TLSA records (%s) but they are not DNSSEC-signed, so every sender ignores them.", st.owner, strings.Join(info.Records, ", ")),
				e.fixText(finding.DANETLSAInsecure, "<mx>", h.Host))
			continue
		case st.dnssec == DNSSECSecure && !st.addrSecure:
			info.Status = "insecure"
			e.add(finding.DANEAddressInsecure, finding.Warning, h.Host,
				fmt.Sprintf("The TLSA records at %s are signed, but the A/AAAA records of %s are not, so senders do not look for them.", st.owner, h.Host),
				e.fixText(finding.DANEAddressInsecure, "<mx>", h.Host))
			continue
		case !st.applies:
			if info.Status == "" {
				info.Status = "unusable"
			}
			continue
		}
		withDANE = append(withDANE, h.Host)
		d.applied(h, st, m, info)
	}
	if len(withDANE) > 0 && len(without) > 0 {
		e.add(finding.DANEPartial, finding.Warning, e.o.Domain,
			fmt.Sprintf("DANE protects %s but not %s.", strings.Join(withDANE, ", "), strings.Join(without, ", ")),
			e.fixText(finding.DANEPartial, "<list>", strings.Join(without, ", ")))
	}
	return d.fixes
}

// daneJudge is the state of one daneFindings step: the mismatches the
// probes found, and what it has said and asked to publish so far.
type daneJudge struct {
	*evaluator
	misses         []daneMiss
	mxInsecureSaid bool
	fixes          []Fix // TLSA records to publish, per host
}

// daneRecords reports malformed, unusable and discouraged records.
func (e *evaluator) daneRecords(h *scan.MXHost, st *daneState) {
	var pkix []string
	for _, b := range st.bad {
		switch b.u {
		case dane.Malformed:
			e.add(finding.DANEMalformed, finding.Error, st.owner,
				fmt.Sprintf("%s TLSA %s: %s.", st.owner, b.rec, b.reason), e.fixText(finding.DANEMalformed, "<mx>", h.Host))
		default:
			pkix = append(pkix, b.rec+" ("+b.reason+")")
		}
	}
	if len(pkix) > 0 {
		sev, what := finding.Warning, "SMTP senders ignore them; the other records still apply."
		if len(st.usable) == 0 {
			sev, what = finding.Error, "no usable record is left, so DANE senders only require encryption and authenticate nothing."
		}
		e.add(finding.DANEUnusable, sev, st.owner,
			fmt.Sprintf("%s has records SMTP senders cannot use: %s; %s", st.owner, strings.Join(pkix, "; "), what),
			e.fixText(finding.DANEUnusable, "<mx>", h.Host))
	}
	var style []string
	sha512Only := len(st.usable) > 0
	for _, r := range st.usable {
		switch {
		case r.MatchingType == 0:
			style = append(style, r.Params()+" (full data instead of a digest)")
		case r.Usage == 2 && r.Selector == 1:
			style = append(style, r.Params()+" (trust anchor by key only)")
		}
		if r.MatchingType != 2 {
			sha512Only = false
		}
	}
	if sha512Only {
		style = append(style, "only SHA-512 records (SHA-256 is the mandatory digest)")
	}
	if len(style) > 0 {
		e.add(finding.DANERecordStyle, finding.Info, st.owner,
			fmt.Sprintf("%s uses discouraged parameters: %s.", st.owner, strings.Join(style, "; ")), e.fixText(finding.DANERecordStyle))
	}
}

// applied judges a host where DANE decides: the verification of every
// address, rollover readiness, and the DNS around it.
func (e *daneJudge) applied(h *scan.MXHost, st *daneState, m *MX, info *DANEHost) {
	if mx := e.o.DNS.MX; mx != nil && !mx.Authenticated && !e.mxInsecureSaid {
		e.mxInsecureSaid = true
		e.add(finding.DANEMXInsecure, finding.Warning, e.o.Domain,
			fmt.Sprintf("%s has secure TLSA records, but the MX records of %s are not DNSSEC-signed: DANE senders authenticate %s only as the MX host, and a forged MX record would bypass it.", h.Host, e.o.Domain, h.Host),
			e.fixText(finding.DANEMXInsecure))
	}
	if n := h.TCPNode; n != nil && n.Status == "nxdomain" {
		e.add(finding.DANETCPNXDomain, finding.Error, "_tcp."+h.Host,
			fmt.Sprintf("_tcp.%s answers NXDOMAIN although %s has TLSA records; resolvers that minimise queries will not find them.", h.Host, st.owner),
			e.fixText(finding.DANETCPNXDomain, "<mx>", h.Host))
	}
	if r := h.TLSRPT; r != nil && (r.Status == "nxdomain" || r.Status == "nodata") {
		e.add(finding.DANEHostTLSRPT, finding.Info, "_smtp._tls."+h.Host,
			fmt.Sprintf("There is no TLS-RPT record at _smtp._tls.%s, where DANE reporters such as mox send their reports.", h.Host),
			e.fixText(finding.DANEHostTLSRPT, "<mx>", h.Host))
	}

	valid, verified := 0, 0
	var chain []*x509.Certificate
	for _, a := range m.Addresses {
		switch a.DANE {
		case DANEAddrValid:
			valid++
			verified++
			if chain == nil {
				chain, _ = a.Probe.TLS.Certificates()
			}
		case DANEAddrMismatch:
			verified++
		}
	}
	for _, miss := range e.misses {
		if miss.h != h {
			continue
		}
		e.mismatch(h, st, miss)
		if chain == nil {
			chain = miss.chain
		}
	}
	switch {
	case verified == 0:
		info.Status = "unverified"
	case valid == verified:
		info.Status = "valid"
		e.add(finding.DANEValid, finding.Info, h.Host,
			fmt.Sprintf("The TLSA records at %s authenticate %s on every probed address; DANE senders use this before MTA-STS (RFC 8461 §2).", st.owner, h.Host),
			e.fixText(finding.DANEValid))
	default:
		info.Status = "invalid"
	}
	if chain == nil {
		return
	}
	ro := dane.CheckRollover(st.usable, chain)
	info.Rollover = ro.Scheme
	if !ro.Ready {
		info.Rollover = ro.Detail
		e.add(finding.DANENoRollover, finding.Warning, st.owner,
			fmt.Sprintf("%s: %s.", st.owner, strings.TrimSuffix(ro.Detail, ".")), e.fixText(finding.DANENoRollover))
		e.tlsaFix(h, chain, "Publish these TLSA records (the second one keeps DANE working through a key rollover).")
	}
	if valid > 0 {
		for _, r := range dane.Stale(st.usable, chain) {
			e.add(finding.DANEStale, finding.Info, st.owner,
				fmt.Sprintf("%s TLSA %s matches no certificate the server presents (a next key, or a retired one).", st.owner, r.String()),
				e.fixText(finding.DANEStale))
		}
	}
}

// mismatch reports an address whose chain no usable record matches.
func (e *daneJudge) mismatch(h *scan.MXHost, st *daneState, miss daneMiss) {
	id, detail := finding.DANEMismatch, "no usable TLSA record matches the certificate it presents"
	for _, p := range miss.res.Problems {
		switch p.Code {
		case dane.TANotInChain, dane.TAIsLeaf, dane.TAPathInvalid, dane.NameMismatch:
			id, detail = finding.DANETAInvalid, p.Detail
		case dane.WeakerDigestOnly:
			e.add(finding.DANEDigest, finding.Warning, st.owner, fmt.Sprintf("%s at %s: %s.", h.Host, miss.ip, p.Detail), e.fixText(finding.DANEDigest))
		}
	}
	leaf := ""
	if len(miss.chain) > 0 {
		leaf = " (its key is " + dane.Record(3, 1, 1, miss.chain[0]).String() + ")"
	}
	e.add(id, finding.Error, h.Host+" ("+miss.ip+")",
		fmt.Sprintf("%s at %s: %s%s; DANE senders will not deliver to it, and MTA-STS cannot make up for it.", h.Host, miss.ip, detail, leaf),
		e.fixText(id, "<mx>", h.Host))
	e.tlsaFix(h, miss.chain, "Publish TLSA records that match the certificate the server presents now; remove the old ones two TTLs after.")
}

// tlsaFix adds the TLSA records to publish for a chain, once per host.
func (e *daneJudge) tlsaFix(h *scan.MXHost, chain []*x509.Certificate, text string) {
	name := "_25._tcp." + h.Host
	for _, f := range e.fixes {
		if f.Name == name {
			return
		}
	}
	recs := dane.Recommend(chain)
	for i, r := range recs {
		f := Fix{Kind: FixDNS, Action: "publish", Name: name, Type: "TLSA", TTL: RecordTTL, Value: r.String()}
		if i == 0 {
			f.Text = text
		}
		e.fixes = append(e.fixes, f)
	}
}

func (e *evaluator) unknownDNSSECMessage() string {
	r := e.o.DNS.Root
	switch {
	case r == nil:
		return "The DNSSEC status of the TLSA records is unknown."
	case !r.Validating:
		return fmt.Sprintf("The resolver %s is not trusted to validate DNSSEC (only loopback resolvers and those named with --trust-ad are), so the DNSSEC status of the TLSA records is unknown and DANE cannot be judged.", r.Server)
	}
	return fmt.Sprintf("The resolver %s does not set the AD bit on the signed root zone, so it does not validate DNSSEC; the DNSSEC status of the TLSA records is unknown and DANE cannot be judged.", r.Server)
}
