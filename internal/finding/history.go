package finding

// Findings that need history: they compare a saved domain's scan with the
// one before it (package history), so only monitoring reports them; the
// CLI's single scan never does. They describe changes between scans and
// do not cap the grade, which describes one scan.

var (
	HistoryPolicyChangedSameID = def(Def{
		ID: "history-policy-changed-same-id", Component: ComponentHistory, Severities: onlyError,
		Title:     "Policy changed but the id did not",
		Explain:   "The policy file now says something else (mode, mx patterns or max_age) than at the previous scan, but the id in the _mta-sts TXT record is the same. Senders fetch the policy again only when the id changes, so those that cached the old policy keep applying it until its max_age runs out, and different senders now apply different policies. It stays reported until the id changes.",
		Fix:       "Every policy change needs a new id: keep the new file online and set _mta-sts.<domain> to \"v=STSv1; id=<id>\".",
		Ref:       "RFC 8461 §3.1, §8.1",
		Checklist: []string{"STS-TXT-11", "MISC-15", "STS-HOST-4"},
	})
	HistoryIDChangedSamePolicy = def(Def{
		ID: "history-id-changed-same-policy", Component: ComponentHistory, Severities: onlyInfo,
		Title:     "The id changed but the policy did not",
		Explain:   "The TXT record has a new id while the policy says the same as at the previous scan. Harmless: senders fetch the policy again and find what they had.",
		Fix:       "Nothing to do; change the id only when the policy changes.",
		Ref:       "RFC 8461 §3.1",
		Checklist: []string{"STS-TXT-11"},
	})
	HistoryMXNotCovered = def(Def{
		ID: "history-mx-not-covered", Component: ComponentHistory, Severities: errorOrWarning,
		Title:     "The MX set or the policy changed and the policy no longer covers an MX host",
		Explain:   "Since the previous scan an MX host was added that no mx pattern of the policy matches, or the policy lost the pattern that matched it. Senders that apply an enforce policy refuse to deliver to that host (error); under testing they deliver and report the failure (warning). Senders that cached the policy keep it until they see a new id.",
		Fix:       "Add a pattern for <mx> to the policy at https://mta-sts.<domain>/.well-known/mta-sts.txt, then publish a new id: _mta-sts.<domain> \"v=STSv1; id=<id>\". Add a new MX to the policy before it appears in the MX records.",
		Ref:       "RFC 8461 §4.1, §8.1",
		Checklist: []string{"STS-SND-7", "MISC-9", "STS-HOST-4"},
	})
	HistoryCertExpires = def(Def{
		ID: "history-cert-expires", Component: ComponentHistory, Severities: errorOrWarning,
		Title:     "A certificate expires within 21 days",
		Explain:   "The certificate of the policy host or of an MX address expires within 21 days (a warning), 7 days (a warning again) or 2 days (an error); monitoring alerts once at each of these steps. After expiry, senders cannot refresh the policy (policy host) or refuse the MX host under an enforce policy.",
		Fix:       "Renew the certificate of <host> now and check that automatic renewal works (with DANE, publish the TLSA record of a new key before deploying it).",
		Ref:       "RFC 8461 §3.3, §4.2",
		Checklist: []string{"STS-FETCH-5", "STS-SND-9", "MISC-4", "MISC-13"},
	})
	HistoryTLSAMismatch = def(Def{
		ID: "history-tlsa-mismatch", Component: ComponentHistory, Severities: onlyError,
		Title:     "TLSA records no longer match after a change",
		Explain:   "At the previous scan the TLSA records of this MX host matched the certificate presented; now they do not, because the certificate (usually its key, at a renewal) or the TLSA records changed. DANE senders do not deliver to a host whose TLSA records match nothing.",
		Fix:       "Publish a TLSA record for the certificate now served on <mx> (\"3 1 1\" of its key), and from now on publish the next key's record at least two TTLs before deploying it.",
		Ref:       "RFC 7672 §3.2; RFC 7671 §8.1",
		Checklist: []string{"MISC-40", "DANE-REC-5"},
	})
	HistoryDisappeared = def(Def{
		ID: "history-disappeared", Component: ComponentHistory, Severities: []Severity{Error, Warning, Info},
		Title:     "A record or the policy host disappeared",
		Explain:   "Something the previous scan found is now definitely gone (not a temporary failure): the _mta-sts TXT record, the policy host, the TLS-RPT record or an MX host's TLSA records. Senders that cached an MTA-STS policy keep applying it until its max_age runs out, while new senders see none; removing MTA-STS safely goes through mode none first. It is an error when an enforce or testing policy was in place, a warning for TLS-RPT and TLSA records, and information after a policy of mode none.",
		Fix:       "Publish it again if it was removed by mistake. To retire MTA-STS, serve a policy with \"mode: none\" and a small max_age under a new id, and remove the record and the policy host only after the previous max_age has passed.",
		Ref:       "RFC 8461 §3.1, §5.1, §8.3; RFC 8460 §3; RFC 7672 §2.2",
		Checklist: []string{"STS-TXT-17", "STS-SND-4", "RPT-TXT-11", "DANE-REC-5"},
	})
	HistoryGradeDropped = def(Def{
		ID: "history-grade-dropped", Component: ComponentHistory, Severities: errorOrWarning,
		Title:     "The grade dropped",
		Explain:   "The grade is worse than at an earlier scan (an error when it fell to D or F, else a warning); the findings that cap it say why. It stays reported until the grade is back where it was.",
		Fix:       "Fix the findings named in the grade reasons; the grade comes back when they are gone.",
		Ref:       "RFC 8461 §4, §5; RFC 7672 §3 (the grade sums up the findings of the scan; docs/grading.md)",
		Checklist: []string{},
	})
)
