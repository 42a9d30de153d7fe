package sendpolicy

import (
	"encoding/hex"
	"strings"

	"github.com/mailtls/mailtls/internal/dane"
	"github.com/mailtls/mailtls/internal/resolve"
)

// DANEInput is the DNS evidence of DANE for a next-hop domain (RFC 7672
// §2.2): the MX lookup and, for each MX host (or the domain itself as
// implicit MX), its address and TLSA lookups.
type DANEInput struct {
	// Validating is true when the resolver is trusted to validate DNSSEC
	// (resolve's AD trust rules) and sets AD on the signed root: only then
	// does a clear AD bit mean "insecure".
	Validating bool
	MX         *resolve.Answer
	Hosts      []DANEHost
}

// DANEHost is the evidence of one MX host.
type DANEHost struct {
	Host     string
	Implicit bool // no MX records: the domain is its own host (RFC 5321 §5.1)
	A, AAAA  *resolve.Answer
	// TLSA is _25._tcp.<host>; nil when it was not asked because the
	// addresses are not secure (RFC 7672 §2.2.2).
	TLSA *resolve.Answer
}

// DANEState summarises DANE for the whole next-hop domain.
type DANEState string

// DANE states, from the RFC 7672 §2.2 outcomes of every MX host.
const (
	DANENotValidating DANEState = "not-validating" // no trusted validating resolver: DNSSEC status unknown
	DANENone          DANEState = "none"           // DANE does not apply (insecure MX, no or insecure TLSA)
	DANEAll           DANEState = "all"            // every MX host has secure usable TLSA records
	DANESome          DANEState = "some"           // some MX hosts do, others have no DANE
	DANEUnusable      DANEState = "unusable"       // secure TLSA records exist, none usable: encryption without authentication (RFC 7672 §2.2)
	DANETemporary     DANEState = "temporary"      // a lookup on the DANE path failed: cannot tell (RFC 7672 §2.1.1)
)

// HostState is the DANE outcome of one MX host (RFC 7672 §2.2).
type HostState string

// Host states.
const (
	HostUsable    HostState = "usable"     // secure TLSA RRset with a usable record: DANE authentication
	HostUnusable  HostState = "unusable"   // secure TLSA RRset, no usable record: mandatory unauthenticated TLS
	HostNoTLSA    HostState = "no-tlsa"    // secure denial or insecure TLSA: opportunistic TLS
	HostInsecure  HostState = "insecure"   // addresses not DNSSEC-signed: TLSA not looked up
	HostTemporary HostState = "temporary"  // an address or TLSA lookup failed
	HostNoAddress HostState = "no-address" // the host has no address records
)

// HostVerdict is what was found for one host.
type HostVerdict struct {
	Host   string    `json:"host"`
	State  HostState `json:"state"`
	Detail string    `json:"detail,omitempty"`
}

// DANEVerdict is the DANE judgement of a next-hop domain.
type DANEVerdict struct {
	State  DANEState     `json:"state"`
	Reason string        `json:"reason"`
	Hosts  []HostVerdict `json:"hosts,omitempty"`
}

// JudgeDANE applies RFC 7672 §2.2 to the evidence.
func JudgeDANE(in DANEInput) DANEVerdict {
	if !in.Validating {
		return DANEVerdict{State: DANENotValidating, Reason: "the resolver is not a trusted validating resolver, so DNSSEC cannot be judged and DANE is not used"}
	}
	mx := in.MX
	switch {
	case mx == nil:
		return DANEVerdict{State: DANENone, Reason: "the MX lookup was not made"}
	case mx.Status.Temporary():
		return DANEVerdict{State: DANETemporary, Reason: "the MX lookup failed (" + describe(mx) + "); whether DANE applies is unknown (RFC 7672 §2.1.1)"}
	case mx.Status == resolve.StatusNXDomain:
		return DANEVerdict{State: DANENone, Reason: "the domain does not exist (NXDOMAIN)"}
	case !mx.Authenticated:
		return DANEVerdict{State: DANENone, Reason: "the MX records are not DNSSEC-signed, so DANE cannot authenticate this destination (RFC 7672 §2.2.1)"}
	case isNullMX(mx):
		return DANEVerdict{State: DANENone, Reason: "the domain publishes a null MX (RFC 7505): it accepts no mail"}
	}
	v := DANEVerdict{}
	var usable, unusable, temp int
	for _, h := range in.Hosts {
		hv := judgeHost(h)
		v.Hosts = append(v.Hosts, hv)
		switch hv.State {
		case HostUsable:
			usable++
		case HostUnusable:
			unusable++
		case HostTemporary:
			temp++
		}
	}
	n := len(in.Hosts)
	switch {
	case temp > 0:
		v.State = DANETemporary
		v.Reason = "a DNSSEC lookup of an MX host failed; DANE may apply, so neither MTA-STS nor plain TLS may take over (RFC 7672 §2.2, RFC 8461 §2)"
	case n > 0 && usable == n:
		v.State = DANEAll
		v.Reason = "the MX records are signed and every MX host has signed, usable TLSA records (RFC 7672 §2.2)"
	case usable > 0:
		v.State = DANESome
		v.Reason = "the MX records are signed and some MX hosts have signed, usable TLSA records; the others have none"
	case unusable > 0:
		v.State = DANEUnusable
		v.Reason = "signed TLSA records exist but none is usable: TLS is mandatory, authentication is not (RFC 7672 §2.2)"
	default:
		v.State = DANENone
		v.Reason = "the MX records are signed but no MX host has signed TLSA records"
	}
	return v
}

func judgeHost(h DANEHost) HostVerdict {
	hv := HostVerdict{Host: h.Host}
	secure, temp, addrs := false, false, 0
	for _, a := range []*resolve.Answer{h.A, h.AAAA} {
		switch {
		case a == nil:
		case a.Status.Temporary():
			temp = true
		case a.Status == resolve.StatusOK:
			addrs += len(a.Addrs())
			if a.Authenticated && len(a.Addrs()) > 0 {
				secure = true
			}
		}
	}
	switch {
	case !secure && temp:
		hv.State, hv.Detail = HostTemporary, "an address lookup failed"
		return hv
	case !secure && addrs == 0:
		hv.State, hv.Detail = HostNoAddress, "no A or AAAA records"
		return hv
	case !secure:
		hv.State, hv.Detail = HostInsecure, "the addresses are not DNSSEC-signed (RFC 7672 §2.2.2)"
		return hv
	}
	t := h.TLSA
	switch {
	case t == nil:
		hv.State, hv.Detail = HostTemporary, "the TLSA lookup was not made"
	case t.Status.Temporary():
		hv.State, hv.Detail = HostTemporary, "the TLSA lookup "+t.Name+" failed ("+describe(t)+")"
	case t.Status.Absent():
		hv.State, hv.Detail = HostNoTLSA, "no TLSA records at "+t.Name
	case !t.Authenticated:
		hv.State, hv.Detail = HostNoTLSA, "the TLSA records at "+t.Name+" are not DNSSEC-signed"
	default:
		var recs []string
		usable := false
		for _, r := range t.Records {
			recs = append(recs, r.Value)
			data, err := hex.DecodeString(r.Data)
			if err != nil {
				continue
			}
			rec := dane.TLSA{Usage: r.Usage, Selector: r.Selector, MatchingType: r.MatchingType, Data: data}
			if u, _ := rec.Usability(); u == dane.Usable {
				usable = true
			}
		}
		hv.State = HostUnusable
		if usable {
			hv.State = HostUsable
		}
		hv.Detail = strings.Join(recs, ", ")
	}
	return hv
}

func isNullMX(a *resolve.Answer) bool {
	mx := a.MX()
	return len(mx) == 1 && (mx[0].Host == "." || mx[0].Host == "")
}

func describe(a *resolve.Answer) string {
	s := string(a.Status)
	if a.Rcode != "" && a.Status != resolve.StatusTimeout {
		s = a.Rcode
	}
	return s
}
