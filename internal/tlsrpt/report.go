package tlsrpt

import (
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
)

// PolicyType is an RFC 8460 §4.4 policy-type. Unknown values are kept
// verbatim (with a note), so nothing a sender says is lost.
type PolicyType string

// Policy types (RFC 8460 §4.4).
const (
	PolicySTS      PolicyType = "sts"
	PolicyTLSA     PolicyType = "tlsa"
	PolicyNotFound PolicyType = "no-policy-found"
)

// Known reports whether t is one of the three RFC 8460 policy types.
func (t PolicyType) Known() bool {
	return t == PolicySTS || t == PolicyTLSA || t == PolicyNotFound
}

// Known reports whether r is a result type of the IANA registry
// (RFC 8460 §6.6).
func (r ResultType) Known() bool {
	switch r {
	case STARTTLSNotSupported, CertificateHostMismatch, CertificateExpired, CertificateNotTrusted,
		ValidationFailure, TLSAInvalid, DNSSECInvalid, DANERequired,
		STSPolicyFetchError, STSPolicyInvalid, STSWebPKIInvalid:
		return true
	}
	return false
}

// Report is one aggregate TLS-RPT report (RFC 8460 §4.4) as read by
// [Parse]: every value a sender sent, normalised where the RFC allows one
// meaning, and a note for every deviation. Times are UTC.
type Report struct {
	OrganizationName string    `json:"organization"`
	ContactInfo      string    `json:"contact_info,omitempty"` // "" when absent or null
	ReportID         string    `json:"report_id"`
	Start            time.Time `json:"start"`
	End              time.Time `json:"end"`
	Policies         []Policy  `json:"policies"`
	Notes            []Note    `json:"notes,omitempty"`
}

// Policy is one entry of "policies": the policy a sender applied to a
// domain and the sessions it counted under it.
type Policy struct {
	Type   PolicyType `json:"type"`
	Domain string     `json:"domain"` // lower-case A-label; "" when unknown
	// Strings is policy-string, one line or TLSA record per element, with
	// echoed CRs removed and Microsoft's JSON-encoded TLSA list decoded.
	Strings []string `json:"policy_string,omitempty"`
	// MXHost is mx-host as sent (a lone string becomes a one-element list).
	MXHost []string `json:"mx_host,omitempty"`
	// MXPatterns are the policy's mx patterns: mx-host when it holds any,
	// else the mx: lines of an sts policy-string (MXSource says which).
	MXPatterns []string `json:"mx_patterns,omitempty"`
	MXSource   string   `json:"mx_source,omitempty"` // "mx-host", "policy-string" or ""
	// Successful and Failed are the summary totals as the sender stated
	// them. When the summary lacks the failure total, Failed is the sum
	// of the details (with a note).
	Successful int64 `json:"successful"`
	Failed     int64 `json:"failed"`
	// DetailsFailed is the sum of failed-session-count over every failure
	// detail, dropped ones included; it may differ from Failed (a note
	// says so).
	DetailsFailed int64           `json:"details_failed"`
	Failures      []FailureDetail `json:"failure_details,omitempty"`
	// DetailsDropped counts the failure details beyond the per-report cap
	// that were summed into DetailsFailed but not kept.
	DetailsDropped int `json:"details_dropped,omitempty"`
}

// Sessions is Successful + Failed: the sessions this entry covers.
func (p *Policy) Sessions() int64 { return p.Successful + p.Failed }

// STS parses an sts policy-string as an MTA-STS policy (RFC 8461 §3.2;
// line order does not matter). It returns nil for other policy types or
// when there is no policy-string.
func (p *Policy) STS() *mtasts.ParsedPolicy {
	if p.Type != PolicySTS || len(p.Strings) == 0 {
		return nil
	}
	return mtasts.ParsePolicy([]byte(strings.Join(p.Strings, "\n") + "\n"))
}

// FailureDetail is one element of "failure-details" (RFC 8460 §4.4).
// Absent values are "".
type FailureDetail struct {
	ResultType          ResultType `json:"result_type"`
	SendingMTAIP        string     `json:"sending_mta_ip,omitempty"`
	ReceivingMXHostname string     `json:"receiving_mx_hostname,omitempty"`
	ReceivingMXHelo     string     `json:"receiving_mx_helo,omitempty"`
	ReceivingIP         string     `json:"receiving_ip,omitempty"`
	FailedSessions      int64      `json:"failed_sessions"`
	AdditionalInfo      string     `json:"additional_information,omitempty"`
	FailureReasonCode   string     `json:"failure_reason_code,omitempty"`
}

// NoteCode names one kind of deviation from RFC 8460 found in a report.
// Codes are stable; they never change meaning.
type NoteCode string

// Note codes.
const (
	// Payload.
	NoteBOM               NoteCode = "bom"
	NoteNestedCompression NoteCode = "nested-compression"
	NoteZip               NoteCode = "zip"
	NoteGzipDamaged       NoteCode = "gzip-damaged"
	NoteTrailingData      NoteCode = "trailing-data"

	// JSON shape.
	NoteKeyCase      NoteCode = "key-case"      // a key in another case, accepted
	NoteKeyAlias     NoteCode = "key-alias"     // a misspelt or draft key, accepted
	NoteKeyUnknown   NoteCode = "key-unknown"   // a key RFC 8460 does not define, ignored
	NoteKeyDuplicate NoteCode = "key-duplicate" // a key given twice; the first counts
	NoteWrongType    NoteCode = "wrong-type"    // a value of the wrong JSON type, ignored
	NoteTruncated    NoteCode = "truncated"     // a string cut at MaxString
	NoteNull         NoteCode = "null"          // an optional value given as null

	// Report header.
	NoteOrganizationMissing NoteCode = "organization-missing"
	NoteContactMissing      NoteCode = "contact-info-missing"
	NoteReportIDMissing     NoteCode = "report-id-missing"
	NoteDateNoZone          NoteCode = "datetime-no-zone"
	NoteDateFormat          NoteCode = "datetime-format"
	NoteDateInverted        NoteCode = "date-range-inverted"
	NoteDateNotOneDay       NoteCode = "date-range-not-one-day"

	// Policies.
	NotePoliciesDropped     NoteCode = "policies-dropped"
	NotePolicyTypeUnknown   NoteCode = "policy-type-unknown"
	NotePolicyDomainMissing NoteCode = "policy-domain-missing"
	NotePolicyDomainInvalid NoteCode = "policy-domain-invalid"
	NotePolicyStringMissing NoteCode = "policy-string-missing"
	NotePolicyStringCR      NoteCode = "policy-string-cr"
	NotePolicyStringTLSA    NoteCode = "policy-string-tlsa-encoded"
	NoteMXHostString        NoteCode = "mx-host-string"
	NoteMXHostPrefix        NoteCode = "mx-host-prefix"
	NoteMXHostMissing       NoteCode = "mx-host-missing"
	NoteMXHostDisagrees     NoteCode = "mx-host-disagrees"
	NoteSamePolicyTwice     NoteCode = "same-policy-twice"

	// Counts.
	NoteSummaryMissing  NoteCode = "summary-missing"
	NoteCountMissing    NoteCode = "count-missing"
	NoteCountNotInteger NoteCode = "count-not-integer"
	NoteTotalsDisagree  NoteCode = "totals-disagree"
	NoteDetailsMissing  NoteCode = "failure-details-missing"
	NoteDetailsDropped  NoteCode = "failure-details-dropped"

	// Failure details.
	NoteSendingIPMissing  NoteCode = "sending-mta-ip-missing"
	NoteMXHostnameMissing NoteCode = "receiving-mx-hostname-missing"
	NoteIPInvalid         NoteCode = "ip-invalid"
	NoteResultTypeUnknown NoteCode = "result-type-unknown"

	// Notes beyond the cap.
	NoteMore NoteCode = "more-notes"
)

// Note is one deviation from RFC 8460 found in a report, kept with the
// report. Path is where in the JSON ("policies[1].failure-details[*].
// sending-mta-ip"; [*] when the note stands for several elements, Count
// saying how many), Value the raw value as sent (cut to 200 characters).
type Note struct {
	Code  NoteCode `json:"code"`
	Path  string   `json:"path,omitempty"`
	Value string   `json:"value,omitempty"`
	Count int      `json:"count,omitempty"` // occurrences folded into this note, when more than one
	Text  string   `json:"text"`
}

// HasNote reports whether the report carries a note with code c.
func (r *Report) HasNote(c NoteCode) bool {
	for _, n := range r.Notes {
		if n.Code == c {
			return true
		}
	}
	return false
}
