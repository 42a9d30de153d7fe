package finding

// Findings from the TLS-RPT reports a saved domain receives (RFC 8460):
// monitoring judges the reports of the last days at each scan of the
// domain (internal/tlsrptagg.Watch) and alerts on the transitions like on
// any finding. The CLI's single scan never reports them.

var (
	ReportsBlockingFailure = def(Def{
		ID: "reports-blocking-failure", Component: ComponentReports, Severities: onlyError,
		Title:     "Reports show failures on an MX host that senders would refuse under enforce",
		Explain:   "In the TLS-RPT reports of the last days, senders failed to deliver securely to this MX host, and today's policy and scan say the failure is real: the host is not covered by the policy's mx patterns, or today's scan shows the same certificate or STARTTLS problem (the failure's explanation is \"blocking\"). Under an enforce policy those senders refuse to deliver to the host; with DANE (tlsa policies) they refuse already. Failures explained otherwise (fixed since, a policy-host problem, unexplained) do not raise it.",
		Fix:       "Fix what the message names on <mx> (add it to the policy's mx patterns and publish a new id, or fix its certificate or STARTTLS); `mailtls reports readiness <domain>` lists every failure with its explanation.",
		Ref:       "RFC 8460 §4.3; RFC 8461 §4.1, §4.2, §5; RFC 7672 §2.2",
		Checklist: []string{"STS-SND-7", "STS-SND-9", "MISC-9"},
	})
	ReportsFailureRate = def(Def{
		ID: "reports-failure-rate", Component: ComponentReports, Severities: onlyWarning,
		Title:     "The failure rate in the reports jumped above the domain's baseline",
		Explain:   "Over the last days, the share of failed sessions that senders reported under one policy type (sts, tlsa or no-policy-found, never added together) is well above this domain's own rate over the weeks before: at least 3 times the baseline rate and at least one percentage point more, with at least 100 sessions and 10 failures. Something changed (a certificate, an MX host, the policy host); a domain with a steady small failure rate does not raise it. It stays until the rate falls back below half the jump.",
		Fix:       "See which MX hosts and result types the failures are about (`mailtls reports summary <domain> --days 3`) and fix what changed.",
		Ref:       "RFC 8460 §4.3, §4.4",
		Checklist: []string{"RPT-TXT-11"},
	})
	ReportsReporterSilent = def(Def{
		ID: "reports-reporter-silent", Component: ComponentReports, Severities: onlyWarning,
		Title:     "A reporter that sent reports regularly has gone silent",
		Explain:   "This organisation sent reports about the domain on at least 7 days of the 4 weeks before, and none in the last 7 days. Either it no longer sends mail to the domain, or its reports no longer arrive: the _smtp._tls record's rua changed or broke, the mailbox or HTTPS endpoint refuses them, or they fail DKIM and are ignored. It is resolved when the reporter's reports count again.",
		Fix:       "Check the _smtp._tls.<domain> record and that its rua address or URL accepts reports; `mailtls reports list --state ignored --state held` shows reports kept aside.",
		Ref:       "RFC 8460 §3, §5",
		Checklist: []string{"RPT-TXT-11"},
	})
)
