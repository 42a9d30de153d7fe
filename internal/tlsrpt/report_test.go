package tlsrpt

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rfcExample is RFC 8460 Appendix B with erratum 6241 applied (mx-host an
// array) and the URL unbroken.
const rfcExample = `{
  "organization-name": "Company-X",
  "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
  "contact-info": "sts-reporting@company-x.example",
  "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
  "policies": [{
    "policy": {
      "policy-type": "sts",
      "policy-string": ["version: STSv1","mode: testing","mx: *.mail.company-y.example","max_age: 86400"],
      "policy-domain": "company-y.example",
      "mx-host": ["*.mail.company-y.example"]
    },
    "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
    "failure-details": [
      {"result-type": "certificate-expired", "sending-mta-ip": "2001:db8:abcd:0012::1",
       "receiving-mx-hostname": "mx1.mail.company-y.example", "failed-session-count": 100},
      {"result-type": "starttls-not-supported", "sending-mta-ip": "2001:db8:abcd:0013::1",
       "receiving-mx-hostname": "mx2.mail.company-y.example", "receiving-ip": "203.0.113.56",
       "failed-session-count": 200,
       "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"},
      {"result-type": "validation-failure", "sending-mta-ip": "198.51.100.62", "receiving-ip": "203.0.113.58",
       "receiving-mx-hostname": "mx-backup.mail.company-y.example", "failed-session-count": 3,
       "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"}
    ]
  }]
}`

func mustParse(t *testing.T, js string, o *Options) *Report {
	t.Helper()
	r, err := ParseJSON([]byte(js), o)
	if err != nil {
		t.Fatalf("ParseJSON: %v\n%s", err, js)
	}
	return r
}

func noteCodes(r *Report) []NoteCode {
	var out []NoteCode
	for _, n := range r.Notes {
		out = append(out, n.Code)
	}
	return out
}

// mutate applies f to the report JSON as generic values.
func mutate(t *testing.T, js string, f func(m map[string]any)) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pol(m map[string]any, i int) map[string]any {
	return m["policies"].([]any)[i].(map[string]any)["policy"].(map[string]any)
}

func entryOf(m map[string]any, i int) map[string]any {
	return m["policies"].([]any)[i].(map[string]any)
}

func detailOf(m map[string]any, i, j int) map[string]any {
	return entryOf(m, i)["failure-details"].([]any)[j].(map[string]any)
}

// RFC 8460 §4.4 and Appendix B: every value of the example is read.
func TestParseRFCExample(t *testing.T) {
	r := mustParse(t, rfcExample, nil)
	if len(r.Notes) != 0 {
		t.Errorf("notes on the RFC example: %+v", r.Notes)
	}
	want := Report{
		OrganizationName: "Company-X",
		ContactInfo:      "sts-reporting@company-x.example",
		ReportID:         "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
		Start:            time.Date(2016, 4, 1, 0, 0, 0, 0, time.UTC),
		End:              time.Date(2016, 4, 1, 23, 59, 59, 0, time.UTC),
		Policies: []Policy{{
			Type: PolicySTS, Domain: "company-y.example",
			Strings:    []string{"version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"},
			MXHost:     []string{"*.mail.company-y.example"},
			MXPatterns: []string{"*.mail.company-y.example"}, MXSource: "mx-host",
			Successful: 5326, Failed: 303, DetailsFailed: 303,
			Failures: []FailureDetail{
				{ResultType: CertificateExpired, SendingMTAIP: "2001:db8:abcd:12::1", ReceivingMXHostname: "mx1.mail.company-y.example", FailedSessions: 100},
				{ResultType: STARTTLSNotSupported, SendingMTAIP: "2001:db8:abcd:13::1", ReceivingMXHostname: "mx2.mail.company-y.example", ReceivingIP: "203.0.113.56", FailedSessions: 200,
					AdditionalInfo: "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"},
				{ResultType: ValidationFailure, SendingMTAIP: "198.51.100.62", ReceivingIP: "203.0.113.58", ReceivingMXHostname: "mx-backup.mail.company-y.example", FailedSessions: 3,
					FailureReasonCode: "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"},
			},
		}},
	}
	if !reflect.DeepEqual(*r, want) {
		got, _ := json.MarshalIndent(r, "", " ")
		t.Errorf("got %s", got)
	}
	if p := r.Policies[0].STS(); p == nil || p.Policy == nil || p.Policy.Mode != "testing" {
		t.Errorf("STS() = %+v", p)
	}
}

// The quirks of tlsrpt-landscape.md §2.1 and §2.4, each built from the RFC
// example: the report is accepted whole, the value read as the sender
// meant it, and the deviation noted.
func TestParseQuirks(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(m map[string]any)
		hints Hints
		check func(t *testing.T, r *Report)
		notes []NoteCode
	}{
		{
			name: "A-3 datetimes without zone (Microsoft 2023) read as UTC",
			edit: func(m map[string]any) {
				m["date-range"] = map[string]any{"start-datetime": "2016-04-01T00:00:00", "end-datetime": "2016-04-01T23:59:59"}
			},
			check: func(t *testing.T, r *Report) {
				if !r.Start.Equal(time.Date(2016, 4, 1, 0, 0, 0, 0, time.UTC)) || r.Start.Location() != time.UTC {
					t.Errorf("start %v", r.Start)
				}
			},
			notes: []NoteCode{NoteDateNoZone, NoteDateNoZone},
		},
		{
			name: "offset datetimes converted to UTC",
			edit: func(m map[string]any) {
				m["date-range"] = map[string]any{"start-datetime": "2016-04-01T02:00:00+02:00", "end-datetime": "2016-04-02T01:59:59+02:00"}
			},
			check: func(t *testing.T, r *Report) {
				if r.Start != time.Date(2016, 4, 1, 0, 0, 0, 0, time.UTC) {
					t.Errorf("start %v", r.Start)
				}
			},
		},
		{
			name: "end = next day 00:00:00Z is one day",
			edit: func(m map[string]any) {
				m["date-range"] = map[string]any{"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-02T00:00:00Z"}
			},
		},
		{
			name: "space and lower-case z accepted",
			edit: func(m map[string]any) {
				m["date-range"] = map[string]any{"start-datetime": "2016-04-01 00:00:00z", "end-datetime": "2016-04-01T23:59:59Z"}
			},
			notes: []NoteCode{NoteDateFormat},
		},
		{
			name: "missing end taken as one day",
			edit: func(m map[string]any) {
				m["date-range"] = map[string]any{"start-datetime": "2016-04-01T00:00:00Z"}
			},
			check: func(t *testing.T, r *Report) {
				if r.End != time.Date(2016, 4, 2, 0, 0, 0, 0, time.UTC) {
					t.Errorf("end %v", r.End)
				}
			},
			notes: []NoteCode{NoteDateFormat},
		},
		{
			name:  "missing date range taken from the RFC 8460 §5.1 file name",
			edit:  func(m map[string]any) { delete(m, "date-range") },
			hints: Hints{FileName: "mail.sndr.example!company-y.example!1459468800!1459555199!001.json.gz"},
			check: func(t *testing.T, r *Report) {
				if r.Start != time.Date(2016, 4, 1, 0, 0, 0, 0, time.UTC) || r.End != time.Date(2016, 4, 1, 23, 59, 59, 0, time.UTC) {
					t.Errorf("range %v %v", r.Start, r.End)
				}
			},
			notes: []NoteCode{NoteDateFormat},
		},
		{
			name: "a week-long range is kept and noted",
			edit: func(m map[string]any) {
				m["date-range"] = map[string]any{"start-datetime": "2020-01-01T00:00:00Z", "end-datetime": "2020-01-07T23:59:59Z"}
			},
			notes: []NoteCode{NoteDateNotOneDay},
		},
		{
			name: "A-4 mx-host as a string (Appendix B, erratum 6241)",
			edit: func(m map[string]any) { pol(m, 0)["mx-host"] = "*.mail.company-y.example" },
			check: func(t *testing.T, r *Report) {
				wantPatterns(t, r, []string{"*.mail.company-y.example"}, "mx-host")
			},
			notes: []NoteCode{NoteMXHostString},
		},
		{
			name: "A-4 mx-host absent (Microsoft, Google before 2022): patterns from policy-string",
			edit: func(m map[string]any) { delete(pol(m, 0), "mx-host") },
			check: func(t *testing.T, r *Report) {
				wantPatterns(t, r, []string{"*.mail.company-y.example"}, "policy-string")
			},
			notes: []NoteCode{NoteMXHostMissing},
		},
		{
			name: "A-4 mx-host [] (SocketLabs, Stalwart): patterns from policy-string",
			edit: func(m map[string]any) { pol(m, 0)["mx-host"] = []any{} },
			check: func(t *testing.T, r *Report) {
				wantPatterns(t, r, []string{"*.mail.company-y.example"}, "policy-string")
			},
			notes: []NoteCode{NoteMXHostMissing},
		},
		{
			name: "mx-host elements with the policy's mx: key (a Stalwart sender)",
			edit: func(m map[string]any) { pol(m, 0)["mx-host"] = []any{"mx: *.mail.company-y.example"} },
			check: func(t *testing.T, r *Report) {
				wantPatterns(t, r, []string{"*.mail.company-y.example"}, "mx-host")
			},
			notes: []NoteCode{NoteMXHostPrefix},
		},
		{
			name: "mx-host and policy-string disagree: mx-host used",
			edit: func(m map[string]any) { pol(m, 0)["mx-host"] = []any{"mx9.company-y.example"} },
			check: func(t *testing.T, r *Report) {
				wantPatterns(t, r, []string{"mx9.company-y.example"}, "mx-host")
			},
			notes: []NoteCode{NoteMXHostDisagrees},
		},
		{
			name: "policy-string lines in served order, without blanks after the colon",
			edit: func(m map[string]any) {
				pol(m, 0)["policy-string"] = []any{"version:STSv1", "max_age:86400", "mode:testing", "mx:*.mail.company-y.example"}
				delete(pol(m, 0), "mx-host")
			},
			check: func(t *testing.T, r *Report) {
				wantPatterns(t, r, []string{"*.mail.company-y.example"}, "policy-string")
			},
			notes: []NoteCode{NoteMXHostMissing},
		},
		{
			name: "policy-string elements ending in CR (Google 2022, a CRLF policy file)",
			edit: func(m map[string]any) {
				pol(m, 0)["policy-string"] = []any{"version: STSv1\r", "mode: enforce\r", "max_age: 2419200\r", "mx: *.mail.company-y.example\r"}
			},
			check: func(t *testing.T, r *Report) {
				for _, s := range r.Policies[0].Strings {
					if strings.Contains(s, "\r") {
						t.Errorf("CR kept in %q", s)
					}
				}
				if r.Policies[0].STS().Policy == nil {
					t.Errorf("policy-string does not parse: %+v", r.Policies[0].STS().Problems)
				}
			},
			notes: []NoteCode{NotePolicyStringCR},
		},
		{
			name: "no policy-string and details without IPs or host (Microsoft and Mail.ru fetch errors)",
			edit: func(m map[string]any) {
				p := pol(m, 0)
				delete(p, "policy-string")
				delete(p, "mx-host")
				e := entryOf(m, 0)
				e["summary"] = map[string]any{"total-successful-session-count": 0, "total-failure-session-count": 3}
				e["failure-details"] = []any{map[string]any{"result-type": "sts-policy-fetch-error", "failed-session-count": 3}}
			},
			check: func(t *testing.T, r *Report) {
				d := r.Policies[0].Failures[0]
				if d.SendingMTAIP != "" || d.ReceivingMXHostname != "" || d.FailedSessions != 3 || d.ResultType != STSPolicyFetchError {
					t.Errorf("detail %+v", d)
				}
				if len(r.Policies[0].MXPatterns) != 0 {
					t.Errorf("patterns %v", r.Policies[0].MXPatterns)
				}
			},
			notes: []NoteCode{NoteSendingIPMissing, NoteMXHostnameMissing, NotePolicyStringMissing, NoteMXHostMissing},
		},
		{
			name: "A-6 contact-info null (Stalwart)",
			edit: func(m map[string]any) { m["contact-info"] = nil },
			check: func(t *testing.T, r *Report) {
				if r.ContactInfo != "" || r.OrganizationName != "Company-X" {
					t.Errorf("contact %q org %q", r.ContactInfo, r.OrganizationName)
				}
			},
			notes: []NoteCode{NoteContactMissing},
		},
		{
			name: "A-6 no-policy-found without policy-domain: TLS-Report-Domain stands in (Postfix before sys4 #51)",
			edit: func(m map[string]any) {
				m["policies"] = []any{map[string]any{
					"policy":          map[string]any{"policy-type": "no-policy-found"},
					"summary":         map[string]any{"total-successful-session-count": 1, "total-failure-session-count": 0},
					"failure-details": []any{},
				}}
			},
			hints: Hints{ReportDomain: "Company-Y.example"},
			check: func(t *testing.T, r *Report) {
				p := r.Policies[0]
				if p.Type != PolicyNotFound || p.Domain != "company-y.example" || p.Successful != 1 {
					t.Errorf("policy %+v", p)
				}
			},
			notes: []NoteCode{NotePolicyDomainMissing},
		},
		{
			name: "no-policy-found without policy-domain, domain from the file name",
			edit: func(m map[string]any) {
				m["policies"] = []any{map[string]any{
					"policy":  map[string]any{"policy-type": "no-policy-found"},
					"summary": map[string]any{"total-successful-session-count": 1, "total-failure-session-count": 0},
				}}
			},
			hints: Hints{FileName: "sender.example!company-y.example!1459468800!1459555199.json"},
			check: func(t *testing.T, r *Report) {
				if r.Policies[0].Domain != "company-y.example" {
					t.Errorf("domain %q", r.Policies[0].Domain)
				}
			},
			notes: []NoteCode{NotePolicyDomainMissing},
		},
		{
			name: "no-policy-found with only type and domain (Google)",
			edit: func(m map[string]any) {
				m["policies"] = []any{map[string]any{
					"policy":  map[string]any{"policy-type": "no-policy-found", "policy-domain": "company-y.example"},
					"summary": map[string]any{"total-successful-session-count": 48, "total-failure-session-count": 0},
				}}
			},
		},
		{
			name: "A-7 summary 1 failure, details add to 2 (Mail.ru): summary shown, gap noted",
			edit: func(m map[string]any) {
				e := entryOf(m, 0)
				e["summary"] = map[string]any{"total-successful-session-count": 0, "total-failure-session-count": 1}
				e["failure-details"] = []any{
					map[string]any{"result-type": "sts-policy-fetch-error", "failed-session-count": 1, "failure-reason-code": "bad https response code: 404"},
					map[string]any{"result-type": "sts-policy-fetch-error", "failed-session-count": 1, "failure-reason-code": "bad https response code: 500"},
				}
			},
			check: func(t *testing.T, r *Report) {
				p := r.Policies[0]
				if p.Failed != 1 || p.DetailsFailed != 2 {
					t.Errorf("failed %d details %d", p.Failed, p.DetailsFailed)
				}
				if p.Failures[0].FailureReasonCode != "bad https response code: 404" {
					t.Errorf("reason %q", p.Failures[0].FailureReasonCode)
				}
			},
			notes: []NoteCode{NoteSendingIPMissing, NoteMXHostnameMissing, NoteTotalsDisagree},
		},
		{
			name: "failure total missing: the details stand in (Stalwart fixture)",
			edit: func(m map[string]any) {
				delete(entryOf(m, 0)["summary"].(map[string]any), "total-failure-session-count")
			},
			check: func(t *testing.T, r *Report) {
				if r.Policies[0].Failed != 303 {
					t.Errorf("failed %d", r.Policies[0].Failed)
				}
			},
			notes: []NoteCode{NoteCountMissing},
		},
		{
			name: "misspelt receiving-mx-host-name (SocketLabs) and draft additional-info-uri",
			edit: func(m map[string]any) {
				d := detailOf(m, 0, 0)
				d["receiving-mx-host-name"] = d["receiving-mx-hostname"]
				delete(d, "receiving-mx-hostname")
				d["additional-info-uri"] = "https://x.example/"
			},
			check: func(t *testing.T, r *Report) {
				d := r.Policies[0].Failures[0]
				if d.ReceivingMXHostname != "mx1.mail.company-y.example" || d.AdditionalInfo != "https://x.example/" {
					t.Errorf("detail %+v", d)
				}
			},
			notes: []NoteCode{NoteKeyAlias, NoteKeyAlias},
		},
		{
			name: "upper-case keys and values",
			edit: func(m map[string]any) {
				m["Organization-Name"] = m["organization-name"]
				delete(m, "organization-name")
				pol(m, 0)["policy-type"] = "STS"
				detailOf(m, 0, 0)["result-type"] = "Certificate-Expired"
			},
			check: func(t *testing.T, r *Report) {
				if r.OrganizationName != "Company-X" || r.Policies[0].Type != PolicySTS || r.Policies[0].Failures[0].ResultType != CertificateExpired {
					t.Errorf("%q %q %q", r.OrganizationName, r.Policies[0].Type, r.Policies[0].Failures[0].ResultType)
				}
			},
			notes: []NoteCode{NoteKeyCase, NoteKeyCase, NoteKeyCase},
		},
		{
			name: "counts as strings and floats, negative counts",
			edit: func(m map[string]any) {
				entryOf(m, 0)["summary"] = map[string]any{"total-successful-session-count": "5326", "total-failure-session-count": 303.0}
				detailOf(m, 0, 0)["failed-session-count"] = -4
			},
			check: func(t *testing.T, r *Report) {
				p := r.Policies[0]
				if p.Successful != 5326 || p.Failed != 303 || p.Failures[0].FailedSessions != 0 {
					t.Errorf("%d %d %d", p.Successful, p.Failed, p.Failures[0].FailedSessions)
				}
			},
			// encoding/json writes 303.0 as 303, so only the string and the negative are noted.
			notes: []NoteCode{NoteCountNotInteger, NoteCountNotInteger, NoteTotalsDisagree},
		},
		{
			name: "unknown result type and policy type kept verbatim",
			edit: func(m map[string]any) {
				detailOf(m, 0, 0)["result-type"] = "Testing"
				m["policies"] = append(m["policies"].([]any), map[string]any{
					"policy":  map[string]any{"policy-type": "invalid-policy-type", "policy-domain": "company-y.example"},
					"summary": map[string]any{"total-successful-session-count": 1, "total-failure-session-count": 0},
				})
			},
			check: func(t *testing.T, r *Report) {
				if r.Policies[0].Failures[0].ResultType != "Testing" || r.Policies[1].Type != "invalid-policy-type" {
					t.Errorf("%q %q", r.Policies[0].Failures[0].ResultType, r.Policies[1].Type)
				}
			},
			notes: []NoteCode{NoteResultTypeUnknown, NotePolicyTypeUnknown},
		},
		{
			name: "empty strings for IPs and host (parsedmarc fixture), bad IP kept",
			edit: func(m map[string]any) {
				d := detailOf(m, 0, 0)
				d["sending-mta-ip"] = ""
				d["receiving-mx-hostname"] = ""
				detailOf(m, 0, 1)["sending-mta-ip"] = "x.x.x.x"
			},
			check: func(t *testing.T, r *Report) {
				if r.Policies[0].Failures[1].SendingMTAIP != "x.x.x.x" {
					t.Errorf("%+v", r.Policies[0].Failures[1])
				}
			},
			notes: []NoteCode{NoteSendingIPMissing, NoteMXHostnameMissing, NoteIPInvalid},
		},
		{
			name: "same policy type and domain twice (Google policy changed mid-day)",
			edit: func(m map[string]any) {
				m["policies"] = append(m["policies"].([]any), m["policies"].([]any)[0])
			},
			notes: []NoteCode{NoteSamePolicyTwice},
		},
		{
			name: "organization-name and report-id missing: contact domain and Message-ID stand in",
			edit: func(m map[string]any) {
				delete(m, "organization-name")
				m["report-id"] = ""
			},
			hints: Hints{MessageID: "<abc@company-x.example>"},
			check: func(t *testing.T, r *Report) {
				if r.OrganizationName != "company-x.example" || r.ReportID != "abc@company-x.example" {
					t.Errorf("org %q id %q", r.OrganizationName, r.ReportID)
				}
			},
			notes: []NoteCode{NoteOrganizationMissing, NoteReportIDMissing},
		},
		{
			name: "U-label policy domain read as A-label (RFC 8460 §4.4)",
			edit: func(m map[string]any) { pol(m, 0)["policy-domain"] = "göpher.test" },
			check: func(t *testing.T, r *Report) {
				if r.Policies[0].Domain != "xn--gpher-jua.test" {
					t.Errorf("domain %q", r.Policies[0].Domain)
				}
			},
			notes: []NoteCode{NotePolicyDomainInvalid},
		},
		{
			name:  "unknown and duplicate keys",
			edit:  func(m map[string]any) { m["x-extra"] = map[string]any{"a": []any{1, 2}} },
			notes: []NoteCode{NoteKeyUnknown},
		},
		{
			name:  "failure-details: [] with failures in the summary",
			edit:  func(m map[string]any) { entryOf(m, 0)["failure-details"] = []any{} },
			notes: []NoteCode{NoteDetailsMissing},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := mutate(t, rfcExample, tt.edit)
			r := mustParse(t, js, &Options{Hints: tt.hints})
			if tt.check != nil {
				tt.check(t, r)
			}
			got := noteCodes(r)
			want := slices.Clone(tt.notes)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("notes %v, want %v\n%+v", got, want, r.Notes)
			}
			for _, n := range r.Notes {
				if n.Text == "" {
					t.Errorf("note without text: %+v", n)
				}
			}
		})
	}
}

func wantPatterns(t *testing.T, r *Report, want []string, source string) {
	t.Helper()
	p := r.Policies[0]
	if !slices.Equal(p.MXPatterns, want) || p.MXSource != source {
		t.Errorf("patterns %q from %q, want %q from %q", p.MXPatterns, p.MXSource, want, source)
	}
}

// a report without zones lands on the same UTC day as with Z.
func TestZonelessSameDay(t *testing.T) {
	z := mustParse(t, rfcExample, nil)
	nz := mustParse(t, strings.ReplaceAll(rfcExample, `:00Z"`, `:00"`), nil)
	nz2 := mustParse(t, strings.ReplaceAll(string(mustJSON(t, nz)), `Z"`, `"`), nil)
	for _, r := range []*Report{nz, nz2} {
		if !r.Start.Equal(z.Start) || r.Start.Format("2006-01-02") != "2016-04-01" {
			t.Errorf("start %v vs %v", r.Start, z.Start)
		}
		if !r.HasNote(NoteDateNoZone) {
			t.Errorf("no datetime-no-zone note: %+v", r.Notes)
		}
	}
}

func mustJSON(t *testing.T, r *Report) []byte {
	t.Helper()
	b, err := r.MarshalRFC()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Microsoft's TLSA policy-string, one element holding a JSON array,
// is read as its separate records; Stalwart's plain records are unchanged.
func TestTLSAPolicyString(t *testing.T) {
	enc := `{"organization-name":"Microsoft Corporation","date-range":{"start-datetime":"2025-05-23T00:00:00Z","end-datetime":"2025-05-23T23:59:59Z"},"contact-info":"tlsrpt-noreply@microsoft.com","report-id":"133925885310113267+random.test","policies":[{"policy":{"policy-type":"tlsa","policy-string":["[\"3 1 1 6007EEE553E85D8DF007A845D19EC343283D4E416E9A33F9EF3040C8B7C285BC\",\"3 1 1 837C773D54C2E2BD71871A3FC352BE8214D5646CBAE5E3091401A7274717998B\"]"],"policy-domain":"random.test"},"summary":{"total-successful-session-count":2,"total-failure-session-count":0}}]}`
	r := mustParse(t, enc, nil)
	want := []string{"3 1 1 6007EEE553E85D8DF007A845D19EC343283D4E416E9A33F9EF3040C8B7C285BC", "3 1 1 837C773D54C2E2BD71871A3FC352BE8214D5646CBAE5E3091401A7274717998B"}
	if !slices.Equal(r.Policies[0].Strings, want) || !r.HasNote(NotePolicyStringTLSA) {
		t.Errorf("strings %q notes %+v", r.Policies[0].Strings, r.Notes)
	}
	plain := strings.Replace(enc, `["[\"3 1 1 6007EEE553E85D8DF007A845D19EC343283D4E416E9A33F9EF3040C8B7C285BC\",\"3 1 1 837C773D54C2E2BD71871A3FC352BE8214D5646CBAE5E3091401A7274717998B\"]"]`,
		`["3 1 1 6007EEE553E85D8DF007A845D19EC343283D4E416E9A33F9EF3040C8B7C285BC","3 1 1 837C773D54C2E2BD71871A3FC352BE8214D5646CBAE5E3091401A7274717998B"]`, 1)
	r2 := mustParse(t, plain, nil)
	if !slices.Equal(r2.Policies[0].Strings, want) || len(r2.Notes) != 0 {
		t.Errorf("plain: %q %+v", r2.Policies[0].Strings, r2.Notes)
	}
}

// The parser refuses only what is not a report (tlsrpt-landscape.md §5.1.2).
func TestParseRefusals(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)
	deepPolicy := `{"date-range":{"start-datetime":"2016-04-01T00:00:00Z"},"policies":[` + strings.Repeat("[", 50000) + strings.Repeat("]", 50000) + `]}`
	tests := []struct {
		name string
		in   string
		want error
		text string
	}{
		{"empty", "", ErrNotReport, "empty"},
		{"array", `[{"policies":[]}]`, ErrNotReport, "JSON object"},
		{"html", `<html>bad gateway</html>`, ErrNotReport, "<html>"},
		{"broken JSON", `{"organization-name": "x",`, ErrMalformed, "ends early"},
		{"syntax error", `{"organization-name" "x"}`, ErrMalformed, "invalid JSON"},
		{"no date range", mutateString(rfcExample, func(m map[string]any) { delete(m, "date-range") }), ErrMalformed, "no usable date range"},
		{"bad dates", mutateString(rfcExample, func(m map[string]any) {
			m["date-range"] = map[string]any{"start-datetime": "yesterday", "end-datetime": "today"}
		}), ErrMalformed, "no usable date range"},
		{"no policies", mutateString(rfcExample, func(m map[string]any) { delete(m, "policies") }), ErrMalformed, "no policies"},
		{"empty policies", mutateString(rfcExample, func(m map[string]any) { m["policies"] = []any{} }), ErrMalformed, "no policy object"},
		{"policies not objects", mutateString(rfcExample, func(m map[string]any) { m["policies"] = []any{1, "x"} }), ErrMalformed, "no policy object"},
		{"deep JSON", deep, ErrMalformed, "deeper than 16"},
		{"deep inside policies", deepPolicy, ErrMalformed, "deeper than 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(strings.NewReader(tt.in), nil)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v containing %q (report %+v)", err, tt.want, tt.text, r)
			}
		})
	}
}

func mutateString(js string, f func(m map[string]any)) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		panic(err)
	}
	f(m)
	b, _ := json.Marshal(m)
	return string(b)
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// §5.1.1: the payload kind is decided by content.
func TestDecodeByContent(t *testing.T) {
	js := []byte(rfcExample)
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	f, _ := zw.Create("report.json.gz")
	f.Write(gz(t, js))
	zw.Close()
	damaged := gz(t, js)
	damaged = damaged[:len(damaged)-4] // no size field: a short trailer
	bad := gz(t, js)
	bad[len(bad)-6] ^= 0xff // CRC
	tests := []struct {
		name  string
		in    []byte
		kind  string
		notes []NoteCode
	}{
		{"json", js, KindJSON, nil},
		{"json after white space", append([]byte("\r\n  "), js...), KindJSON, nil},
		{"gzip", gz(t, js), KindGzip, nil},
		{"gzip in gzip", gz(t, gz(t, js)), KindGzip, []NoteCode{NoteNestedCompression}},
		{"zip holding gzip", zbuf.Bytes(), KindZip, []NoteCode{NoteZip}},
		{"BOM", append([]byte("\xef\xbb\xbf"), js...), KindJSON, []NoteCode{NoteBOM}},
		{"gzip without trailer", damaged, KindGzip, []NoteCode{NoteGzipDamaged}},
		{"gzip with a bad checksum", bad, KindGzip, []NoteCode{NoteGzipDamaged}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, kind, notes, err := Decode(bytes.NewReader(tt.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			if kind != tt.kind {
				t.Errorf("kind %q, want %q", kind, tt.kind)
			}
			var codes []NoteCode
			for _, n := range notes {
				codes = append(codes, n.Code)
			}
			if !slices.Equal(codes, tt.notes) {
				t.Errorf("notes %v, want %v", codes, tt.notes)
			}
			r, err := Parse(bytes.NewReader(tt.in), nil)
			if err != nil {
				t.Fatalf("Parse: %v (decoded %q)", err, out[:min(len(out), 40)])
			}
			if r.Policies[0].Successful != 5326 {
				t.Errorf("successful %d", r.Policies[0].Successful)
			}
		})
	}
	if _, _, _, err := Decode(bytes.NewReader([]byte("PK\x03\x04garbage")), nil); !errors.Is(err, ErrNotReport) {
		t.Errorf("broken zip: %v", err)
	}
	if _, _, _, err := Decode(bytes.NewReader([]byte{0x1f, 0x8b, 1, 2, 3}), nil); !errors.Is(err, ErrNotReport) {
		t.Errorf("broken gzip: %v", err)
	}
}

// endless yields bytes forever and counts them.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	e.n += int64(len(p))
	return len(p), nil
}

// a body above the compressed cap is refused before it is read to
// the end; a gzip bomb is refused at the decompression cap.
func TestSizeCaps(t *testing.T) {
	e := &endless{}
	_, _, _, err := Decode(e, &Limits{MaxCompressed: 1 << 20})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("endless body: %v", err)
	}
	if e.n > 2<<20 {
		t.Errorf("read %d bytes of an endless body with a 1 MiB cap", e.n)
	}

	// A 1 MB gzip that expands to a gigabyte: one 16 MiB member of zeros
	// repeated (gzip readers join members).
	member := gz(t, make([]byte, 16<<20))
	var bomb []byte
	for len(bomb) < 1<<20 {
		bomb = append(bomb, member...)
	}
	start, startCPU := time.Now(), processCPU(t)
	_, err = Parse(bytes.NewReader(bomb), nil)
	elapsed, cpu := time.Since(start), processCPU(t)-startCPU
	if !errors.Is(err, ErrBomb) || !strings.Contains(err.Error(), "after decompression") {
		t.Fatalf("bomb: %v", err)
	}
	// A loaded machine stretches the wall time, not the work: the test
	// fails only when the process also spent over a second of CPU on it
	// (this package's tests run one at a time).
	if elapsed > time.Second && cpu > time.Second {
		t.Errorf("the bomb took %v (%v of CPU) to refuse; A-9 wants under a second", elapsed, cpu)
	}

	// The ratio cap: 15 MiB from a few kilobytes, under the size cap.
	_, err = Parse(bytes.NewReader(gz(t, make([]byte, 15<<20))), &Options{Limits: &Limits{MaxDecompressed: 64 << 20}})
	if !errors.Is(err, ErrBomb) || !strings.Contains(err.Error(), "times its compressed size") {
		t.Fatalf("ratio: %v", err)
	}
	// A small report of many repeated lines is no bomb: the ratio is only
	// checked past RatioFloor.
	if _, err := Parse(bytes.NewReader(gz(t, []byte(rfcExample+strings.Repeat(" ", 500<<10)))), nil); err != nil {
		t.Errorf("small, very compressible report refused: %v", err)
	}
}

// 100,000 failure details: every count is summed, 10,000 are kept.
func TestManyFailureDetails(t *testing.T) {
	const n = 100000
	var b strings.Builder
	b.WriteString(`{"organization-name":"big","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"},"contact-info":"x@big.example","report-id":"r1","policies":[{"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: testing","mx: mx.example.com","max_age: 86400"],"policy-domain":"example.com","mx-host":["mx.example.com"]},"summary":{"total-successful-session-count":0,"total-failure-session-count":`)
	fmt.Fprint(&b, 2*n)
	b.WriteString(`},"failure-details":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"result-type":"certificate-expired","sending-mta-ip":"192.0.2.%d","receiving-mx-hostname":"mx.example.com","failed-session-count":2}`, i%256)
	}
	b.WriteString(`]}]}`)
	r, err := Parse(bytes.NewReader(gz(t, []byte(b.String()))), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := r.Policies[0]
	if len(p.Failures) != DefaultMaxFailureDetails || p.DetailsDropped != n-DefaultMaxFailureDetails || p.DetailsFailed != 2*n || p.Failed != 2*n {
		t.Errorf("kept %d dropped %d sum %d failed %d", len(p.Failures), p.DetailsDropped, p.DetailsFailed, p.Failed)
	}
	if !r.HasNote(NoteDetailsDropped) || r.HasNote(NoteTotalsDisagree) {
		t.Errorf("notes %+v", r.Notes)
	}
	if len(r.Notes) > maxNotes+1 {
		t.Errorf("%d notes", len(r.Notes))
	}
}

// Notes about many failure details fold into one with a count, and the
// number of notes is bounded.
func TestNotesBounded(t *testing.T) {
	js := mutate(t, rfcExample, func(m map[string]any) {
		var ds []any
		for range 500 {
			ds = append(ds, map[string]any{"result-type": "validation-failure", "failed-session-count": 1})
		}
		entryOf(m, 0)["failure-details"] = ds
		for i := range 300 {
			m[fmt.Sprintf("x-%d", i)] = i
		}
	})
	r := mustParse(t, js, nil)
	if len(r.Notes) != maxNotes+1 || r.Notes[maxNotes].Code != NoteMore {
		t.Fatalf("%d notes, last %+v", len(r.Notes), r.Notes[len(r.Notes)-1])
	}
	r2 := mustParse(t, mutate(t, rfcExample, func(m map[string]any) {
		var ds []any
		for range 500 {
			ds = append(ds, map[string]any{"result-type": "validation-failure", "failed-session-count": 1})
		}
		entryOf(m, 0)["failure-details"] = ds
	}), nil)
	for _, n := range r2.Notes {
		if n.Code == NoteSendingIPMissing && n.Count != 500 {
			t.Errorf("folded note %+v", n)
		}
	}
}

// MarshalRFC writes what Parse reads back.
func TestMarshalRoundTrip(t *testing.T) {
	r := mustParse(t, rfcExample, nil)
	again := mustParse(t, string(mustJSON(t, r)), nil)
	if !reflect.DeepEqual(r, again) {
		t.Errorf("round trip differs:\n%+v\n%+v", r, again)
	}
}

func TestFileNameParts(t *testing.T) {
	s, d, b, e, ok := FileNameParts("/tmp/google.com!Example.COM!1778544000!1778630399!001.json.gz")
	if !ok || s != "google.com" || d != "example.com" || b.Unix() != 1778544000 || e.Unix() != 1778630399 {
		t.Errorf("%q %q %v %v %v", s, d, b, e, ok)
	}
	for _, bad := range []string{"report.json", "a!b!c!d.json", "a!b c!1!2.json", "a!b!1!2!3!4.json"} {
		if _, _, _, _, ok := FileNameParts(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestContactDomain(t *testing.T) {
	for in, want := range map[string]string{
		"smtp-tls-reporting@google.com":   "google.com",
		"mailto:tls_support@Corp.Mail.RU": "corp.mail.ru",
		"Reports <r@x.example>":           "x.example",
		"https://reports.example/tlsrpt":  "reports.example",
		"":                                "",
		"not an address":                  "",
	} {
		if got := ContactDomain(in); got != want {
			t.Errorf("ContactDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// processCPU is the CPU time this process has used so far.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
