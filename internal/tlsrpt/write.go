package tlsrpt

import (
	"encoding/json"
	"time"
)

// JSON types in RFC 8460 §4.4 form, for writing.
type (
	wireReport struct {
		OrganizationName string      `json:"organization-name"`
		DateRange        wireRange   `json:"date-range"`
		ContactInfo      *string     `json:"contact-info"`
		ReportID         string      `json:"report-id"`
		Policies         []wireEntry `json:"policies"`
	}
	wireRange struct {
		Start string `json:"start-datetime"`
		End   string `json:"end-datetime"`
	}
	wireEntry struct {
		Policy         wirePolicy   `json:"policy"`
		Summary        wireSummary  `json:"summary"`
		FailureDetails []wireDetail `json:"failure-details,omitempty"`
	}
	wirePolicy struct {
		Type   string   `json:"policy-type"`
		String []string `json:"policy-string,omitempty"`
		Domain string   `json:"policy-domain,omitempty"`
		MXHost []string `json:"mx-host,omitempty"`
	}
	wireSummary struct {
		Successful int64 `json:"total-successful-session-count"`
		Failed     int64 `json:"total-failure-session-count"`
	}
	wireDetail struct {
		ResultType          string `json:"result-type"`
		SendingMTAIP        string `json:"sending-mta-ip,omitempty"`
		ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
		ReceivingMXHelo     string `json:"receiving-mx-helo,omitempty"`
		ReceivingIP         string `json:"receiving-ip,omitempty"`
		FailedSessions      int64  `json:"failed-session-count"`
		AdditionalInfo      string `json:"additional-information,omitempty"`
		FailureReasonCode   string `json:"failure-reason-code,omitempty"`
	}
)

// MarshalRFC writes r as RFC 8460 §4.4 JSON: what a conforming sender
// sends. Tests build reports with it, and [Parse] reads its output back to
// the same Report (notes aside).
func (r *Report) MarshalRFC() ([]byte, error) {
	w := wireReport{
		OrganizationName: r.OrganizationName,
		DateRange:        wireRange{Start: r.Start.UTC().Format(time.RFC3339Nano), End: r.End.UTC().Format(time.RFC3339Nano)},
		ReportID:         r.ReportID,
		Policies:         []wireEntry{},
	}
	if r.ContactInfo != "" {
		c := r.ContactInfo
		w.ContactInfo = &c
	}
	for _, p := range r.Policies {
		e := wireEntry{
			Policy:  wirePolicy{Type: string(p.Type), String: p.Strings, Domain: p.Domain, MXHost: p.MXHost},
			Summary: wireSummary{Successful: p.Successful, Failed: p.Failed},
		}
		for _, d := range p.Failures {
			e.FailureDetails = append(e.FailureDetails, wireDetail{
				ResultType: string(d.ResultType), SendingMTAIP: d.SendingMTAIP,
				ReceivingMXHostname: d.ReceivingMXHostname, ReceivingMXHelo: d.ReceivingMXHelo,
				ReceivingIP: d.ReceivingIP, FailedSessions: d.FailedSessions,
				AdditionalInfo: d.AdditionalInfo, FailureReasonCode: d.FailureReasonCode,
			})
		}
		w.Policies = append(w.Policies, e)
	}
	return json.Marshal(w)
}
