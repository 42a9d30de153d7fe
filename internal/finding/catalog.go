package finding

// The catalog. Checklist IDs refer to spec-checklist.md; "§H" is its
// implementation divergence matrix.

var (
	onlyError      = []Severity{Error}
	onlyWarning    = []Severity{Warning}
	onlyInfo       = []Severity{Info}
	errorOrWarning = []Severity{Error, Warning}
	warningOrInfo  = []Severity{Warning, Info}
)

// _mta-sts TXT record (RFC 8461 §3.1).
var (
	STSRecordMissing = def(Def{
		ID: "sts-record-missing", Component: ComponentRecord, Severities: onlyInfo,
		Title:     "No MTA-STS TXT record",
		Explain:   "Without a TXT record at _mta-sts.<domain> that starts with \"v=STSv1;\", senders never look for a policy: mail to the domain is protected only opportunistically and can be downgraded to plain text by an attacker.",
		Fix:       "Publish TXT _mta-sts.<domain> \"v=STSv1; id=<id>\" together with a policy at https://mta-sts.<domain>/.well-known/mta-sts.txt (start with mode: testing).",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-4"},
	})
	STSRecordUndetermined = def(Def{
		ID: "sts-record-undetermined", Component: ComponentRecord, Severities: onlyWarning,
		Title:     "MTA-STS TXT record could not be looked up",
		Explain:   "The DNS lookup failed temporarily (SERVFAIL, REFUSED or timeout), so the scan cannot tell whether the record exists. This is not the same as \"not configured\". If the authoritative servers fail like this for senders too, some senders defer mail and others skip the policy.",
		Fix:       "Retry the scan. If it persists, check the authoritative name servers of <domain> for _mta-sts.<domain> TXT queries.",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-16"},
	})
	STSRecordMultiple = def(Def{
		ID: "sts-record-multiple", Component: ComponentRecord, Severities: onlyError,
		Title:     "More than one MTA-STS TXT record",
		Explain:   "When more than one TXT record at _mta-sts starts with \"v=STSv1;\", senders must assume the domain has no MTA-STS policy.",
		Fix:       "Keep exactly one TXT record at _mta-sts.<domain> that starts with \"v=STSv1;\" and delete the others.",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-4", "MISC-22"},
	})
	STSRecordVersion = def(Def{
		ID: "sts-record-version", Component: ComponentRecord, Severities: onlyError,
		Title:     "MTA-STS TXT record does not start with v=STSv1",
		Explain:   "The record must begin with exactly \"v=STSv1\" (case-sensitive, no leading space, no quotes). Anything else is not an MTA-STS record for senders.",
		Fix:       "Set the TXT value to exactly: v=STSv1; id=<id>",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-6", "MISC-31"},
	})
	STSRecordQuoted = def(Def{
		ID: "sts-record-quoted", Component: ComponentRecord, Severities: onlyError,
		Title:     "MTA-STS TXT record contains literal quote characters",
		Explain:   "The quotes of a zone file or a DNS provider form ended up inside the record value, so it starts with a quote instead of v=STSv1.",
		Fix:       "Set the TXT value without quote characters: v=STSv1; id=<id> (in a zone file the quotes delimit the string; in a web form type the value without them).",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-6", "MISC-31"},
	})
	STSRecordSpaceBeforeSemicolon = def(Def{
		ID: "sts-record-space-before-semicolon", Component: ComponentRecord, Severities: errorOrWarning,
		Title:     "Space before the first semicolon of the MTA-STS record",
		Explain:   "\"v=STSv1 ;\" matches the grammar, whose delimiter allows whitespace around ';'. When it is the only TXT record at _mta-sts, no filter applies and senders use it (a warning: it is fragile). When several TXT records come back, senders first discard those that do not begin with exactly \"v=STSv1;\" (erratum 6285), and RFC 8461 senders then find no record (an error), while mox, postfix-mta-sts-resolver and postfix-tlspol accept it anyway.",
		Fix:       "Remove the space: v=STSv1; id=<id>",
		Ref:       "RFC 8461 §3.1; erratum 6285",
		Checklist: []string{"STS-TXT-7", "AMB-2"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	STSRecordSpaceAroundEquals = def(Def{
		ID: "sts-record-space-around-equals", Component: ComponentRecord, Severities: onlyError,
		Title:     "Space around '=' in the MTA-STS record",
		Explain:   "\"id = 1\" is not valid: no whitespace is allowed around '='. Senders treat the record as invalid and skip the policy.",
		Fix:       "Write the fields without spaces around '=': v=STSv1; id=<id>",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-8", "MISC-31"},
	})
	STSRecordIDMissing = def(Def{
		ID: "sts-record-id-missing", Component: ComponentRecord, Severities: onlyError,
		Title:     "MTA-STS record has no valid id",
		Explain:   "The id field is required; without it the record is invalid and senders skip the policy.",
		Fix:       "Set the TXT value to: v=STSv1; id=<id>",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-5", "MISC-31"},
	})
	STSRecordIDInvalid = def(Def{
		ID: "sts-record-id-invalid", Component: ComponentRecord, Severities: onlyError,
		Title:     "MTA-STS id has characters other than letters and digits, or is too long",
		Explain:   "The id may contain only 1 to 32 ASCII letters and digits. Hyphens, dots, '+', '/' or a longer value make the record invalid (\"id=2024-01-01\" parses as an unknown field named id, so the record has no id).",
		Fix:       "The id may contain only letters and digits (max 32), e.g. \"id=<id>\".",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-9", "MISC-16"},
	})
	STSRecordIDDuplicate = def(Def{
		ID: "sts-record-id-duplicate", Component: ComponentRecord, Severities: onlyWarning,
		Title:     "MTA-STS record has more than one id",
		Explain:   "Senders use the first id; a second one is confusing and some parsers reject repeated fields.",
		Fix:       "Keep a single id: v=STSv1; id=<id>",
		Ref:       "RFC 8461 §3.1, §3.2",
		Checklist: []string{"STS-TXT-10"},
	})
	STSRecordExtension = def(Def{
		ID: "sts-record-extension", Component: ComponentRecord, Severities: onlyInfo,
		Title:     "MTA-STS record has an extension field",
		Explain:   "Unknown fields are allowed and ignored by senders; only v and id are defined.",
		Fix:       "Nothing to do, unless the field is a typo.",
		Ref:       "RFC 8461 §3.1, §9.2",
		Checklist: []string{"STS-TXT-12"},
	})
	STSRecordSyntax = def(Def{
		ID: "sts-record-syntax", Component: ComponentRecord, Severities: onlyError,
		Title:     "MTA-STS record is not valid",
		Explain:   "The record does not match the grammar (a missing ';' between fields, an empty field, a field without '=', a value with forbidden characters). Senders treat an invalid record as no record.",
		Fix:       "Set the TXT value to exactly: v=STSv1; id=<id>",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-5", "STS-TXT-12", "MISC-31"},
	})
	STSRecordNonASCII = def(Def{
		ID: "sts-record-non-ascii", Component: ComponentRecord, Severities: onlyError,
		Title:     "MTA-STS record contains non-ASCII or control characters",
		Explain:   "The record must be US-ASCII. A non-breaking space, smart quote, zero-width character or tab copied from a web page makes it invalid.",
		Fix:       "Retype the TXT value by hand: v=STSv1; id=<id>",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-13"},
	})
	STSRecordTrailingSpace = def(Def{
		ID: "sts-record-trailing-space", Component: ComponentRecord, Severities: onlyError,
		Title:     "MTA-STS record ends with whitespace",
		Explain:   "Whitespace after the last value is outside the grammar unless a ';' follows; strict parsers reject the record.",
		Fix:       "Remove the trailing space, or end the record with ';': v=STSv1; id=<id>;",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-14", "MISC-26"},
	})
	STSRecordUnrelatedTXT = def(Def{
		ID: "sts-record-unrelated-txt", Component: ComponentRecord, Severities: onlyWarning,
		Title:     "Other TXT records beside the MTA-STS record",
		Explain:   "RFC 8461 senders ignore TXT records at _mta-sts that do not start with \"v=STSv1;\", but some do not: go-mtasts (used by maddy) finds no policy unless exactly one TXT record exists, and checkdmarc reports an error.",
		Fix:       "Remove non-MTA-STS TXT records from _mta-sts.<domain>; some senders ignore the policy when more than one TXT record is present.",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-3", "MISC-23", "§H"},
		Caps:      map[Severity]Grade{Warning: GradeB},
	})
	STSRecordWildcard = def(Def{
		ID: "sts-record-wildcard", Component: ComponentRecord, Severities: onlyWarning,
		Title:     "A zone wildcard answers for _mta-sts",
		Explain:   "A wildcard TXT record (often SPF) answers _mta-sts.<domain>. Senders ignore it, but it usually means the real MTA-STS record is missing and it confuses some parsers.",
		Fix:       "Publish an explicit TXT record at _mta-sts.<domain> (\"v=STSv1; id=<id>\") so the wildcard no longer answers there.",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-18"},
	})
	STSRecordAtApex = def(Def{
		ID: "sts-record-at-apex", Component: ComponentRecord, Severities: errorOrWarning,
		Title:     "MTA-STS record published at the wrong name",
		Explain:   "A \"v=STSv1\" TXT record at the domain itself is never looked at; senders only query _mta-sts.<domain>.",
		Fix:       "Move the record to _mta-sts.<domain> and delete it from <domain>.",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-1", "MISC-32"},
	})
	STSRecordDraftName = def(Def{
		ID: "sts-record-draft-name", Component: ComponentRecord, Severities: errorOrWarning,
		Title:     "MTA-STS record at a draft-era name",
		Explain:   "A record at _mta_sts.<domain> (underscore) is not used by any sender; the name is _mta-sts.<domain> (hyphen).",
		Fix:       "Move the record to _mta-sts.<domain> and delete the one at _mta_sts.<domain>.",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-1", "MISC-32"},
	})
	STSRecordDelegated = def(Def{
		ID: "sts-record-delegated", Component: ComponentRecord, Severities: onlyInfo,
		Title:     "MTA-STS record is delegated by CNAME",
		Explain:   "_mta-sts.<domain> is a CNAME; senders follow it (policy delegation to a provider).",
		Fix:       "Nothing to do; make sure the provider bumps the id whenever the policy changes.",
		Ref:       "RFC 8461 §3.1, §8.2",
		Checklist: []string{"STS-TXT-15"},
	})
	STSRecordDanglingCNAME = def(Def{
		ID: "sts-record-dangling-cname", Component: ComponentRecord, Severities: onlyError,
		Title:     "MTA-STS record is a CNAME to a name that does not exist",
		Explain:   "The CNAME at _mta-sts.<domain> points at a name with no TXT record, so senders find no policy.",
		Fix:       "Point the CNAME at the provider's current record name, or replace it with TXT _mta-sts.<domain> \"v=STSv1; id=<id>\".",
		Ref:       "RFC 8461 §3.1, §8.2",
		Checklist: []string{"STS-TXT-15"},
	})
	STSRecordTTL = def(Def{
		ID: "sts-record-ttl", Component: ComponentRecord, Severities: onlyInfo,
		Title:     "MTA-STS record has a long TTL",
		Explain:   "A changed id becomes visible only after the TXT TTL; a TTL of an hour or less lets policy updates propagate quickly.",
		Fix:       "Lower the TTL of _mta-sts.<domain> to 3600 seconds or less.",
		Ref:       "RFC 8461 §8.1",
		Checklist: []string{"STS-TXT-21"},
	})
	STSSubdomain = def(Def{
		ID: "sts-subdomain", Component: ComponentRecord, Severities: onlyInfo,
		Title:     "Subdomain without its own policy",
		Explain:   "Senders never use a parent domain's policy for a subdomain: mail to <domain> uses only _mta-sts.<domain>.",
		Fix:       "Senders never use the parent's policy for <domain>; publish _mta-sts.<domain> and serve https://mta-sts.<domain>/.well-known/mta-sts.txt (a *.<parent> certificate does not cover mta-sts.<domain>).",
		Ref:       "RFC 8461 §3.4",
		Checklist: []string{"STS-TXT-19", "MISC-33"},
	})
	STSIDUnchanged = def(Def{
		ID: "sts-id-unchanged", Component: ComponentRecord, Severities: onlyWarning,
		Title:     "Policy changes but the id stays",
		Explain:   "Senders fetch the policy again only when the id in the TXT record changes. A changed policy under the old id reaches them only when their cached copy expires, and until then different senders apply different policies.",
		Fix:       "Every policy change needs a new id: update the file first, then set _mta-sts.<domain> to \"v=STSv1; id=<id>\".",
		Ref:       "RFC 8461 §3.1, §8.1",
		Checklist: []string{"STS-TXT-11", "MISC-15"},
	})
	STSPolicyNotAdvertised = def(Def{
		ID: "sts-policy-not-advertised", Component: ComponentRecord, Severities: onlyError,
		Title:     "Policy is online but no MTA-STS record advertises it",
		Explain:   "https://mta-sts.<domain>/.well-known/mta-sts.txt serves a policy, but without a valid TXT record at _mta-sts.<domain> new senders never discover it.",
		Fix:       "Add TXT _mta-sts.<domain> \"v=STSv1; id=<id>\" so that senders discover the policy.",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-17", "MISC-2"},
	})
)

// Policy host: DNS, HTTPS and certificate (RFC 8461 §3.2, §3.3, §7).
var (
	PolicyHostUndetermined = def(Def{
		ID: "policy-host-undetermined", Component: ComponentPolicyHost, Severities: onlyWarning,
		Title:     "Policy host address could not be looked up",
		Explain:   "The A/AAAA lookup of mta-sts.<domain> failed temporarily, so the scan cannot tell whether senders can reach the policy.",
		Fix:       "Retry the scan. If it persists, check the name servers that answer for mta-sts.<domain>.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-TXT-16", "STS-FETCH-16"},
	})
	PolicyHostNoAddress = def(Def{
		ID: "policy-host-no-address", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy host does not resolve",
		Explain:   "mta-sts.<domain> has no A or AAAA record, so senders cannot fetch the policy and treat the domain as having none.",
		Fix:       "Publish an A/AAAA (or CNAME) record for mta-sts.<domain> and serve https://mta-sts.<domain>/.well-known/mta-sts.txt over HTTPS, or delete the _mta-sts.<domain> TXT record until the policy is online.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-16", "MISC-1"},
	})
	PolicyHostFamilyUndetermined = def(Def{
		ID: "policy-host-family-undetermined", Component: ComponentPolicyHost, Severities: onlyWarning,
		Title:     "One address lookup of the policy host fails",
		Explain:   "The A or the AAAA lookup of mta-sts.<domain> failed temporarily while the other one answered, so the scan fetched the policy only from the addresses it could see; the others, if any, were not checked. Senders that meet the same failure fetch over the family that answers.",
		Fix:       "Make the name servers that answer for mta-sts.<domain> answer both A and AAAA queries (NODATA for a family without addresses), then scan again.",
		Ref:       "RFC 8461 §3.3; RFC 2308 §2.2",
		Checklist: []string{"STS-FETCH-16", "MISC-34"},
		Caps:      map[Severity]Grade{Warning: GradeA},
	})
	PolicyHostDelegated = def(Def{
		ID: "policy-host-delegated", Component: ComponentPolicyHost, Severities: onlyInfo,
		Title:     "Policy host is a CNAME",
		Explain:   "mta-sts.<domain> is an alias of another host (policy hosting by a provider). The certificate must still name mta-sts.<domain>.",
		Fix:       "Nothing to do; the provider's certificate must cover mta-sts.<domain>.",
		Ref:       "RFC 8461 §8.2",
		Checklist: []string{"STS-FETCH-6"},
	})
	PolicyFetchFailed = def(Def{
		ID: "policy-fetch-failed", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy host is unreachable over HTTPS",
		Explain:   "The connection to port 443 was refused, timed out, was reset, or the TLS handshake failed. Senders never fall back to plain HTTP, so they find no policy.",
		Fix:       "Serve https://mta-sts.<domain>/.well-known/mta-sts.txt over HTTPS on port 443 (TLS 1.2 or newer) on every address of mta-sts.<domain>.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-2", "MISC-1"},
	})
	PolicyHostNotPublic = def(Def{
		ID: "policy-host-not-public", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy host resolves to an address that is not public",
		Explain:   "mta-sts.<domain> resolves to a loopback, private, link-local or other special-purpose address (IANA registries, RFC 6890). Senders on the internet cannot fetch the policy there. The public web checker does not connect to such addresses, so the policy was not fetched from it (the command-line scanner does).",
		Fix:       "Point the A/AAAA records of mta-sts.<domain> at the public addresses of the policy host.",
		Ref:       "RFC 8461 §3.3; RFC 6890",
		Checklist: []string{"STS-FETCH-2"},
	})
	PolicyFetchPartial = def(Def{
		ID: "policy-fetch-partial", Component: ComponentPolicyHost, Severities: onlyWarning,
		Title:     "Policy is reachable on some addresses only",
		Explain:   "Some addresses of mta-sts.<domain> serve the policy and others fail (often IPv6). Senders that pick a failing address find no policy.",
		Fix:       "Make every address of mta-sts.<domain> serve the same policy and certificate, or remove the failing A/AAAA records.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-16", "MISC-34"},
		Caps:      map[Severity]Grade{Warning: GradeB},
	})
	PolicyFetchInconsistent = def(Def{
		ID: "policy-fetch-inconsistent", Component: ComponentPolicyHost, Severities: onlyWarning,
		Title:     "Addresses of the policy host serve different content",
		Explain:   "Different addresses of mta-sts.<domain> serve different policies or certificates, so senders cache different policies under one id.",
		Fix:       "Make every address of mta-sts.<domain> serve the same policy file; after changing it, publish a new id.",
		Ref:       "RFC 8461 §3.3, §8.1",
		Checklist: []string{"MISC-34", "MISC-37"},
		Caps:      map[Severity]Grade{Warning: GradeB},
	})
	PolicyTLSVersion = def(Def{
		ID: "policy-tls-version", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy host negotiates TLS older than 1.2",
		Explain:   "Senders require TLS 1.2 or newer for the policy fetch; Go, OpenSSL 3 and most MTAs refuse older versions.",
		Fix:       "Enable TLS 1.2 and 1.3 on the web server for mta-sts.<domain>.",
		Ref:       "RFC 8461 §7.2",
		Checklist: []string{"STS-FETCH-3"},
	})
	PolicyCertUntrusted = def(Def{
		ID: "policy-cert-untrusted", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy host certificate is not trusted",
		Explain:   "The certificate is self-signed or issued by a CA that senders do not trust, so senders refuse the policy (TLS-RPT result sts-webpki-invalid).",
		Fix:       "Serve a currently valid certificate for mta-sts.<domain> from a public CA and include the full intermediate chain in the server configuration.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-5", "MISC-4"},
	})
	PolicyCertIncompleteChain = def(Def{
		ID: "policy-cert-incomplete-chain", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy host does not send the intermediate certificates",
		Explain:   "The server sends only its own certificate. Browsers may fetch missing intermediates, but MTAs do not, so they cannot verify the chain.",
		Fix:       "Configure the full chain (the certificate followed by its intermediates) for mta-sts.<domain>.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-5", "MISC-4"},
	})
	PolicyCertChainTooLarge = def(Def{
		ID: "policy-cert-chain-too-large", Component: ComponentPolicyHost, Severities: onlyWarning,
		Title:     "Policy host's certificate chain is larger than OpenSSL accepts",
		Explain:   "OpenSSL refuses a Certificate handshake message over 100 KiB by default (SSL_MAX_CERT_LIST_DEFAULT). postfix-mta-sts-resolver fetches the policy with Python's ssl module, which uses OpenSSL with that default, so its handshake fails and it finds no policy; Go-based senders (mox, go-mtasts, postfix-tlspol) accept up to 256 KiB, so the chain looks fine to them and to mailtls.",
		Fix:       "Serve mta-sts.<domain> with a smaller chain: the certificate and only the intermediates it needs, without a cross-signed or extra root, and without certificates carrying large extensions.",
		Ref:       "RFC 8461 §3.3; RFC 8446 §4.4.2",
		Checklist: []string{"STS-FETCH-5", "§H"},
	})
	PolicyCertExpired = def(Def{
		ID: "policy-cert-expired", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy host certificate has expired",
		Explain:   "Senders refuse expired certificates, so they cannot fetch the policy.",
		Fix:       "Renew the certificate for mta-sts.<domain> and set up automatic renewal.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-5", "MISC-4"},
	})
	PolicyCertNotYetValid = def(Def{
		ID: "policy-cert-not-yet-valid", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy host certificate is not valid yet",
		Explain:   "The certificate's validity starts in the future (or the server clock is wrong), so senders refuse it.",
		Fix:       "Serve a certificate that is valid now for mta-sts.<domain>.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-5"},
	})
	PolicyCertExpiring = def(Def{
		ID: "policy-cert-expiring", Component: ComponentPolicyHost, Severities: onlyWarning,
		Title:     "Policy host certificate expires soon",
		Explain:   "The certificate expires within 14 days; once it does, senders can no longer refresh the policy.",
		Fix:       "Renew the certificate for mta-sts.<domain> now and check that automatic renewal works.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-5"},
	})
	PolicyCertNameMismatch = def(Def{
		ID: "policy-cert-name-mismatch", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy host certificate does not name mta-sts.<domain>",
		Explain:   "Senders check the certificate's subjectAltName DNS names (never the CN) against mta-sts.<domain>; a wildcard covers exactly one label. With hosting by a provider the certificate must still name mta-sts.<domain>.",
		Fix:       "Install a publicly trusted certificate whose subjectAltName contains mta-sts.<domain> (a *.<domain> wildcard also works, but it does not cover mta-sts.<sub>.<domain>).",
		Ref:       "RFC 8461 §3.3, §8.2; RFC 6125 §6.4",
		Checklist: []string{"STS-FETCH-4", "STS-FETCH-6", "MISC-3", "NAME-2"},
	})
	PolicyHTTPRedirect = def(Def{
		ID: "policy-http-redirect", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy URL redirects",
		Explain:   "Senders must not follow redirects, so a 3xx answer means no policy (checkdmarc follows them and reports a false pass).",
		Fix:       "Senders do not follow redirects. Serve the file directly at https://mta-sts.<domain>/.well-known/mta-sts.txt with status 200.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-8", "MISC-6"},
	})
	PolicyHTTPStatus = def(Def{
		ID: "policy-http-status", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy URL does not answer 200",
		Explain:   "Only status 200 yields a policy. 403, 429 and 503 often come from a CDN or firewall bot check that blocks mail servers.",
		Fix:       "Return HTTP 200 with the policy for GET /.well-known/mta-sts.txt to any client (no login, cookies, JavaScript or bot challenge).",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-7", "STS-HOST-1", "MISC-7"},
	})
	PolicyContentEncoding = def(Def{
		ID: "policy-content-encoding", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Senders cannot read the policy because of its Content-Encoding",
		Explain:   "Senders ask for content codings differently: Go's net/http (mox, go-mtasts, postfix-tlspol) sends \"Accept-Encoding: gzip\" and decodes gzip only; aiohttp (postfix-mta-sts-resolver) sends \"gzip, deflate\" and decodes both (br only with an optional module); a client that sends none may get the body uncompressed. A body labelled Content-Encoding: gzip that is not gzip data (a web server or CDN compressing twice, or labelling a plain file), or a coding a sender does not decode (br, zstd), leaves that sender with no policy. mailtls fetches the policy as each of these clients and names the senders that fail. Google's and Microsoft's HTTP clients are not public.",
		Fix:       "Serve /.well-known/mta-sts.txt uncompressed, without a Content-Encoding header (it is a few hundred bytes), or make sure the web server compresses it only with gzip and only when asked.",
		Ref:       "RFC 8461 §3.3; RFC 9110 §8.4, §12.5.3",
		Checklist: []string{"STS-FETCH-11", "STS-FETCH-12", "§H"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	PolicyContentType = def(Def{
		ID: "policy-content-type", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy is not served as text/plain",
		Explain:   "Senders should check the media type. postfix-mta-sts-resolver, postfix-tlspol (since v1.12.1) and go-mtasts (maddy) drop a policy that is not text/plain, while mox uses it anyway, so the policy applies to some senders only.",
		Fix:       "Serve /.well-known/mta-sts.txt with the header \"Content-Type: text/plain; charset=utf-8\".",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-FETCH-10", "MISC-5", "§H"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	PolicyCharset = def(Def{
		ID: "policy-charset", Component: ComponentPolicyHost, Severities: onlyWarning,
		Title:     "Policy is served with a charset other than UTF-8",
		Explain:   "The policy must be UTF-8 (ASCII is a subset); senders ignore other charset labels.",
		Fix:       "Serve the file as \"Content-Type: text/plain; charset=utf-8\".",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-FETCH-11"},
	})
	PolicyTooLarge = def(Def{
		ID: "policy-too-large", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy is larger than 64 KiB",
		Explain:   "Senders may cap the policy at 64 KiB (mox and postfix-mta-sts-resolver do) and then find no policy.",
		Fix:       "Keep the policy under 64 KiB; use wildcard mx patterns instead of long host lists.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-12", "MISC-36"},
	})
	PolicySlow = def(Def{
		ID: "policy-slow", Component: ComponentPolicyHost, Severities: onlyWarning,
		Title:     "Policy host is slow",
		Explain:   "postfix-mta-sts-resolver gives up after 4 seconds for DNS and HTTPS together; the RFC suggests a one-minute limit.",
		Fix:       "Serve the policy as a small static file; some resolvers give up after about 4 seconds.",
		Ref:       "RFC 8461 §3.3",
		Checklist: []string{"STS-FETCH-13", "STS-HOST-6", "MISC-35"},
		Caps:      map[Severity]Grade{Warning: GradeB},
	})
	PolicyCaching = def(Def{
		ID: "policy-caching", Component: ComponentPolicyHost, Severities: onlyWarning,
		Title:     "Policy response is cached for long by the web server or CDN",
		Explain:   "A long edge cache can serve the old file after the id changed; senders then cache the old policy under the new id until max_age.",
		Fix:       "Purge the CDN cache after editing mta-sts.txt and limit edge caching to about 60 seconds.",
		Ref:       "RFC 8461 §3.3, §8.1, §8.2",
		Checklist: []string{"STS-FETCH-9", "STS-HOST-5", "MISC-37"},
	})
	PolicyHTML = def(Def{
		ID: "policy-html", Component: ComponentPolicyHost, Severities: onlyError,
		Title:     "Policy URL returns a web page",
		Explain:   "The URL answers 200 with an HTML page (often a catch-all route of a web site), not a policy.",
		Fix:       "The URL returns a web page, not a policy. Serve a plain-text file containing lines such as \"version: STSv1\", \"mode: testing\", \"mx: <mx>\", \"max_age: 604800\".",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"MISC-8"},
	})
)

// Policy file syntax (RFC 8461 §3.2).
var (
	PolicyEmpty = def(Def{
		ID: "policy-empty", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy file is empty",
		Explain:   "An empty body is not a policy.",
		Fix:       "Serve the policy file shown under Fixes.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-1"},
	})
	PolicyBOM = def(Def{
		ID: "policy-bom", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy starts with a byte-order mark",
		Explain:   "A UTF-8 byte-order mark (EF BB BF, added by Notepad) turns the first key into something else, so the first field is lost and every parser rejects the policy.",
		Fix:       "Save mta-sts.txt as UTF-8 without a byte-order mark (the first line must begin with the letter of a key, e.g. \"version:\").",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-17", "MISC-25"},
	})
	PolicyBareCR = def(Def{
		ID: "policy-bare-cr", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy uses bare CR line breaks",
		Explain:   "Lines may end in LF or CRLF; a CR alone is not a line break, so the lines run together.",
		Fix:       "Save the file with LF or CRLF line endings.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-2"},
	})
	PolicyBlankLine = def(Def{
		ID: "policy-blank-line", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy has blank lines",
		Explain:   "The grammar allows no empty lines and at most one line break at the end. go-mtasts and mox reject such a policy; the Postfix resolvers tolerate it.",
		Fix:       "Remove leading spaces, spaces before \":\" and empty lines from the policy file.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-3", "MISC-26"},
	})
	PolicyLeadingSpace = def(Def{
		ID: "policy-leading-space", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy line starts with whitespace",
		Explain:   "No whitespace is allowed before a key. Strict parsers reject the policy; others lose the field.",
		Fix:       "Remove leading spaces, spaces before \":\" and empty lines from the policy file.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-4", "MISC-26"},
	})
	PolicySpaceBeforeColon = def(Def{
		ID: "policy-space-before-colon", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Space between a policy key and ':'",
		Explain:   "\"mode :\" is not valid: the ':' must follow the key directly.",
		Fix:       "Remove leading spaces, spaces before \":\" and empty lines from the policy file.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-4", "MISC-26"},
	})
	PolicyNotKeyValue = def(Def{
		ID: "policy-not-key-value", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy line is not \"key: value\"",
		Explain:   "Every line must be a \"key: value\" field; comments (#, //), sections ([policy]), YAML lists and prose make the whole policy invalid.",
		Fix:       "The policy file may only contain \"key: value\" lines; remove comments.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-1", "STS-POL-15", "MISC-27"},
	})
	PolicyKeyCase = def(Def{
		ID: "policy-key-case", Component: ComponentPolicy, Severities: errorOrWarning,
		Title:     "Policy key is misspelled or in the wrong case",
		Explain:   "Keys are case-sensitive: \"Mode\", \"MX\" or \"max-age\" are unknown extension keys that senders ignore. It is an error when the real field is therefore missing, and a warning when the correct key is present too.",
		Fix:       "Use the exact lower-case keys \"version\", \"mode\", \"mx\", \"max_age\".",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-5", "MISC-28"},
	})
	PolicyControlChar = def(Def{
		ID: "policy-control-char", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy contains control characters",
		Explain:   "Tabs inside values, NUL, DEL and other control characters are not allowed; the policy is invalid.",
		Fix:       "Remove the control characters (a tab may separate key and value only after the ':').",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-18"},
	})
	PolicyInvalidUTF8 = def(Def{
		ID: "policy-invalid-utf8", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy is not valid UTF-8",
		Explain:   "The policy must be UTF-8; other encodings make it unparsable.",
		Fix:       "Save mta-sts.txt as UTF-8 (plain ASCII is fine).",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-FETCH-11", "STS-POL-18"},
	})
	PolicyTrailingSpace = def(Def{
		ID: "policy-trailing-space", Component: ComponentPolicy, Severities: onlyInfo,
		Title:     "Policy line ends with whitespace",
		Explain:   "Trailing spaces and tabs are allowed by the grammar but serve no purpose.",
		Fix:       "Remove trailing spaces from the policy file.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-4", "MISC-26"},
	})
	PolicyLineEndings = def(Def{
		ID: "policy-line-endings", Component: ComponentPolicy, Severities: onlyInfo,
		Title:     "Policy mixes LF and CRLF line endings",
		Explain:   "Both LF and CRLF are valid and may be mixed (erratum 6253), but checkdmarc mishandles mixed files.",
		Fix:       "Use one line ending throughout (CRLF, as in the RFC prose).",
		Ref:       "RFC 8461 §3.2; erratum 6253",
		Checklist: []string{"STS-POL-2", "AMB-1"},
	})
	PolicyVersion = def(Def{
		ID: "policy-version", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy version missing or not STSv1",
		Explain:   "\"version: STSv1\" is required, exactly in that case.",
		Fix:       "Make the first line \"version: STSv1\".",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-6"},
	})
	PolicyMode = def(Def{
		ID: "policy-mode", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy mode missing or invalid",
		Explain:   "mode must be exactly enforce, testing or none (lower case). Draft values such as \"report\" and variants such as \"Enforce\" make the policy invalid.",
		Fix:       "mode must be exactly \"enforce\", \"testing\" or \"none\" (lower case).",
		Ref:       "RFC 8461 §3.2, §5",
		Checklist: []string{"STS-POL-7", "MISC-29"},
	})
	PolicyMaxAge = def(Def{
		ID: "policy-max-age", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy max_age missing or invalid",
		Explain:   "max_age must be whole seconds from 0 to 31557600 (one year), 1 to 10 digits, without units or signs.",
		Fix:       "max_age must be whole seconds between 0 and 31557600, e.g. \"max_age: 604800\".",
		Ref:       "RFC 8461 §3.2; erratum 7282",
		Checklist: []string{"STS-POL-8", "MISC-18", "AMB-3"},
	})
	PolicyMaxAgeLow = def(Def{
		ID: "policy-max-age-low", Component: ComponentPolicy, Severities: onlyWarning,
		Title:     "Policy max_age is short",
		Explain:   "A short max_age makes senders refetch often and shortens the protection after an attacker blocks the fetch. 0 disables caching (and chasquid rejects it). Use at least a day in testing and a week in enforce.",
		Fix:       "Increase max_age to at least 604800 (1 week); values of several weeks up to 31557600 give better protection once the setup is stable.",
		Ref:       "RFC 8461 §3.2, §10.2",
		Checklist: []string{"STS-POL-8", "MISC-17"},
		Caps:      map[Severity]Grade{Warning: GradeB},
	})
	PolicyDuplicateKey = def(Def{
		ID: "policy-duplicate-key", Component: ComponentPolicy, Severities: errorOrWarning,
		Title:     "Policy key appears more than once",
		Explain:   "The first occurrence counts per RFC, but go-mtasts and postfix-mta-sts-resolver use the last and checkdmarc rejects the file, so conflicting duplicates mean different senders apply different policies.",
		Fix:       "Keep one line per key (except mx).",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-14", "§H"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	PolicyMXInvalid = def(Def{
		ID: "policy-mx-invalid", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy mx value is not a host name or wildcard pattern",
		Explain:   "Each mx value is a host name in A-label form, optionally starting with \"*.\": no trailing dot, port, IP address, list, underscore or U-label.",
		Fix:       "Write one MX host per \"mx:\" line as a plain host name without trailing dot or port (wildcards only as leading \"*.\"), IDNs in xn-- form.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-9", "STS-POL-11", "STS-POL-12", "MISC-30"},
	})
	PolicyMXMissing = def(Def{
		ID: "policy-mx-missing", Component: ComponentPolicy, Severities: onlyError,
		Title:     "Policy has no mx line",
		Explain:   "At least one mx line is required in testing and enforce mode; postfix-tlspol once deferred all mail for such a policy, and since v1.12.1 rejects it like RFC 8461.",
		Fix:       "Add one \"mx: <mx>\" line per MX host.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-10"},
	})
	PolicyMXDuplicate = def(Def{
		ID: "policy-mx-duplicate", Component: ComponentPolicy, Severities: onlyInfo,
		Title:     "Policy lists an mx pattern twice",
		Explain:   "Harmless, but usually a copy-and-paste slip.",
		Fix:       "Remove the repeated mx line.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-14"},
	})
	PolicyMXPublicSuffix = def(Def{
		ID: "policy-mx-public-suffix", Component: ComponentPolicy, Severities: onlyWarning,
		Title:     "Policy mx wildcard sits directly under a public suffix",
		Explain:   "A pattern such as *.com or *.co.uk lets any host in that suffix with a public certificate act as your MX, which is almost no restriction.",
		Fix:       "List the MX hosts explicitly, or use a wildcard under your own or your provider's domain.",
		Ref:       "RFC 8461 §10.4",
		Checklist: []string{"STS-POL-20"},
		Caps:      map[Severity]Grade{Warning: GradeC},
	})
	PolicyUnknownKey = def(Def{
		ID: "policy-unknown-key", Component: ComponentPolicy, Severities: onlyInfo,
		Title:     "Policy has an extension key",
		Explain:   "Unknown keys are allowed and ignored by senders (checkdmarc wrongly reports them as errors).",
		Fix:       "Nothing to do, unless the key is a typo.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-15"},
	})
	PolicyExtensionColon = def(Def{
		ID: "policy-extension-colon", Component: ComponentPolicy, Severities: onlyWarning,
		Title:     "Policy extension value contains ':'",
		Explain:   "Valid per RFC, but go-mtasts (maddy) and checkdmarc split lines on every ':' and reject the whole policy.",
		Fix:       "Remove the extension line or the ':' in its value.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-16", "§H"},
		Caps:      map[Severity]Grade{Warning: GradeB},
	})
	PolicyFieldOrder = def(Def{
		ID: "policy-field-order", Component: ComponentPolicy, Severities: onlyInfo,
		Title:     "Policy does not start with version",
		Explain:   "Field order is free, but version first is the convention (Google's documentation demands it).",
		Fix:       "Put \"version: STSv1\" on the first line.",
		Ref:       "RFC 8461 §3.2",
		Checklist: []string{"STS-POL-13"},
	})
	PolicyModeNone = def(Def{
		ID: "policy-mode-none", Component: ComponentPolicy, Severities: onlyInfo,
		Title:     "Policy mode is none",
		Explain:   "Senders treat the domain as having no policy. This is the right state while withdrawing MTA-STS: keep serving it for the largest max_age you published before removing the records.",
		Fix:       "To protect mail, publish mode: testing (then enforce) with a new id.",
		Ref:       "RFC 8461 §5, §8.3",
		Checklist: []string{"STS-SND-12"},
	})
	PolicyTesting = def(Def{
		ID: "policy-testing", Component: ComponentPolicy, Severities: onlyInfo,
		Title:     "Policy is in testing mode",
		Explain:   "Testing mode gives no protection: senders only report failures. It is the right first step.",
		Fix:       "Testing mode gives no protection. Review TLS-RPT reports; when they show no failures for about two weeks, publish \"mode: enforce\" with a new id.",
		Ref:       "RFC 8461 §5",
		Checklist: []string{"MISC-19"},
	})
	PolicySenderDivergence = def(Def{
		ID: "policy-sender-divergence", Component: ComponentPolicy, Severities: onlyWarning,
		Title:     "Real senders will treat this policy differently",
		Explain:   "Widely deployed MTA-STS implementations deviate from RFC 8461 in parsing and media-type checks; for this policy at least one of them ends up with a different result than an RFC 8461 sender.",
		Fix:       "Fix the findings above; a policy that follows the RFC grammar exactly and is served as text/plain is read the same way by every sender.",
		Ref:       "RFC 8461 §3.2, §3.3",
		Checklist: []string{"§H"},
	})
)

// MX hosts and policy coverage (RFC 8461 §4.1).
var (
	MXUndetermined = def(Def{
		ID: "mx-undetermined", Component: ComponentMX, Severities: onlyWarning,
		Title:     "MX records could not be looked up",
		Explain:   "The MX lookup failed temporarily, so policy coverage cannot be checked.",
		Fix:       "Retry the scan. If it persists, check the name servers of <domain>.",
		Ref:       "RFC 8461 §4.1",
		Checklist: []string{"STS-TXT-16"},
	})
	MXDomainNXDomain = def(Def{
		ID: "mx-domain-nxdomain", Component: ComponentMX, Severities: onlyError,
		Title:     "Domain does not exist",
		Explain:   "<domain> does not exist in DNS (NXDOMAIN), so it receives no mail.",
		Fix:       "Check the spelling of the domain, or create its DNS zone.",
		Ref:       "RFC 5321 §5.1",
		Checklist: []string{"MISC-38"},
	})
	MXNull = def(Def{
		ID: "mx-null", Component: ComponentMX, Severities: onlyInfo,
		Title:     "Domain accepts no mail (null MX)",
		Explain:   "A null MX (\"0 .\", RFC 7505) says the domain receives no mail; an MTA-STS policy has no effect.",
		Fix:       "<domain> does not accept mail (null MX); the MTA-STS policy has no effect and can be set to \"mode: none\".",
		Ref:       "RFC 7505; RFC 8461 §4.1",
		Checklist: []string{"MISC-38"},
	})
	MXImplicit = def(Def{
		ID: "mx-implicit", Component: ComponentMX, Severities: onlyInfo,
		Title:     "Domain has no MX records (implicit MX)",
		Explain:   "Without MX records, senders deliver to the domain's own A/AAAA address, so the policy must list the domain name itself.",
		Fix:       "Publish an MX record for <domain>, or list \"mx: <domain>\" in the policy.",
		Ref:       "RFC 5321 §5.1; RFC 8461 §4.1",
		Checklist: []string{"MISC-38"},
	})
	MXNotCovered = def(Def{
		ID: "mx-not-covered", Component: ComponentMX, Severities: errorOrWarning,
		Title:     "MX host is not covered by the policy",
		Explain:   "No mx pattern matches this MX host (a \"*.\" wildcard matches exactly one label and not the parent itself). In enforce mode, senders that honour the policy will not deliver to it; in testing mode they report failures.",
		Fix:       "Add \"mx: <mx>\" (or a \"*.<parent>\" pattern that matches exactly one extra label) to the policy and publish a new id in the TXT record.",
		Ref:       "RFC 8461 §4.1",
		Checklist: []string{"STS-SND-7", "MISC-9", "MISC-10", "NAME-4"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	MXPatternStale = def(Def{
		ID: "mx-pattern-stale", Component: ComponentMX, Severities: onlyInfo,
		Title:     "Policy mx pattern matches no MX host",
		Explain:   "The pattern matches none of the current MX hosts. Harmless, but usually left over from an old setup.",
		Fix:       "Remove the pattern from the policy (with a new id) once no MX host needs it.",
		Ref:       "RFC 8461 §3.2, §8.1",
		Checklist: []string{"STS-POL-21"},
	})
	MXCNAME = def(Def{
		ID: "mx-cname", Component: ComponentMX, Severities: onlyWarning,
		Title:     "MX target is a CNAME",
		Explain:   "An MX record must name a host, not an alias. Senders check the policy and the certificate against the name in the MX record, not the alias target.",
		Fix:       "Point the MX record directly at the host name the certificate and policy name (<mx> is an alias).",
		Ref:       "RFC 2181 §10.3; RFC 8461 §4.1",
		Checklist: []string{"MISC-39"},
	})
	MXNoAddress = def(Def{
		ID: "mx-no-address", Component: ComponentMX, Severities: errorOrWarning,
		Title:     "MX host does not resolve",
		Explain:   "The MX host has no A or AAAA record, so senders cannot deliver to it.",
		Fix:       "Publish A/AAAA records for <mx>, or remove it from the MX set.",
		Ref:       "RFC 5321 §5.1",
		Checklist: []string{"DANE-DNS-3"},
	})
	MXAddressNotPublic = def(Def{
		ID: "mx-address-not-public", Component: ComponentMX, Severities: onlyWarning,
		Title:     "MX host resolves to an address that is not public",
		Explain:   "The MX host resolves to a loopback, private, link-local or other special-purpose address (IANA registries, RFC 6890). Senders on the internet cannot deliver there. The public web checker does not connect to such addresses, so STARTTLS was not probed at it (the command-line scanner does).",
		Fix:       "Publish only public addresses for <mx>, or remove it from the MX set if it is meant for internal mail only.",
		Ref:       "RFC 5321 §5.1; RFC 6890",
		Checklist: []string{"MISC-34"},
	})
	MXAddressUndetermined = def(Def{
		ID: "mx-address-undetermined", Component: ComponentMX, Severities: onlyWarning,
		Title:     "MX host address could not be looked up",
		Explain:   "The A/AAAA lookup of the MX host failed temporarily.",
		Fix:       "Retry the scan. If it persists, check the name servers that answer for <mx>.",
		Ref:       "RFC 5321 §5.1",
		Checklist: []string{"DANE-DNS-2"},
	})
	MXNotChecked = def(Def{
		ID: "mx-not-checked", Component: ComponentMX, Severities: onlyInfo,
		Title:     "MX hosts beyond the scan's limit were not checked",
		Explain:   "The scan looks up and probes the most preferred MX hosts only (16 unless --max-mx says otherwise). Every MX host is still matched against the policy, and the policy fix covers them all, but the addresses, STARTTLS, certificates and DANE of the others were not checked.",
		Fix:       "Scan again with --max-mx set to the number of MX hosts to check every one of them.",
		Ref:       "RFC 5321 §5.1; RFC 8461 §4",
		Checklist: []string{"STS-SND-6"},
	})
	MXNullMixed = def(Def{
		ID: "mx-null-mixed", Component: ComponentMX, Severities: onlyError,
		Title:     "Null MX published beside other MX records",
		Explain:   "A null MX (\"0 .\") says that the domain accepts no mail, and a domain that publishes one must publish no other MX record. Beside other records it is not a null MX: most senders skip the \".\" entry and deliver to the other hosts, while a sender that honours it refuses all mail. Either way one of the two records says something false.",
		Fix:       "If <domain> receives mail, delete the \"MX 0 .\" record; if it does not, delete every other MX record.",
		Ref:       "RFC 7505 §3",
		Checklist: []string{"MISC-38"},
	})
	MXLocalhost = def(Def{
		ID: "mx-localhost", Component: ComponentMX, Severities: errorOrWarning,
		Title:     "MX record names localhost",
		Explain:   "localhost (and every name under .localhost) resolves to the loopback address of whoever looks it up (RFC 6761 §6.3), so this MX record sends every sender to itself. Postfix bounces the mail (\"mail for <domain> loops back to myself\") when it is the most preferred MX, and skips it otherwise; other senders try it and fail. The scan does not probe it, since that would test the scanner's own machine.",
		Fix:       "Delete the MX record that names <mx>.",
		Ref:       "RFC 6761 §6.3; RFC 5321 §5.1",
		Checklist: []string{"MISC-38"},
	})
	MXIPLiteral = def(Def{
		ID: "mx-ip-literal", Component: ComponentMX, Severities: errorOrWarning,
		Title:     "MX record names an IP address",
		Explain:   "The exchange of an MX record must be a host name with A/AAAA records, not an IP address. Senders do not deliver to it: Postfix ignores the record (\"numeric domain name in resource data of MX record\"), others look the address up as a name and find nothing. An MTA-STS policy cannot name it either.",
		Fix:       "Replace the MX record for <mx> by one that names a host (publish A/AAAA records for that host).",
		Ref:       "RFC 5321 §5.1; RFC 1035 §3.3.9",
		Checklist: []string{"MISC-38", "STS-POL-9"},
	})
	MXAddressFamilyUndetermined = def(Def{
		ID: "mx-address-family-undetermined", Component: ComponentMX, Severities: onlyWarning,
		Title:     "One address lookup of an MX host fails",
		Explain:   "The A or the AAAA lookup of the MX host failed temporarily (SERVFAIL, timeout) while the other one answered, so the scan could not see, or probe, the addresses of that family. Senders that meet the same failure deliver over the other family only (Postfix and Exim use whatever answered); a host whose only addresses are in the failing family is deferred (Postfix: \"Host not found, try again\"). The usual cause is an authoritative server that mishandles AAAA queries instead of answering NODATA.",
		Fix:       "Make the name servers of <mx> answer both A and AAAA queries (NODATA for a family without addresses), then scan again.",
		Ref:       "RFC 5321 §5.1; RFC 2308 §2.2",
		Checklist: []string{"DANE-DNS-2", "MISC-34"},
		Caps:      map[Severity]Grade{Warning: GradeA},
	})
)

// TLS-RPT record (RFC 8460 §3).
var (
	TLSRPTMissing = def(Def{
		ID: "tlsrpt-missing", Component: ComponentTLSRPT, Severities: warningOrInfo,
		Title:     "No TLS-RPT record",
		Explain:   "Without a TXT record at _smtp._tls.<domain>, senders send no reports about failed TLS connections, so you cannot see problems before switching to enforce or after something breaks.",
		Fix:       "Publish TXT _smtp._tls.<domain> \"v=TLSRPTv1; rua=mailto:tlsrpt@<domain>\" to receive failure reports.",
		Ref:       "RFC 8460 §3; RFC 8461 §6",
		Checklist: []string{"RPT-TXT-11", "MISC-20", "MISC-19"},
		Caps:      map[Severity]Grade{Warning: GradeB},
	})
	TLSRPTUndetermined = def(Def{
		ID: "tlsrpt-undetermined", Component: ComponentTLSRPT, Severities: onlyWarning,
		Title:     "TLS-RPT record could not be looked up",
		Explain:   "The DNS lookup failed temporarily; this is not the same as \"not configured\".",
		Fix:       "Retry the scan. If it persists, check the name servers of <domain>.",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-12"},
	})
	TLSRPTMultiple = def(Def{
		ID: "tlsrpt-multiple", Component: ComponentTLSRPT, Severities: onlyError,
		Title:     "More than one TLS-RPT record",
		Explain:   "With more than one record starting with \"v=TLSRPTv1;\", senders assume the domain does not want reports.",
		Fix:       "Merge into one TXT record at _smtp._tls.<domain>: \"v=TLSRPTv1; rua=<uri1>,<uri2>\".",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-3", "MISC-24"},
		Caps:      map[Severity]Grade{Error: GradeB},
	})
	TLSRPTVersion = def(Def{
		ID: "tlsrpt-version", Component: ComponentTLSRPT, Severities: onlyError,
		Title:     "TLS-RPT record does not start with v=TLSRPTv1",
		Explain:   "The record must begin with exactly \"v=TLSRPTv1\" (case-sensitive, first, followed by ';').",
		Fix:       "Set the TXT value to: v=TLSRPTv1; rua=mailto:tlsrpt@<domain>",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-4"},
		Caps:      map[Severity]Grade{Error: GradeB},
	})
	TLSRPTSyntax = def(Def{
		ID: "tlsrpt-syntax", Component: ComponentTLSRPT, Severities: onlyError,
		Title:     "TLS-RPT record is not valid",
		Explain:   "The record does not match the grammar (space around '=', a missing ';', forbidden characters, trailing junk). Senders ignore it.",
		Fix:       "Set the TXT value to: v=TLSRPTv1; rua=mailto:tlsrpt@<domain>",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-4"},
		Caps:      map[Severity]Grade{Error: GradeB},
	})
	TLSRPTSpaceBeforeSemicolon = def(Def{
		ID: "tlsrpt-space-before-semicolon", Component: ComponentTLSRPT, Severities: errorOrWarning,
		Title:     "Space before the first semicolon of the TLS-RPT record",
		Explain:   "\"v=TLSRPTv1 ;\" matches the grammar, whose delimiter allows whitespace around ';'. When it is the only TXT record at _smtp._tls, no filter applies and senders use it (a warning: it is fragile). When several TXT records come back, senders first discard those that do not begin with exactly \"v=TLSRPTv1;\", so a literal reading finds no record and sends no reports (an error); mox accepts it anyway.",
		Fix:       "Remove the space: v=TLSRPTv1; rua=mailto:tlsrpt@<domain>",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-3", "RPT-TXT-4"},
		Caps:      map[Severity]Grade{Error: GradeB},
	})
	TLSRPTRUAMissing = def(Def{
		ID: "tlsrpt-rua-missing", Component: ComponentTLSRPT, Severities: onlyError,
		Title:     "TLS-RPT record has no rua",
		Explain:   "rua is required: it says where reports go.",
		Fix:       "Add a report address: v=TLSRPTv1; rua=mailto:tlsrpt@<domain>",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-5"},
		Caps:      map[Severity]Grade{Error: GradeB},
	})
	TLSRPTRUAInvalid = def(Def{
		ID: "tlsrpt-rua-invalid", Component: ComponentTLSRPT, Severities: errorOrWarning,
		Title:     "TLS-RPT rua entry is not a usable mailto: or https: URI",
		Explain:   "Each rua entry must be a full mailto: or https: URI; a bare address, http:, a DMARC-style \"!10m\" size suffix or an unencoded ',' ';' '!' is unusable. With no usable entry left, no reports are sent.",
		Fix:       "Each rua entry must be a full \"mailto:\" or \"https:\" URI, entries separated by commas, e.g. \"v=TLSRPTv1; rua=mailto:tlsrpt@<domain>,https://<host>/tlsrpt\".",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-6", "RPT-TXT-7", "MISC-21"},
		Caps:      map[Severity]Grade{Error: GradeB},
	})
	TLSRPTRUARepeated = def(Def{
		ID: "tlsrpt-rua-repeated", Component: ComponentTLSRPT, Severities: onlyWarning,
		Title:     "TLS-RPT record has more than one rua field",
		Explain:   "Several rua= fields are grammatical and are merged, but checkdmarc and others use only the first.",
		Fix:       "Use one rua field with a comma-separated list: v=TLSRPTv1; rua=<uri1>,<uri2>",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-8"},
	})
	TLSRPTExtension = def(Def{
		ID: "tlsrpt-extension", Component: ComponentTLSRPT, Severities: onlyInfo,
		Title:     "TLS-RPT record has an extension field",
		Explain:   "Unknown fields are ignored; only v and rua are defined (there is no ruf in TLS-RPT).",
		Fix:       "Nothing to do, unless the field is a typo.",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-9"},
	})
	TLSRPTDraftName = def(Def{
		ID: "tlsrpt-draft-name", Component: ComponentTLSRPT, Severities: errorOrWarning,
		Title:     "TLS-RPT record at a draft-era name",
		Explain:   "Records at _smtp-tlsrpt.<domain> or _smtp_tlsrpt.<domain> come from drafts and are never queried; the name is _smtp._tls.<domain>.",
		Fix:       "Move the record to _smtp._tls.<domain> and delete the draft-era one.",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-1", "MISC-32"},
		Caps:      map[Severity]Grade{Error: GradeB},
	})
	TLSRPTUnrelatedTXT = def(Def{
		ID: "tlsrpt-unrelated-txt", Component: ComponentTLSRPT, Severities: onlyInfo,
		Title:     "Other TXT records beside the TLS-RPT record",
		Explain:   "Senders ignore TXT records at _smtp._tls that do not start with \"v=TLSRPTv1;\".",
		Fix:       "Remove non-TLS-RPT TXT records from _smtp._tls.<domain>.",
		Ref:       "RFC 8460 §3",
		Checklist: []string{"RPT-TXT-3"},
	})
)

// Severities of findings whose weight follows the policy mode: an error
// under enforce (senders refuse the host), a warning under testing, and
// advice when no policy applies.
var byMode = []Severity{Error, Warning, Info}

// STARTTLS and certificates of every MX address (RFC 8461 §4, RFC 3207).
var (
	SMTPUnreachable = def(Def{
		ID: "smtp-unreachable", Component: ComponentSMTP, Severities: onlyWarning,
		Title:     "MX address not reachable on port 25",
		Explain:   "The scan could not connect to this MX address. It may be down, or port 25 may be filtered: many networks (and many cloud providers) block outgoing port 25, so check from a mail server before you conclude the host is at fault.",
		Fix:       "Check that <mx> accepts connections on port 25 from the internet; if the scan ran from a network that blocks port 25, run it again from one that does not.",
		Ref:       "RFC 5321 §5.1",
		Checklist: []string{"STS-SND-6", "DANE-DNS-3"},
	})
	SMTPNotProbed = def(Def{
		ID: "smtp-not-probed", Component: ComponentSMTP, Severities: onlyInfo,
		Title:     "MX addresses were not probed",
		Explain:   "The scan did not probe these addresses, or stopped before a probe finished: its time budget (--timeout) ran out while probes waited for their turn (one connection at a time per address, a few addresses at once; every MX host gets one address probed before any host gets a second), or a host has more addresses than the scan probes (4 per address family). Nothing is known about them; this is not a fault of the server.",
		Fix:       "Scan again with a longer --timeout.",
		Ref:       "RFC 8461 §4; RFC 7672 §2.2",
		Checklist: []string{"STS-SND-8"},
	})
	SMTPBannerRefused = def(Def{
		ID: "smtp-banner-refused", Component: ComponentSMTP, Severities: onlyWarning,
		Title:     "MX address refuses the session in its banner",
		Explain:   "The server answered the connection with a 4xx or 5xx code instead of 220. Servers do this to greylist new clients or to turn away scanners, so this is not proof of a fault, but the scan could not check STARTTLS here.",
		Fix:       "If <mx> should accept mail from anyone, check its connection limits and blocklists; otherwise this scan cannot verify its TLS.",
		Ref:       "RFC 5321 §4.3.1",
		Checklist: []string{"STS-SND-8"},
	})
	SMTPNoBanner = def(Def{
		ID: "smtp-no-banner", Component: ComponentSMTP, Severities: onlyWarning,
		Title:     "MX address does not complete the SMTP greeting",
		Explain:   "The server accepted the connection but sent no banner, an endless or malformed one, or stopped answering after it (a tarpit or an overloaded server). Senders time out in the same way.",
		Fix:       "Check that <mx> sends a 220 banner promptly and answers EHLO.",
		Ref:       "RFC 5321 §4.3.1, §4.5.3.2",
		Checklist: []string{"STS-SND-8"},
	})
	SMTPSTARTTLSMissing = def(Def{
		ID: "smtp-starttls-missing", Component: ComponentSMTP, Severities: byMode,
		Title:     "MX address does not offer STARTTLS",
		Explain:   "The EHLO reply has no STARTTLS. Under an enforce policy, or with DANE, senders will not deliver to this host at all; otherwise mail to it travels in clear text.",
		Fix:       "Enable STARTTLS with TLS 1.2 or newer on <mx>:25 for all clients; until it works, publish \"mode: testing\" and a new id.",
		Ref:       "RFC 3207; RFC 8461 §4, §5; RFC 7672 §2.2",
		Checklist: []string{"STS-SND-8", "MISC-14", "DANE-REC-7", "MISC-48"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	SMTPSTARTTLSFailed = def(Def{
		ID: "smtp-starttls-failed", Component: ComponentSMTP, Severities: byMode,
		Title:     "STARTTLS fails on an MX address",
		Explain:   "The server offers STARTTLS but refuses the command, or the TLS handshake fails or stalls. Senders that require TLS cannot deliver to this host.",
		Fix:       "Fix TLS on <mx>:25 (certificate and key configured, TLS 1.2 or newer enabled) so that the handshake completes for every client.",
		Ref:       "RFC 3207 §4; RFC 8461 §4",
		Checklist: []string{"STS-SND-8", "MISC-14"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	SMTPTLSVersion = def(Def{
		ID: "smtp-tls-version", Component: ComponentSMTP, Severities: byMode,
		Title:     "MX address negotiates TLS older than 1.2",
		Explain:   "MTA-STS senders require TLS 1.2 or newer (Google's MX delivery requires it too); a server that offers only TLS 1.0 or 1.1 fails the policy.",
		Fix:       "Enable STARTTLS with TLS 1.2 or newer on <mx>:25 for all clients; until it works, publish \"mode: testing\" and a new id.",
		Ref:       "RFC 8461 §7.2",
		Checklist: []string{"STS-SND-8", "MISC-14"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	SMTPCertUntrusted = def(Def{
		ID: "smtp-cert-untrusted", Component: ComponentSMTP, Severities: byMode,
		Title:     "MX certificate is not publicly trusted",
		Explain:   "The certificate is self-signed or from a CA senders do not trust (common with DANE \"3 1 1\" setups). MTA-STS senders require a publicly trusted certificate; under an enforce policy they will not deliver to this host, whatever DANE says.",
		Fix:       "Install a publicly trusted certificate on <mx>:25 (keep your TLSA records updated for its key), or switch the MTA-STS policy to \"mode: testing\" or \"mode: none\".",
		Ref:       "RFC 8461 §4.2; RFC 7672 §3.1.1",
		Checklist: []string{"STS-SND-9", "MISC-12", "MISC-13", "STS-DANE-6"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	SMTPCertChainTooLarge = def(Def{
		ID: "smtp-cert-chain-too-large", Component: ComponentSMTP, Severities: onlyWarning,
		Title:     "MX certificate chain is larger than OpenSSL accepts",
		Explain:   "OpenSSL refuses a Certificate handshake message over 100 KiB by default (SSL_MAX_CERT_LIST_DEFAULT), and Postfix keeps that default, so the STARTTLS handshake of Postfix and other OpenSSL-based senders with this address fails; Go-based senders accept up to 256 KiB, so the chain looks fine to them and to mailtls.",
		Fix:       "Serve <mx> with a smaller chain: the certificate and only the intermediates it needs, without a cross-signed or extra root, and without certificates carrying large extensions.",
		Ref:       "RFC 8461 §4.2; RFC 8446 §4.4.2",
		Checklist: []string{"STS-SND-9"},
	})
	SMTPCertIncompleteChain = def(Def{
		ID: "smtp-cert-incomplete-chain", Component: ComponentSMTP, Severities: byMode,
		Title:     "MX address does not send the intermediate certificates",
		Explain:   "The server sends only its own certificate; MTAs do not fetch missing intermediates, so they cannot verify it.",
		Fix:       "Renew the certificate on <mx> and configure the full chain (leaf followed by intermediates).",
		Ref:       "RFC 8461 §4.2",
		Checklist: []string{"STS-SND-9", "MISC-13"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	SMTPCertExpired = def(Def{
		ID: "smtp-cert-expired", Component: ComponentSMTP, Severities: byMode,
		Title:     "MX certificate has expired",
		Explain:   "MTA-STS senders refuse expired certificates; under an enforce policy they will not deliver to this host.",
		Fix:       "Renew the certificate on <mx> and configure the full chain (leaf followed by intermediates).",
		Ref:       "RFC 8461 §4.2",
		Checklist: []string{"STS-SND-9", "MISC-13"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	SMTPCertNotYetValid = def(Def{
		ID: "smtp-cert-not-yet-valid", Component: ComponentSMTP, Severities: byMode,
		Title:     "MX certificate is not valid yet",
		Explain:   "The certificate's validity starts in the future (or the server clock is wrong); senders refuse it.",
		Fix:       "Serve a certificate on <mx> that is valid now.",
		Ref:       "RFC 8461 §4.2",
		Checklist: []string{"STS-SND-9"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	SMTPCertNameMismatch = def(Def{
		ID: "smtp-cert-name-mismatch", Component: ComponentSMTP, Severities: byMode,
		Title:     "MX certificate does not name the MX host",
		Explain:   "MTA-STS senders check the certificate's subjectAltName DNS names against the host name in the MX record (never the CN, never the policy domain); a wildcard covers exactly one label.",
		Fix:       "Install a publicly trusted certificate on <mx>:25 whose subjectAltName contains <mx> (the exact name in the MX record), or point the MX record at a name the certificate covers.",
		Ref:       "RFC 8461 §4.2; RFC 6125 §6.4",
		Checklist: []string{"STS-SND-9", "MISC-11", "NAME-1", "NAME-2", "NAME-4"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	SMTPCertExpiring = def(Def{
		ID: "smtp-cert-expiring", Component: ComponentSMTP, Severities: onlyWarning,
		Title:     "MX certificate expires soon",
		Explain:   "The certificate expires within 14 days; after that, MTA-STS senders under an enforce policy stop delivering to this host.",
		Fix:       "Renew the certificate on <mx> now and check that automatic renewal works (and, with DANE, that the TLSA records match the new key before it is deployed).",
		Ref:       "RFC 8461 §4.2",
		Checklist: []string{"STS-SND-9", "MISC-13"},
	})
)

// DANE for SMTP (RFC 7672; RFC 6698, 7671).
var (
	DANEValid = def(Def{
		ID: "dane-valid", Component: ComponentDANE, Severities: onlyInfo,
		Title:     "DANE authenticates the MX host",
		Explain:   "The TLSA records are DNSSEC-signed and match the certificate presented on every probed address. Senders that support DANE (Postfix, Exim, Exchange Online, mox) use it before MTA-STS (RFC 8461 §2).",
		Fix:       "Nothing to do; publish the TLSA record for a new key before you deploy the key.",
		Ref:       "RFC 7672 §3; RFC 8461 §2",
		Checklist: []string{"STS-DANE-2", "DANE-VER-6"},
	})
	DANEAbsent = def(Def{
		ID: "dane-absent", Component: ComponentDANE, Severities: onlyInfo,
		Title:     "No TLSA records for a DNSSEC-signed MX host",
		Explain:   "The MX host's addresses are DNSSEC-signed, so DANE is possible: a TLSA record would let DANE senders authenticate it without trusting any CA.",
		Fix:       "Publish _25._tcp.<mx> TLSA 3 1 1 <SHA-256 of the server's public key> (and a record for the next key before a rollover).",
		Ref:       "RFC 7672 §2.2",
		Checklist: []string{"DANE-REC-4"},
	})
	DANEDNSSECUnknown = def(Def{
		ID: "dane-dnssec-unknown", Component: ComponentDANE, Severities: onlyInfo,
		Title:     "DNSSEC status unknown: the resolver is not trusted to validate",
		Explain:   "The AD bit is believed only from a validating resolver on a trusted path: a loopback resolver or one named with --trust-ad, and only if it sets AD on the signed root zone. Without one, the scan cannot tell secure from insecure TLSA records.",
		Fix:       "Run the scan with a validating resolver on this machine (e.g. unbound on 127.0.0.1, --resolver 127.0.0.1:53), or name a validating resolver you trust with --trust-ad.",
		Ref:       "RFC 7672 §2.1.1; RFC 6698 §4.1",
		Checklist: []string{"DANE-DNS-1"},
	})
	DANETLSAInsecure = def(Def{
		ID: "dane-tlsa-insecure", Component: ComponentDANE, Severities: onlyWarning,
		Title:     "TLSA records in an unsigned zone",
		Explain:   "TLSA records without DNSSEC are ignored by every sender: they protect nothing.",
		Fix:       "Sign the zone of <mx> with DNSSEC and publish its DS record; unsigned TLSA records are ignored.",
		Ref:       "RFC 6698 §4.1; RFC 7672 §2.1.1",
		Checklist: []string{"DANE-DNS-13", "MISC-49"},
	})
	DANEAddressInsecure = def(Def{
		ID: "dane-address-insecure", Component: ComponentDANE, Severities: onlyWarning,
		Title:     "MX addresses unsigned while TLSA records are signed",
		Explain:   "Senders look up TLSA records only when the MX host's A/AAAA records are DNSSEC-secure; here they are not, so the TLSA records are never used.",
		Fix:       "Sign the zone that holds the A/AAAA records of <mx>, or move the host into a signed zone.",
		Ref:       "RFC 7672 §2.2.2",
		Checklist: []string{"DANE-DNS-5"},
	})
	DANEMXInsecure = def(Def{
		ID: "dane-mx-insecure", Component: ComponentDANE, Severities: onlyWarning,
		Title:     "The domain's MX records are not DNSSEC-signed",
		Explain:   "The MX host has secure TLSA records, but the MX RRset of the domain is unsigned: DANE protects against certificate substitution, not against a forged MX record, and mandatory-DANE senders defer mail.",
		Fix:       "Sign the zone of <domain> with DNSSEC and publish its DS record at the registrar.",
		Ref:       "RFC 7672 §2.2.1",
		Checklist: []string{"DANE-DNS-4"},
	})
	DANELookupFailed = def(Def{
		ID: "dane-lookup-failed", Component: ComponentDANE, Severities: errorOrWarning,
		Title:     "TLSA lookup fails",
		Explain:   "The TLSA lookup for the MX host failed (SERVFAIL, timeout, or a DNSSEC validation failure). DANE senders treat that MX host as unreachable and never fall back to MTA-STS or plain TLS; an error when a validating resolver answered SERVFAIL (likely bogus DNSSEC), a warning otherwise.",
		Fix:       "Fix the authoritative name servers for <mx> so TLSA queries get a proper (signed) answer, and repair DNSSEC for its zone if validation fails.",
		Ref:       "RFC 7672 §2.1.1, §2.1.2, §2.2.2",
		Checklist: []string{"DANE-DNS-2", "DANE-DNS-3", "STS-DANE-3", "MISC-42", "MISC-43"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	DANETCPNXDomain = def(Def{
		ID: "dane-tcp-nxdomain", Component: ComponentDANE, Severities: onlyError,
		Title:     "_tcp.<mx> is NXDOMAIN although TLSA records exist below it",
		Explain:   "Some authoritative servers answer NXDOMAIN for the empty non-terminal _tcp.<mx>; resolvers that minimise queries then conclude _25._tcp.<mx> does not exist, and DANE lookups fail.",
		Fix:       "Fix the authoritative name servers for <mx> so TLSA queries get a proper (signed) answer, and so _tcp.<mx> is not reported as non-existent.",
		Ref:       "RFC 7672 §2.2.2",
		Checklist: []string{"DANE-DNS-9", "MISC-43"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	DANEUnusable = def(Def{
		ID: "dane-unusable", Component: ComponentDANE, Severities: errorOrWarning,
		Title:     "TLSA records that SMTP senders cannot use",
		Explain:   "SMTP senders use only usages 2 (DANE-TA) and 3 (DANE-EE); usages 0 and 1 (PKIX-TA, PKIX-EE) and unknown parameters are ignored. If no usable record is left, senders only require encryption.",
		Fix:       "SMTP clients ignore usages 0 and 1; publish \"_25._tcp.<mx> TLSA 3 1 1 <sha256 of SPKI>\".",
		Ref:       "RFC 7672 §3.1.3; RFC 6698 §4.1",
		Checklist: []string{"DANE-REC-2", "DANE-REC-3", "MISC-44"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	DANEMalformed = def(Def{
		ID: "dane-malformed", Component: ComponentDANE, Severities: onlyError,
		Title:     "Malformed TLSA record",
		Explain:   "The association data has the wrong length for its matching type, or a full certificate or key does not parse. Such a record matches nothing.",
		Fix:       "Regenerate the TLSA record: usage 3, selector 1, type 1, followed by the 64-hex-digit SHA-256 of the certificate's public key.",
		Ref:       "RFC 6698 §2.1, §4.1",
		Checklist: []string{"DANE-REC-2", "MISC-45"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	DANEMismatch = def(Def{
		ID: "dane-mismatch", Component: ComponentDANE, Severities: onlyError,
		Title:     "TLSA records do not match the certificate the MX presents",
		Explain:   "No usable TLSA record matches the chain this address presents (typically after a certificate renewal with a new key). DANE senders will not deliver to it, and MTA-STS cannot compensate: a DANE failure is never overridden.",
		Fix:       "Publish a TLSA record for the new key before deploying it (keep the old one until it is retired); with ACME clients reuse the key (e.g. certbot --reuse-key) or pre-publish the next key (\"current + next\").",
		Ref:       "RFC 7672 §3.2; RFC 7671 §8.1; RFC 8461 §2",
		Checklist: []string{"MISC-40", "MISC-47", "MISC-50", "DANE-VER-12", "DANE-REC-5", "DANE-REC-6", "STS-DANE-1"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	DANETAInvalid = def(Def{
		ID: "dane-ta-invalid", Component: ComponentDANE, Severities: onlyError,
		Title:     "DANE-TA record does not authenticate the chain",
		Explain:   "A usage 2 record must match a CA certificate the server sends, the chain from the leaf to it must verify, and the leaf must name the MX host. The server omits the trust anchor, or the path or names do not check out.",
		Fix:       "Add the trust-anchor certificate to the chain served on <mx>:25, or publish a \"3 1 1\" record for the server key instead.",
		Ref:       "RFC 7672 §3.1.2, §3.2.2; RFC 7671 §5.2",
		Checklist: []string{"MISC-41", "DANE-REC-9", "DANE-VER-4", "DANE-VER-5", "NAME-6"},
		Caps:      map[Severity]Grade{Error: GradeD},
	})
	DANEDigest = def(Def{
		ID: "dane-digest", Component: ComponentDANE, Severities: onlyWarning,
		Title:     "TLSA record matches only through a weaker digest",
		Explain:   "With digest agility, senders use only the strongest matching type present per usage and selector: a certificate that matches only the SHA-256 record while a SHA-512 record exists is not authenticated by them.",
		Fix:       "Make every TLSA record for the current key match it, or remove the records of the other digest type.",
		Ref:       "RFC 7671 §9; RFC 7672 §5",
		Checklist: []string{"DANE-VER-2", "DANE-REC-4"},
	})
	DANENoRollover = def(Def{
		ID: "dane-no-rollover", Component: ComponentDANE, Severities: onlyWarning,
		Title:     "No TLSA record for a key rollover",
		Explain:   "Only the current key is published. When the certificate is renewed with a new key, DANE senders stop delivering until a new TLSA record has propagated. A second record for the next key (\"3 1 1 + 3 1 1\") or for the issuing CA (\"3 1 1 + 2 0 1\") avoids the outage.",
		Fix:       "Publish a second TLSA record now: \"3 1 1\" of the next key (generate it ahead, or reuse the key on renewal), or \"2 0 1\" of the issuing CA certificate.",
		Ref:       "RFC 7671 §8.1, §8.4; RFC 7672 §4",
		Checklist: []string{"DANE-REC-5"},
	})
	DANEStale = def(Def{
		ID: "dane-stale-record", Component: ComponentDANE, Severities: onlyInfo,
		Title:     "TLSA record matches no presented certificate",
		Explain:   "Beside records that match, one record matches no certificate any address presents: a pre-published next key, or a retired one left behind.",
		Fix:       "Keep it if it is the next key; remove it two TTLs after a key is retired.",
		Ref:       "RFC 7671 §8",
		Checklist: []string{"DANE-REC-5"},
	})
	DANEPartial = def(Def{
		ID: "dane-partial", Component: ComponentDANE, Severities: onlyWarning,
		Title:     "Only some MX hosts have DANE",
		Explain:   "Mail routed to the MX hosts without secure TLSA records has no DANE protection, and an attacker who can block the protected hosts pushes mail to the others.",
		Fix:       "Publish TLSA records for every MX host, otherwise mail routed to them has no DANE protection.",
		Ref:       "RFC 7672 §2.2.1",
		Checklist: []string{"MISC-46"},
	})
	DANERecordStyle = def(Def{
		ID: "dane-record-style", Component: ComponentDANE, Severities: onlyInfo,
		Title:     "Discouraged TLSA parameters",
		Explain:   "Matching type 0 (the full certificate or key) is large and brittle, SHA-512-only sets leave out the mandatory SHA-256, and \"2 1 x\" leaves the trust anchor's constraints mutable; \"3 1 1\" plus \"2 0 1\" or a second \"3 1 1\" is the recommended set.",
		Fix:       "Prefer \"3 1 1\" records (plus one for the next key or \"2 0 1\" for the issuing CA).",
		Ref:       "RFC 7672 §3.1; RFC 7671 §10.1.2",
		Checklist: []string{"DANE-REC-4"},
	})
	DANEHostTLSRPT = def(Def{
		ID: "dane-host-tlsrpt", Component: ComponentDANE, Severities: onlyInfo,
		Title:     "No TLS-RPT record for the MX host",
		Explain:   "For DANE, the policy domain of a report is the MX host, so reporters such as mox send DANE results to _smtp._tls.<mx>; Postfix reports per recipient domain. Publishing both gets every report.",
		Fix:       "Publish TXT _smtp._tls.<mx> \"v=TLSRPTv1; rua=mailto:tlsrpt@<domain>\" as well.",
		Ref:       "RFC 8460 §1.1, §3",
		Checklist: []string{"RPT-TXT-1", "AMB-10"},
	})
)
