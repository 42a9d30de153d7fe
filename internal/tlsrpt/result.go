package tlsrpt

// ResultType is an RFC 8460 §4.3 result type: the stable vocabulary for
// what went wrong in a TLS session, shared by scans, reports and the
// resolver.
type ResultType string

// Result types (RFC 8460 §4.3.1, §4.3.2; IANA registry, §6.6).
const (
	// Negotiation failures (§4.3.2.1).
	STARTTLSNotSupported    ResultType = "starttls-not-supported"
	CertificateHostMismatch ResultType = "certificate-host-mismatch"
	CertificateExpired      ResultType = "certificate-expired"
	CertificateNotTrusted   ResultType = "certificate-not-trusted"
	ValidationFailure       ResultType = "validation-failure"
	// DANE failures (§4.3.2.1).
	TLSAInvalid   ResultType = "tlsa-invalid"
	DNSSECInvalid ResultType = "dnssec-invalid"
	DANERequired  ResultType = "dane-required"
	// MTA-STS failures (§4.3.2.2).
	STSPolicyFetchError ResultType = "sts-policy-fetch-error"
	STSPolicyInvalid    ResultType = "sts-policy-invalid"
	STSWebPKIInvalid    ResultType = "sts-webpki-invalid"
)
