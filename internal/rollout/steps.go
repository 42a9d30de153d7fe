package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// PromoteOptions control Promote.
type PromoteOptions struct {
	MaxAge int64 // 0: the current max_age, raised to at least EnforceMaxAge
	Force  bool  // print the enforce policy even when not ready, with the reasons as warnings
	Now    time.Time
}

// blocking are the components whose errors make a policy unsafe to enforce.
var blocking = []finding.Component{finding.ComponentRecord, finding.ComponentPolicyHost, finding.ComponentPolicy, finding.ComponentMX, finding.ComponentSMTP, finding.ComponentDANE}

// Promote checks that a domain in testing mode is ready for enforce —
// every MX host covered by a pattern and every address passing STARTTLS and
// certificate checks (RFC 8461 §5) — and builds the enforce policy and the
// record with a new id. It refuses, with the reasons, unless ready or
// forced.
func Promote(r *check.Report, o PromoteOptions) *Output {
	out := &Output{Domain: r.Domain, Command: "promote"}
	switch r.Status {
	case check.StatusTesting:
	case check.StatusEnforce:
		out.Refused = true
		out.Reasons = []string{fmt.Sprintf("%s already publishes an enforce policy (id %s); nothing to promote", r.Domain, r.PolicyID)}
		return out
	case check.StatusNone:
		out.Reasons = append(out.Reasons, "the policy's mode is none: go through testing first (mailtls policy init) so that reports show problems before senders enforce")
	default:
		out.Refused = true
		out.Reasons = []string{fmt.Sprintf("there is no testing policy to promote (%s: %s); start with: mailtls policy init %s", r.Status, r.StatusReason, r.Domain)}
		return out
	}
	pol := r.Policy
	for _, m := range r.MX {
		if m.Covered != nil && !*m.Covered {
			out.Reasons = append(out.Reasons, fmt.Sprintf("the MX host %s matches no mx pattern: senders would refuse it", m.Host))
		}
		if len(m.Addresses) == 0 {
			out.Reasons = append(out.Reasons, fmt.Sprintf("the MX host %s was not probed over SMTP (no address, or --no-smtp), so it is not known to pass", m.Host))
		}
		for _, a := range m.Addresses {
			if a.Pass {
				continue
			}
			why := a.CertError
			if a.Probe != nil && a.Probe.Class != "" {
				why = a.Probe.Error
			}
			if ok, w := check.ProbeVerdict(a.Probe, pol.MX); !ok && w != "" {
				why = w
			}
			out.Reasons = append(out.Reasons, fmt.Sprintf("%s (%s) does not pass: %s", m.Host, a.IP, why))
		}
	}
	for _, f := range r.Findings {
		if f.Severity == finding.Error && slices.Contains(blocking, f.Component) && f.ID != finding.MXNotCovered && !strings.HasPrefix(string(f.ID), "smtp-") {
			out.Reasons = append(out.Reasons, fmt.Sprintf("%s: %s", f.ID, f.Message))
		}
	}
	if len(out.Reasons) > 0 && !o.Force {
		out.Refused = true
		return out
	}
	out.Warnings, out.Reasons = out.Reasons, nil
	if r.TLSRPT == nil || len(r.TLSRPT.Usable) == 0 {
		out.Warnings = append(out.Warnings, "there is no working TLS-RPT record, so you will not hear about delivery failures under enforce")
	}

	next := *pol
	next.MX = slices.Clone(pol.MX)
	next.Mode = mtasts.ModeEnforce
	switch {
	case o.MaxAge > 0:
		next.MaxAge = o.MaxAge
	case next.MaxAge < EnforceMaxAge:
		next.MaxAge = EnforceMaxAge
	}
	id := mtasts.NewID(o.Now, r.PolicyID)
	until := o.Now.Add(time.Duration(pol.MaxAge) * time.Second)
	out.Stages = []Stage{
		Stage{At: o.Now, Title: "Switch to enforce",
			Text:    "Serve the new policy file first, then publish the TXT record with the new id: senders fetch the new policy when they see it.",
			Records: []Record{stsRecord(r.Domain, id)}}.withPolicy(r.Domain, &next),
		{At: until, Title: "Every sender enforces",
			Text: fmt.Sprintf("Senders that cached the testing policy keep it until they see the new id, at the latest until its max_age (%s) has passed. Check with: mailtls check %s", human(pol.MaxAge), r.Domain)},
	}
	return out
}

// RetireOptions control Retire.
type RetireOptions struct {
	// PreviousMaxAge is the largest max_age published before the current
	// policy, when it was larger (the scan sees only the current one).
	PreviousMaxAge int64
	Now            time.Time
}

// Retire builds the safe withdrawal of MTA-STS (RFC 8461 §8.3): serve a
// "mode: none" policy under a new id, then remove the records and the
// policy host only when every policy that senders may have cached has
// expired.
func Retire(r *check.Report, o RetireOptions) *Output {
	out := &Output{Domain: r.Domain, Command: "retire"}
	largest := o.PreviousMaxAge
	var patterns []string
	switch {
	case r.Policy != nil:
		largest = max(largest, r.Policy.MaxAge)
		patterns = r.Policy.MX
	case r.Status == check.StatusAbsent && o.PreviousMaxAge == 0:
		out.Refused = true
		out.Reasons = []string{fmt.Sprintf("%s publishes no MTA-STS record, so there is nothing to retire (if it did until recently, give the largest max_age it had with --previous-max-age)", r.Domain)}
		return out
	default:
		if largest == 0 {
			largest = mtasts.MaxMaxAge
			out.Warnings = append(out.Warnings, fmt.Sprintf("the current policy cannot be read (%s: %s), so mailtls assumes senders cached a policy for the longest max_age allowed, one year; give --previous-max-age if you know it", r.Status, r.StatusReason))
		}
	}
	none := &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeNone, MaxAge: InitialMaxAge, MX: slices.Clone(patterns)}
	id := mtasts.NewID(o.Now, r.PolicyID)
	remove := o.Now.Add(time.Duration(largest)*time.Second + Margin)
	var dels []Record
	for _, d := range []struct{ name, typ string }{{"_mta-sts." + r.Domain, "TXT"}, {"mta-sts." + r.Domain, "A/AAAA/CNAME"}} {
		dels = append(dels, Record{Action: "delete", Name: d.name, Type: d.typ})
	}
	dels[0].Value = mtasts.VersionTag + "; id=" + id
	out.Stages = []Stage{
		Stage{At: o.Now, Title: "Serve mode none",
			Text:    "Serve this policy first, then publish the TXT record with the new id. Senders that see the new id fetch it and stop applying the old policy at once.",
			Records: []Record{stsRecord(r.Domain, id)}}.withPolicy(r.Domain, none),
		{At: remove, Title: "Remove MTA-STS",
			Text:    fmt.Sprintf("Earliest safe removal: a sender may have fetched the current policy just before you published mode none, and may keep it for its max_age (%s) without looking at DNS again; only after that (plus %s of margin) has every sender either fetched the none policy or let the old one expire. Then delete the _mta-sts record and stop serving the policy host (the TLS-RPT record may stay).", human(largest), human(int64(Margin/time.Second))),
			Records: dels},
	}
	return out
}

// PlanOptions control Plan.
type PlanOptions struct {
	Add, Remove []string
	// Probes are SMTP probes of the added hosts (every address), to warn
	// when they would fail today; nil when they could not be probed.
	Probes map[string][]*smtpprobe.Result
	Now    time.Time
}

// Plan builds an MX migration (RFC 8461 §8.1, §8.4): first add the new
// hosts to the policy under a new id; switch the MX records only when every
// cached copy of the old policy has expired; then drop the old hosts'
// patterns under another new id once the old MX records have left resolver
// caches. It returns a *RefusedError when no policy is in effect or no
// change is asked for.
func Plan(r *check.Report, o PlanOptions) (*Output, error) {
	out := &Output{Domain: r.Domain, Command: "plan"}
	if r.Policy == nil {
		return nil, refuse("%s has no policy in effect (%s: %s); plan the MX change without MTA-STS, or start with mailtls policy init", r.Domain, r.Status, r.StatusReason)
	}
	if len(o.Add) == 0 && len(o.Remove) == 0 {
		return nil, refuse("name the MX hosts to add (--add-mx) or remove (--remove-mx)")
	}
	cur := r.Policy
	current := map[string]bool{}
	for _, m := range r.MX {
		current[m.Host] = true
	}
	for _, h := range o.Remove {
		if !current[h] {
			out.Warnings = append(out.Warnings, fmt.Sprintf("%s is not an MX host of %s today", h, r.Domain))
		}
	}
	for _, h := range o.Add {
		if current[h] {
			out.Warnings = append(out.Warnings, fmt.Sprintf("%s is already an MX host of %s", h, r.Domain))
		}
	}

	// Stage 1: the policy covers old and new hosts.
	first := *cur
	first.MX = slices.Clone(cur.MX)
	for _, p := range Patterns(o.Add) {
		if !slices.ContainsFunc(first.MX, func(q string) bool { return strings.EqualFold(p, q) }) {
			first.MX = append(first.MX, p)
		}
	}
	for _, h := range o.Add {
		probes, ok := o.Probes[h]
		if !ok || len(probes) == 0 {
			out.Warnings = append(out.Warnings, fmt.Sprintf("%s could not be checked over SMTP today (no address yet? test it before DNS points at it with --connect-to %s:25:ADDR:25)", h, h))
			continue
		}
		for _, p := range probes {
			if ok, why := check.ProbeVerdict(p, first.MX); !ok {
				out.Warnings = append(out.Warnings, fmt.Sprintf("the new MX %s (%s) fails today: %s; under %s senders would not deliver to it", h, p.Address, why, cur.Mode))
			}
		}
	}
	id1 := mtasts.NewID(o.Now, r.PolicyID)
	switchAt := o.Now.Add(time.Duration(cur.MaxAge)*time.Second + Margin)
	why := fmt.Sprintf("Senders may keep the current policy (without the new hosts) for its max_age of %s; under enforce they would refuse the new hosts until then.", human(cur.MaxAge))
	if cur.Mode != mtasts.ModeEnforce {
		why = fmt.Sprintf("In %s mode senders do not refuse hosts, so you may switch earlier; under enforce you would have to wait for the max_age of %s.", cur.Mode, human(cur.MaxAge))
	}
	var mxRecs []Record
	for i, h := range o.Add {
		mxRecs = append(mxRecs, Record{Action: "publish", Name: r.Domain, Type: "MX", TTL: RecordTTL, Value: fmt.Sprintf("%d %s.", 10*(i+1), h),
			Placeholder: "choose the preference that fits your setup"})
	}
	for _, h := range o.Remove {
		for _, m := range r.MX {
			if m.Host == h {
				mxRecs = append(mxRecs, Record{Action: "delete", Name: r.Domain, Type: "MX", Value: fmt.Sprintf("%d %s.", m.Preference, h)})
			}
		}
	}

	// Stage 3: drop the patterns only the removed hosts needed.
	keep := map[string]bool{}
	for _, m := range r.MX {
		if slices.Contains(o.Remove, m.Host) {
			continue
		}
		if pat, ok := first.Match(m.Host); ok {
			keep[strings.ToLower(pat)] = true
		}
	}
	for _, h := range o.Add {
		if pat, ok := first.Match(h); ok {
			keep[strings.ToLower(pat)] = true
		}
	}
	last := first
	last.MX = nil
	for _, p := range first.MX {
		if keep[strings.ToLower(p)] {
			last.MX = append(last.MX, p)
		}
	}
	mxTTL := int64(3600)
	if ev := r.Evidence; ev != nil && ev.DNS.MX != nil && ev.DNS.MX.MinTTL() > 0 {
		mxTTL = int64(ev.DNS.MX.MinTTL())
	}
	cleanAt := switchAt.Add(time.Duration(mxTTL)*time.Second + Margin)
	id3 := mtasts.NewID(cleanAt, id1)

	out.Stages = []Stage{
		Stage{At: o.Now, Title: "Add the new MX hosts to the policy",
			Text:    "Serve this policy (old and new hosts), then publish the TXT record with the new id.",
			Records: []Record{stsRecord(r.Domain, id1)}}.withPolicy(r.Domain, &first),
		{At: switchAt, Title: "Switch the MX records", Text: why, Records: mxRecs},
	}
	if !first.Equal(&last) {
		out.Stages = append(out.Stages, Stage{At: cleanAt, Title: "Remove the old hosts from the policy",
			Text:    fmt.Sprintf("Once the old MX records have left resolver caches (TTL %s) no sender uses the old hosts; serve this policy, then publish the TXT record with the new id.", human(mxTTL)),
			Records: []Record{stsRecord(r.Domain, id3)}}.withPolicy(r.Domain, &last))
	}
	return out, nil
}

// human renders seconds as days or hours for messages.
func human(secs int64) string {
	switch {
	case secs >= 86400 && secs%86400 == 0:
		if secs == 86400 {
			return "1 day"
		}
		return fmt.Sprintf("%d days", secs/86400)
	case secs >= 86400:
		return fmt.Sprintf("%.1f days", float64(secs)/86400)
	case secs >= 3600:
		return fmt.Sprintf("%.1f hours", float64(secs)/3600)
	}
	return fmt.Sprintf("%d seconds", secs)
}
