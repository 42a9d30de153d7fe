package check

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
)

// recordCodes maps MTA-STS record problems to findings (RFC 8461 §3.1).
var recordCodes = map[mtasts.Code]finding.ID{
	mtasts.RecordNonASCII:             finding.STSRecordNonASCII,
	mtasts.RecordQuoted:               finding.STSRecordQuoted,
	mtasts.RecordVersion:              finding.STSRecordVersion,
	mtasts.RecordSpaceBeforeSemicolon: finding.STSRecordSpaceBeforeSemicolon,
	mtasts.RecordSpaceAroundEquals:    finding.STSRecordSpaceAroundEquals,
	mtasts.RecordSyntax:               finding.STSRecordSyntax,
	mtasts.RecordTrailingSpace:        finding.STSRecordTrailingSpace,
	mtasts.RecordIDMissing:            finding.STSRecordIDMissing,
	mtasts.RecordIDInvalid:            finding.STSRecordIDInvalid,
	mtasts.RecordIDDuplicate:          finding.STSRecordIDDuplicate,
	mtasts.RecordExtension:            finding.STSRecordExtension,
}

// temporaryWhy describes a failed lookup for messages.
func temporaryWhy(a *resolve.Answer) string {
	if a == nil {
		return "the lookup was not made"
	}
	if a.Status == resolve.StatusError && a.Error != "" {
		return a.Error // names the server and what was wrong with the reply
	}
	why := string(a.Status)
	if a.Rcode != "" && a.Status != resolve.StatusTimeout {
		why = a.Rcode
	}
	if a.Server != "" {
		why += " from " + a.Server
	}
	return why
}

// recordVerdict is the verdict on the _mta-sts TXT record.
type recordVerdict struct {
	state recState
	rec   *mtasts.Record // the record senders use (state recValid)
	why   string         // why there is no valid record, for the status
	// misplaced: what looks like the record sits where senders do not
	// look (the apex, the draft-era name, a zone wildcard, a CNAME that
	// leads nowhere); its own finding says so.
	misplaced bool
}

// record judges the _mta-sts TXT record (RFC 8461 §3.1, spec-checklist §A).
func (e *evaluator) record() recordVerdict {
	d := e.o.Domain
	name := "_mta-sts." + d
	a := e.o.DNS.STS
	if a == nil || a.Status.Temporary() {
		e.add(finding.STSRecordUndetermined, finding.Warning, name,
			fmt.Sprintf("Could not look up %s TXT: %s. This says nothing about whether the record exists; retry.", name, temporaryWhy(a)),
			e.fixText(finding.STSRecordUndetermined))
		return recordVerdict{state: recUndetermined, why: "the lookup of " + name + " TXT failed (" + temporaryWhy(a) + ")"}
	}
	var v recordVerdict
	if len(a.CNAMEs) > 0 {
		target := a.Target()
		if a.Status == resolve.StatusNXDomain || a.Status == resolve.StatusNoData {
			v.misplaced = true
			e.add(finding.STSRecordDanglingCNAME, finding.Error, name,
				fmt.Sprintf("%s is a CNAME to %s, which has no TXT record (%s).", name, target, a.Status),
				e.fixText(finding.STSRecordDanglingCNAME))
		} else {
			e.add(finding.STSRecordDelegated, finding.Info, name,
				fmt.Sprintf("%s is a CNAME to %s; senders follow it.", name, target), e.fixText(finding.STSRecordDelegated))
		}
	}

	txts := a.TXT()
	cands, loose, other := sortTXT(txts, mtasts.IsCandidate, mtasts.LooksLikeRecord)
	switch {
	case len(txts) == 1 && len(other) == 0:
		// A single record is parsed as it is: no prefix filter applies
		// (RFC 8461 §3.1), so "v=STSv1 ; id=1" is a valid record.
		v.state, v.rec, v.why = e.parseRecord(name, txts[0], false)
	case len(cands) > 1:
		v.state = recInvalid
		v.why = fmt.Sprintf("%s has %d MTA-STS records", name, len(cands))
		e.add(finding.STSRecordMultiple, finding.Error, name,
			fmt.Sprintf("%s has %d TXT records starting with \"v=STSv1;\" (%s); senders must then assume there is no policy.", name, len(cands), quoteList(cands, 3)),
			e.fixText(finding.STSRecordMultiple))
	case len(cands) == 1:
		v.state, v.rec, v.why = e.parseRecord(name, cands[0], true)
	case len(loose) > 0:
		// Several TXT records and none passes the filter (RFC 8461 §3.1);
		// say why the intended one fails.
		for _, t := range loose {
			e.parseRecord(name, t, true)
		}
		v.state = recInvalid
		v.why = fmt.Sprintf("%s has %d TXT records and none begins with \"v=STSv1;\"", name, len(txts))
	default:
		v.state = recAbsent
		v.why = "there is no MTA-STS TXT record at " + name
	}
	if len(cands) == 1 && len(loose) > 0 {
		e.add(finding.STSRecordUnrelatedTXT, finding.Warning, name,
			fmt.Sprintf("Besides the MTA-STS record, %s has %s %s that looks like a broken MTA-STS record; RFC 8461 senders ignore it, go-mtasts (maddy) sees more than one record and ignores the policy.", name, plural(len(loose), "a TXT record", "TXT records"), quoteList(loose, 3)),
			e.fixText(finding.STSRecordUnrelatedTXT))
	}
	if len(other) > 0 && e.unrelatedTXT(name, other, len(cands)+len(loose) > 0) {
		v.misplaced = true
	}
	if v.state == recValid && a.MinTTL() > 3600 {
		e.add(finding.STSRecordTTL, finding.Info, name,
			fmt.Sprintf("The TTL of %s is %d seconds; a new id becomes visible to senders only after the TTL.", name, a.MinTTL()),
			e.fixText(finding.STSRecordTTL))
	}
	if e.misplacedRecords(v.state) {
		v.misplaced = true
	}
	return v
}

// parseRecord parses the record senders read, reports its problems and
// returns its state. filtered says that several TXT records came back, so
// the "v=STSv1;" prefix filter applied (RFC 8461 §3.1).
func (e *evaluator) parseRecord(name, txt string, filtered bool) (recState, *mtasts.Record, string) {
	rec, probs := mtasts.ParseRecord(txt)
	for _, p := range probs {
		id := recordCodes[p.Code]
		sev := finding.Error
		msg := fmt.Sprintf("%s TXT %q: %s.", name, txt, p.Detail)
		switch {
		case p.Code == mtasts.RecordExtension:
			sev = finding.Info
		case p.Code == mtasts.RecordIDDuplicate:
			sev = finding.Warning
		case p.Code == mtasts.RecordSpaceBeforeSemicolon && filtered:
			msg += " With more than one TXT record at the name, RFC 8461 senders discard every record that does not begin with \"v=STSv1;\", so they find no MTA-STS record; mox, postfix-mta-sts-resolver and postfix-tlspol accept it anyway, go-mtasts (maddy) finds more than one TXT record and no policy."
		case p.Code == mtasts.RecordSpaceBeforeSemicolon:
			sev = finding.Warning
			msg += " The grammar allows it and, as this is the only TXT record at the name, no prefix filter applies: RFC 8461 senders, mox, postfix-mta-sts-resolver, postfix-tlspol and go-mtasts (maddy) all use it (whether Google's and Microsoft's senders do is not public). But as soon as another TXT record is published there (a verification token, a zone wildcard), RFC 8461 senders discard this one for not beginning with \"v=STSv1;\" and the policy is gone."
		}
		e.add(id, sev, name, msg, e.fixText(id))
	}
	if rec != nil {
		return recValid, rec, ""
	}
	return recInvalid, nil, fmt.Sprintf("the TXT record %q at %s is invalid", txt, name)
}

// unrelatedTXT reports TXT records at _mta-sts that are not MTA-STS
// records (STS-TXT-3) or that a zone wildcard put there (STS-TXT-18); it
// returns true for the wildcard.
func (e *evaluator) unrelatedTXT(name string, other []string, haveRecord bool) (wildcard bool) {
	probe := e.o.DNS.WildcardProbe
	if !haveRecord && probe != nil && probe.Status == resolve.StatusOK && sameSet(probe.TXT(), other) {
		e.add(finding.STSRecordWildcard, finding.Warning, name,
			fmt.Sprintf("A zone wildcard answers %s with %s (the same answer comes for any name under %s); there is no MTA-STS record.", name, quoteList(other, 3), e.o.Domain),
			e.fixText(finding.STSRecordWildcard))
		return true
	}
	what := "unrelated TXT " + plural(len(other), "record", "records") + " " + quoteList(other, 3)
	if slices.ContainsFunc(other, func(t string) bool { return strings.HasPrefix(strings.ToLower(t), "v=spf1") }) {
		what = "an SPF record (" + quoteList(other, 3) + "), which belongs at " + e.o.Domain
	}
	if haveRecord {
		e.add(finding.STSRecordUnrelatedTXT, finding.Warning, name,
			fmt.Sprintf("%s also has %s. RFC 8461 senders ignore it, but go-mtasts (maddy) then finds no policy and checkdmarc reports an error.", name, what),
			e.fixText(finding.STSRecordUnrelatedTXT))
		return false
	}
	e.add(finding.STSRecordUnrelatedTXT, finding.Warning, name,
		fmt.Sprintf("%s has %s but no MTA-STS record.", name, what), e.fixText(finding.STSRecordUnrelatedTXT))
	return false
}

// misplacedRecords reports MTA-STS records at the apex or at the draft-era
// name _mta_sts (STS-TXT-1, MISC-32) and returns whether there was one.
func (e *evaluator) misplacedRecords(state recState) (found bool) {
	sev := finding.Error
	if state == recValid {
		sev = finding.Warning
	}
	if a := e.o.DNS.Apex; a != nil && a.Status == resolve.StatusOK {
		for _, t := range a.TXT() {
			if mtasts.LooksLikeRecord(t) {
				found = true
				e.add(finding.STSRecordAtApex, sev, e.o.Domain,
					fmt.Sprintf("%s itself has the TXT record %q; senders only look at _mta-sts.%s, so this record is never used.", e.o.Domain, t, e.o.Domain),
					e.fixText(finding.STSRecordAtApex))
			}
		}
	}
	if a := e.o.DNS.STSDraft; a != nil && a.Status == resolve.StatusOK {
		for _, t := range a.TXT() {
			if mtasts.LooksLikeRecord(t) {
				found = true
				e.add(finding.STSRecordDraftName, sev, "_mta_sts."+e.o.Domain,
					fmt.Sprintf("_mta_sts.%s (underscore) has the TXT record %q; senders only look at _mta-sts.%s (hyphen).", e.o.Domain, t, e.o.Domain),
					e.fixText(finding.STSRecordDraftName))
			}
		}
	}
	return found
}

// sortTXT splits the TXT records at a name into those that pass the
// sender's filter, those meant as such a record but broken, and the others.
func sortTXT(txts []string, isCandidate, looksLike func(string) bool) (cands, loose, other []string) {
	for _, t := range txts {
		switch {
		case isCandidate(t):
			cands = append(cands, t)
		case looksLike(t):
			loose = append(loose, t)
		default:
			other = append(other, t)
		}
	}
	return cands, loose, other
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
