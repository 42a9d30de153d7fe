package tlsrpt

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes (JSON, gzip or neither) to Parse. An
// accepted report must be whole and within bounds, and MarshalRFC must
// write it so that Parse reads the same report back.
func FuzzParse(f *testing.F) {
	f.Add([]byte(rfcExample))
	f.Add(gz(f, []byte(rfcExample)))
	f.Add([]byte(strings.ReplaceAll(rfcExample, `:00Z"`, `:00"`)))
	f.Add([]byte(`{"organization-name":"Microsoft Corporation","date-range":{"start-datetime":"2023-01-10T00:00:00","end-datetime":"2023-01-10T23:59:59"},"contact-info":"tlsrpt-noreply@microsoft.com","report-id":"1+","policies":[{"policy":{"policy-type":"tlsa","policy-string":["[\"3 1 1 AB\"]"],"policy-domain":"x.test"},"summary":{"total-successful-session-count":7,"total-failure-session-count":6},"failure-details":[{"result-type":"sts-policy-fetch-error","failed-session-count":3}]}]}`))
	f.Add([]byte(`{"organization-name":"s","date-range":{"start-datetime":"2026-01-11T00:00:00Z","end-datetime":"2026-01-12T00:00:00Z"},"contact-info":null,"report-id":"1_2","policies":[{"policy":{"policy-type":"no-policy-found","policy-string":[],"mx-host":[]},"summary":{"total-successful-session-count":"1"},"failure-details":[]}]}`))
	f.Add([]byte(`{"date-range":{"start-datetime":1459468800},"policies":[{"policy":{"policy-type":"STS","mx-host":"mx: a.test","policy-string":"mx: b.test\r"},"summary":{"total-failure-session-count":-1.5}}],"x":[[[]]]} trailing`))
	f.Fuzz(func(t *testing.T, in []byte) {
		lim := &Limits{MaxFailureDetails: 20, MaxPolicies: 10, MaxStrings: 20, MaxString: 64}
		r, err := Parse(bytes.NewReader(in), &Options{Limits: lim})
		if err != nil {
			if !errors.Is(err, ErrNotReport) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBomb) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			if r != nil {
				t.Fatal("a report with an error")
			}
			return
		}
		checkBounds(t, r, lim.withDefaults())
		out, err := r.MarshalRFC()
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseJSON(out, &Options{Limits: lim})
		if err != nil {
			t.Fatalf("MarshalRFC output refused: %v\n%s", err, out)
		}
		if !roundTrips(r) {
			return
		}
		a, b := *r, *again
		a.Notes, b.Notes = nil, nil
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip differs:\n%+v\n%+v\n%s", a, b, out)
		}
	})
}

// roundTrips reports whether r is in the form MarshalRFC preserves: no
// dropped details, and no TLSA record that itself looks JSON-encoded.
func roundTrips(r *Report) bool {
	for _, p := range r.Policies {
		if p.DetailsDropped > 0 {
			return false
		}
		for _, s := range p.Strings {
			if p.Type == PolicyTLSA && strings.HasPrefix(strings.TrimSpace(s), "[") {
				return false
			}
		}
	}
	return true
}

func checkBounds(t *testing.T, r *Report, l Limits) {
	t.Helper()
	if len(r.Policies) == 0 || len(r.Policies) > l.MaxPolicies {
		t.Fatalf("%d policies", len(r.Policies))
	}
	if r.End.Before(r.Start) || r.Start.Location().String() != "UTC" || r.End.Location().String() != "UTC" {
		t.Fatalf("range %v %v", r.Start, r.End)
	}
	if len(r.Notes) > maxNotes+1 {
		t.Fatalf("%d notes", len(r.Notes))
	}
	for _, n := range r.Notes {
		if n.Text == "" || n.Code == "" {
			t.Fatalf("note %+v", n)
		}
	}
	if len(r.OrganizationName) > l.MaxString || len(r.ReportID) > l.MaxString || len(r.ContactInfo) > l.MaxString {
		t.Fatalf("long header strings")
	}
	kept := 0
	for _, p := range r.Policies {
		if p.Successful < 0 || p.Failed < 0 || p.DetailsFailed < 0 {
			t.Fatalf("negative counts %+v", p)
		}
		if len(p.Strings) > l.MaxStrings || len(p.MXHost) > l.MaxStrings {
			t.Fatalf("%d strings", len(p.Strings))
		}
		kept += len(p.Failures)
		var sum int64
		for _, d := range p.Failures {
			if d.FailedSessions < 0 || len(d.FailureReasonCode) > l.MaxString || len(d.AdditionalInfo) > l.MaxString {
				t.Fatalf("detail %+v", d)
			}
			sum += d.FailedSessions
		}
		if p.DetailsDropped == 0 && sum != p.DetailsFailed {
			t.Fatalf("details sum %d, DetailsFailed %d", sum, p.DetailsFailed)
		}
	}
	if kept > l.MaxFailureDetails {
		t.Fatalf("%d details kept", kept)
	}
}
