package check

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
)

// senders compares how real senders read the domain's record and policy
// with RFC 8461 (spec-checklist §H). Only a response a sender would accept
// is compared: transport failures are the same for every sender. A
// response no sender can read because of its content coding is compared
// too, since senders decode differently (issue 8 #5).
//
// v is the fetch a sender would use (nil when none); the views are
// returned, the RFC 8461 reading first.
func (e *evaluator) senders(rec recState, v *fetchView, file fileVerdict) []mtasts.SenderView {
	sts := e.o.DNS.STS
	if v == nil || v.r.Status != 200 || v.r.Error != "" || sts == nil || rec == recAbsent || rec == recUndetermined {
		return nil
	}
	if !(v.usable && file.parsed != nil) && !(v.codingFailed && onlyCodingFails(v)) {
		return nil
	}
	in := mtasts.SenderInput{TXT: sts.TXT(), ContentEncoding: v.r.Header["Content-Encoding"], Body: v.r.Body, TooLarge: v.r.TooLarge}
	in.ContentType, in.HasContentType = v.r.Header["Content-Type"]
	for _, x := range v.r.Encoded {
		if in.Encoded == nil {
			in.Encoded = map[string]*mtasts.Response{}
		}
		resp := &mtasts.Response{Status: x.Status, ContentEncoding: x.Header["Content-Encoding"], Body: x.Body, TooLarge: x.TooLarge, Failed: x.Error}
		resp.ContentType, resp.HasContentType = x.Header["Content-Type"]
		in.Encoded[x.AcceptEncoding] = resp
	}
	views := mtasts.SenderViews(in)
	rfc := views[0]
	var diffs, reasons []string
	coding := map[string][]string{} // reason -> senders
	for _, s := range views[1:] {
		switch {
		case s.FailedOnCoding():
			if coding[s.Reason] == nil {
				reasons = append(reasons, s.Reason)
			}
			coding[s.Reason] = append(coding[s.Reason], s.Sender)
		case s.Same(rfc):
		default:
			diffs = append(diffs, s.Sender+": "+describeDiff(s, rfc))
		}
	}
	if len(reasons) > 0 {
		var parts []string
		for _, why := range reasons {
			parts = append(parts, strings.Join(coding[why], ", ")+": "+why)
		}
		e.add(finding.PolicyContentEncoding, finding.Error, e.o.PolicyHost,
			"Some senders cannot read the policy because of its content coding and find no policy. "+strings.Join(parts, "; ")+".",
			e.fixText(finding.PolicyContentEncoding))
	}
	if len(diffs) > 0 {
		e.add(finding.PolicySenderDivergence, finding.Warning, e.o.PolicyHost,
			"Not every sender reads this policy as RFC 8461 does. "+strings.Join(diffs, "; ")+".",
			e.fixText(finding.PolicySenderDivergence))
	}
	return views
}

// onlyCodingFails reports whether the content coding is the only reason
// the fetch is unusable.
func onlyCodingFails(v *fetchView) bool {
	for _, p := range v.problems {
		if p.sev == finding.Error && p.id != finding.PolicyContentEncoding {
			return false
		}
	}
	return true
}

func describeDiff(s, rfc mtasts.SenderView) string {
	switch {
	case !s.Applies && rfc.Applies:
		return "no policy, because " + s.Reason
	case s.Applies && !rfc.Applies:
		return fmt.Sprintf("applies mode %s although RFC 8461 senders ignore the policy", s.Mode)
	}
	var parts []string
	if s.Mode != rfc.Mode {
		parts = append(parts, fmt.Sprintf("mode %s instead of %s", s.Mode, rfc.Mode))
	}
	if s.MaxAge != rfc.MaxAge {
		parts = append(parts, fmt.Sprintf("max_age %d instead of %d", s.MaxAge, rfc.MaxAge))
	}
	if !slices.EqualFunc(s.MX, rfc.MX, strings.EqualFold) {
		parts = append(parts, fmt.Sprintf("mx %s instead of %s", quoteList(s.MX, 4), quoteList(rfc.MX, 4)))
	}
	return strings.Join(parts, ", ")
}
