package check

import (
	"fmt"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// tlsrptCodes maps TLS-RPT record problems to findings (RFC 8460 §3).
var tlsrptCodes = map[tlsrpt.Code]finding.ID{
	tlsrpt.RecordNonASCII:             finding.TLSRPTSyntax,
	tlsrpt.RecordQuoted:               finding.TLSRPTVersion,
	tlsrpt.RecordVersion:              finding.TLSRPTVersion,
	tlsrpt.RecordSpaceBeforeSemicolon: finding.TLSRPTSpaceBeforeSemicolon,
	tlsrpt.RecordSpaceAroundEquals:    finding.TLSRPTSyntax,
	tlsrpt.RecordSyntax:               finding.TLSRPTSyntax,
	tlsrpt.RecordTrailingSpace:        finding.TLSRPTSyntax,
	tlsrpt.RUAMissing:                 finding.TLSRPTRUAMissing,
	tlsrpt.RUAInvalid:                 finding.TLSRPTRUAInvalid,
	tlsrpt.RUAUnsupported:             finding.TLSRPTRUAInvalid,
	tlsrpt.RUARepeated:                finding.TLSRPTRUARepeated,
	tlsrpt.Extension:                  finding.TLSRPTExtension,
}

// rptVerdict is the verdict on the _smtp._tls TXT record.
type rptVerdict struct {
	state recState
	// rec is the record senders read, also when it has no usable report
	// address (state recInvalid); nil when there is none.
	rec *tlsrpt.Record
	// draftName: a TLS-RPT record sits at a draft-era name, where senders
	// do not look; its own finding says so.
	draftName bool
}

// tlsrptRecord judges the _smtp._tls TXT record (RFC 8460 §3, spec-checklist
// §E1). Whether a missing record matters depends on the policy, so that
// advice comes later (tlsrptAdvice).
func (e *evaluator) tlsrptRecord() rptVerdict {
	name := "_smtp._tls." + e.o.Domain
	a := e.o.DNS.TLSRPT
	if a == nil || a.Status.Temporary() {
		e.add(finding.TLSRPTUndetermined, finding.Warning, name,
			fmt.Sprintf("Could not look up %s TXT: %s. This says nothing about whether the record exists; retry.", name, temporaryWhy(a)),
			e.fixText(finding.TLSRPTUndetermined))
		return rptVerdict{state: recUndetermined}
	}
	var v rptVerdict
	txts := a.TXT()
	cands, loose, other := sortTXT(txts, tlsrpt.IsCandidate, tlsrpt.LooksLikeRecord)
	switch {
	case len(txts) == 1 && len(other) == 0:
		// A single record is parsed as it is: no prefix filter applies
		// (RFC 8460 §3).
		v.state, v.rec = e.parseTLSRPT(name, txts[0], false)
	case len(cands) > 1:
		v.state = recInvalid
		e.add(finding.TLSRPTMultiple, finding.Error, name,
			fmt.Sprintf("%s has %d TXT records starting with \"v=TLSRPTv1;\" (%s); senders then send no reports.", name, len(cands), quoteList(cands, 3)),
			e.fixText(finding.TLSRPTMultiple))
	case len(cands) == 1:
		v.state, v.rec = e.parseTLSRPT(name, cands[0], true)
	case len(loose) > 0:
		// Several TXT records and none passes the filter: say why.
		for _, t := range loose {
			e.parseTLSRPT(name, t, true)
		}
		v.state = recInvalid
	default:
		v.state = recAbsent
	}
	if len(other) > 0 {
		e.add(finding.TLSRPTUnrelatedTXT, finding.Info, name,
			fmt.Sprintf("%s also has %s, which senders ignore.", name, quoteList(other, 3)), e.fixText(finding.TLSRPTUnrelatedTXT))
	}
	v.draftName = e.tlsrptDraftNames(v.state)
	return v
}

// parseTLSRPT parses the record senders read, reports its problems and
// returns its state and the record (nil when it does not parse). filtered
// says that several TXT records came back, so the "v=TLSRPTv1;" prefix
// filter applied (RFC 8460 §3).
func (e *evaluator) parseTLSRPT(name, txt string, filtered bool) (recState, *tlsrpt.Record) {
	rec, probs := tlsrpt.ParseRecord(txt)
	usable := rec != nil && len(rec.Usable) > 0
	for _, p := range probs {
		id := tlsrptCodes[p.Code]
		sev := finding.Error
		msg := fmt.Sprintf("%s TXT %q: %s.", name, txt, p.Detail)
		switch p.Code {
		case tlsrpt.Extension:
			sev = finding.Info
		case tlsrpt.RUARepeated:
			sev = finding.Warning
		case tlsrpt.RUAUnsupported:
			if usable {
				sev = finding.Warning
			}
		case tlsrpt.RecordSpaceBeforeSemicolon:
			if filtered {
				msg += " With more than one TXT record at the name, senders discard every record that does not begin with \"v=TLSRPTv1;\", so a literal reading finds no TLS-RPT record and sends no reports (mox accepts it anyway)."
			} else {
				sev = finding.Warning
				msg += " The grammar allows it and, as this is the only TXT record at the name, no prefix filter applies, so senders use it (mox does; Google's and Microsoft's parsers are not public). As soon as another TXT record is published there, senders that filter literally discard this one."
			}
		}
		e.add(id, sev, name, msg, e.fixText(id))
	}
	if usable {
		return recValid, rec
	}
	return recInvalid, rec
}

// tlsrptDraftNames reports records at draft-era names (RPT-TXT-1) and
// returns whether there was one.
func (e *evaluator) tlsrptDraftNames(state recState) (found bool) {
	sev := finding.Error
	if state == recValid {
		sev = finding.Warning
	}
	for _, x := range []struct {
		name string
		a    *resolve.Answer
	}{{"_smtp-tlsrpt." + e.o.Domain, e.o.DNS.TLSRPTDraft}, {"_smtp_tlsrpt." + e.o.Domain, e.o.DNS.TLSRPTDraftUnder}} {
		if x.a == nil || x.a.Status != resolve.StatusOK {
			continue
		}
		for _, t := range x.a.TXT() {
			if tlsrpt.LooksLikeRecord(t) {
				found = true
				e.add(finding.TLSRPTDraftName, sev, x.name,
					fmt.Sprintf("%s has the TXT record %q; senders only look at _smtp._tls.%s.", x.name, t, e.o.Domain),
					e.fixText(finding.TLSRPTDraftName))
			}
		}
	}
	return found
}

// tlsrptAdvice reports a missing TLS-RPT record: a warning while MTA-STS is
// deployed (RPT-TXT-11, MISC-19, MISC-20), otherwise advice.
func (e *evaluator) tlsrptAdvice(rpt rptVerdict, status Status) {
	if rpt.state != recAbsent || rpt.draftName || status == StatusNone {
		return
	}
	name := "_smtp._tls." + e.o.Domain
	switch status {
	case StatusEnforce, StatusTesting:
		e.add(finding.TLSRPTMissing, finding.Warning, name,
			fmt.Sprintf("%s has an MTA-STS policy in %s mode but no TLS-RPT record at %s, so no sender reports failed TLS connections to you.", e.o.Domain, status, name),
			e.fixText(finding.TLSRPTMissing))
	default:
		e.add(finding.TLSRPTMissing, finding.Info, name,
			fmt.Sprintf("There is no TLS-RPT record at %s; publish one with MTA-STS to receive reports.", name),
			e.fixText(finding.TLSRPTMissing))
	}
}
