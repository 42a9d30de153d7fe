package sendpolicy

import (
	"mime"
	"slices"
	"strconv"
	"strings"

	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
)

// RecordState is what a sender makes of the _mta-sts TXT lookup.
type RecordState string

// Record states (RFC 8461 §3.1).
const (
	RecordValid     RecordState = "valid"     // exactly one valid record: ID is set
	RecordAbsent    RecordState = "absent"    // NXDOMAIN, NODATA or no record starting with "v=STSv1;"
	RecordInvalid   RecordState = "invalid"   // two or more records, or one that does not parse
	RecordTemporary RecordState = "temporary" // the lookup failed: could not determine (STS-TXT-16)
)

// JudgeRecord applies RFC 8461 §3.1 to the TXT answer at _mta-sts.<domain>
// with the scan's rule (mtasts.SelectRecord): a single record is parsed as
// it is; of several, those not beginning with "v=STSv1;" are discarded;
// exactly one must remain and parse, with a valid id. TXT records that are
// not meant as MTA-STS at all count as no record.
func JudgeRecord(a *resolve.Answer) (state RecordState, id, detail string) {
	switch {
	case a == nil:
		return RecordTemporary, "", "the TXT lookup was not made"
	case a.Status.Temporary():
		return RecordTemporary, "", "the TXT lookup of " + a.Name + " failed (" + describe(a) + ")"
	case a.Status.Absent():
		return RecordAbsent, "", "no TXT record at " + a.Name + " (" + string(a.Status) + ")"
	}
	txts := a.TXT()
	rec, txt, why := mtasts.SelectRecord(txts)
	switch {
	case rec != nil:
		return RecordValid, rec.ID, "record id " + rec.ID
	case txt == "" && !slices.ContainsFunc(txts, mtasts.LooksLikeRecord):
		return RecordAbsent, "", "no MTA-STS record among the TXT records at " + a.Name
	}
	return RecordInvalid, "", printable(a.Name+": "+why, 200)
}

// FetchFailure names why a fetch gave no policy; the values are metric
// labels.
type FetchFailure string

// Fetch failures (RFC 8461 §3.3, §3.2).
const (
	FetchOK          FetchFailure = ""
	FetchNoAddress   FetchFailure = "no-address"       // mta-sts.<domain> has no address
	FetchDNS         FetchFailure = "dns"              // its address lookup failed
	FetchConnect     FetchFailure = "connect"          // refused, unreachable, timed out
	FetchTLS         FetchFailure = "tls"              // handshake failed or TLS older than 1.2 (RFC 8461 §3.3)
	FetchCertificate FetchFailure = "certificate"      // untrusted, expired or not for mta-sts.<domain> (RFC 8461 §3.3)
	FetchRedirect    FetchFailure = "redirect"         // 3xx: not followed (RFC 8461 §3.3)
	FetchStatus      FetchFailure = "http-status"      // not 200
	FetchHTTP        FetchFailure = "http"             // malformed or cut-off response
	FetchContentType FetchFailure = "content-type"     // not text/plain (RFC 8461 §3.2)
	FetchTooLarge    FetchFailure = "too-large"        // over 64 KiB (RFC 8461 §3.3), after decoding
	FetchEncoding    FetchFailure = "content-encoding" // a Content-Encoding that cannot be decoded
	FetchInvalid     FetchFailure = "invalid"          // the body is not a valid policy (RFC 8461 §3.2, STS-POL-19)
)

// FetchFailures lists every failure, for metrics with fixed label values.
var FetchFailures = []FetchFailure{FetchNoAddress, FetchDNS, FetchConnect, FetchTLS, FetchCertificate, FetchRedirect, FetchStatus, FetchHTTP, FetchContentType, FetchTooLarge, FetchEncoding, FetchInvalid}

// JudgeFetch decides whether one fetch gives a sender a policy (RFC 8461
// §3.3): a TLS 1.2+ connection with a certificate valid for the policy
// host, status 200 without redirect, media type text/plain (the SHOULD
// of §3.2, which the Debian peer also enforces), at most 64 KiB, and a
// body that matches the policy grammar (mtasts.ParsePolicy). The fetch
// must have been made without Accept-Encoding (fetch.Fetcher with an empty
// AcceptEncodings), as a sender asks.
func JudgeFetch(r *fetch.Result) (*mtasts.Policy, FetchFailure, string) {
	switch {
	case r == nil:
		return nil, FetchConnect, "no fetch"
	case r.TLS == nil && r.Error != "":
		switch r.Class {
		case fetch.TLSError, fetch.TLSVersion, fetch.TLSTimeout:
			return nil, FetchTLS, r.Error
		case fetch.HTTPError, fetch.HTTPTimeout:
			return nil, FetchHTTP, r.Error
		}
		return nil, FetchConnect, r.Error
	case r.TLS == nil:
		return nil, FetchTLS, "no TLS connection"
	case r.TLS.Version != "TLS 1.2" && r.TLS.Version != "TLS 1.3":
		return nil, FetchTLS, r.Host + " negotiated " + r.TLS.Version + "; RFC 8461 §3.3 requires TLS 1.2 or newer"
	case !r.TLS.Verdict.OK():
		why := "the certificate is not valid for " + r.Host
		if len(r.TLS.Verdict.Problems) > 0 {
			why = r.TLS.Verdict.Problems[0].Detail
		}
		return nil, FetchCertificate, why
	case r.Status >= 300 && r.Status < 400:
		return nil, FetchRedirect, "HTTP " + strconv.Itoa(r.Status) + " redirect (not followed, RFC 8461 §3.3)"
	case r.Error != "":
		return nil, FetchHTTP, r.Error
	case r.Status != 200:
		return nil, FetchStatus, "HTTP " + strconv.Itoa(r.Status)
	case r.TooLarge:
		return nil, FetchTooLarge, "the policy is larger than 64 KiB"
	}
	ct, ok := r.Header["Content-Type"]
	mt, _, err := mime.ParseMediaType(ct)
	if !ok || err != nil || !strings.EqualFold(mt, "text/plain") {
		return nil, FetchContentType, "Content-Type " + strconv.Quote(ct) + " is not text/plain"
	}
	// The request asked for no content coding; a coded answer is decoded
	// as an HTTP client must (gzip, deflate; RFC 9110 §8.4), at most
	// 64 KiB of it (mtasts.DecodedBody).
	body, tooLarge, err := mtasts.DecodedBody(r.Header["Content-Encoding"], r.Body)
	switch {
	case err != nil:
		return nil, FetchEncoding, printable(err.Error(), 200)
	case tooLarge:
		return nil, FetchTooLarge, "the decoded policy is larger than 64 KiB"
	}
	pp := mtasts.ParsePolicy(body)
	if pp.Policy == nil {
		why := "the policy is invalid"
		for _, p := range pp.Problems {
			if p.Fatal {
				why = p.String()
				break
			}
		}
		return nil, FetchInvalid, printable(why, 200)
	}
	return pp.Policy, FetchOK, "fetched from " + r.Address
}
