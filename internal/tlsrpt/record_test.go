package tlsrpt

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name   string // spec-checklist ID and case
		txt    string
		valid  bool
		usable []string
		codes  []Code
	}{
		{"RFC mailto", "v=TLSRPTv1;rua=mailto:reports@example.com", true, []string{"mailto:reports@example.com"}, nil},
		{"RFC https", "v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt", true, []string{"https://reporting.example.com/v1/tlsrpt"}, nil},
		{"RPT-TXT-2 joined", "v=TLSRPTv1; rua=mailto:tls" + "rpt@example.com", true, []string{"mailto:tlsrpt@example.com"}, nil},
		{"RPT-TXT-5 list with blanks", "v=TLSRPTv1; rua=mailto:a@example.com, https://r.example.net/tlsrpt", true, []string{"mailto:a@example.com", "https://r.example.net/tlsrpt"}, nil},
		{"list without blanks, trailing ;", "v=TLSRPTv1;rua=mailto:a@x.example,mailto:b@y.example;", true, []string{"mailto:a@x.example", "mailto:b@y.example"}, nil},
		{"RPT-TXT-4 lower-case version", "v=tlsrptv1; rua=mailto:a@example.com", false, nil, []Code{RecordVersion}},
		{"RPT-TXT-4 version not first", "rua=mailto:a@example.com; v=TLSRPTv1", false, nil, []Code{RecordVersion}},
		// Grammatical (delimiter *WSP ";" *WSP); only the filter for
		// several records needs "v=TLSRPTv1;" (RFC 8460 §3).
		{"RPT-TXT-4 space before ;", "v=TLSRPTv1 ; rua=mailto:a@example.com", true, []string{"mailto:a@example.com"}, []Code{RecordSpaceBeforeSemicolon}},
		{"RPT-TXT-4 missing ;", "v=TLSRPTv1 rua=mailto:a@example.com", false, nil, []Code{RecordSyntax}},
		{"RPT-TXT-4 space around =", "v=TLSRPTv1; rua = mailto:a@example.com", false, nil, []Code{RecordSpaceAroundEquals}},
		{"RPT-TXT-4 RUA upper-case", "v=TLSRPTv1; RUA=mailto:a@example.com", false, nil, []Code{RecordSyntax}},
		{"RPT-TXT-4 extra version", "v=TLSRPTv1extra; rua=mailto:a@example.com", false, nil, []Code{RecordVersion}},
		{"RPT-TXT-5 no rua", "v=TLSRPTv1", false, nil, []Code{RecordSyntax}},
		{"RPT-TXT-5 no rua with ;", "v=TLSRPTv1;", false, nil, []Code{RecordSyntax}},
		{"RPT-TXT-6 no scheme", "v=TLSRPTv1; rua=tlsrpt@example.com", true, nil, []Code{RUAUnsupported}},
		{"RPT-TXT-6 http", "v=TLSRPTv1; rua=http://r.example.net/x", true, nil, []Code{RUAUnsupported}},
		{"RPT-TXT-6 mixed usable", "v=TLSRPTv1; rua=ftp://r.example.net/x,mailto:a@example.com", true, []string{"mailto:a@example.com"}, []Code{RUAUnsupported}},
		{"RPT-TXT-7 size suffix", "v=TLSRPTv1; rua=mailto:tlsrpt@example.com!10m", false, nil, []Code{RUAInvalid}},
		{"RPT-TXT-7 trailing comma", "v=TLSRPTv1; rua=mailto:a@example.com,", false, nil, []Code{RUAInvalid}},
		{"RPT-TXT-8 two rua fields", "v=TLSRPTv1; rua=mailto:a@x.example; rua=mailto:b@y.example", true, []string{"mailto:a@x.example", "mailto:b@y.example"}, []Code{RUARepeated}},
		{"RPT-TXT-9 ruf", "v=TLSRPTv1; rua=mailto:a@x.example; ruf=mailto:b@x.example", true, []string{"mailto:a@x.example"}, []Code{Extension}},
		{"mailto with bad domain", "v=TLSRPTv1; rua=mailto:a@exa_mple.com", true, nil, []Code{RUAUnsupported}},
		{"octoDNS escape leaked", "v=TLSRPTv1\\; rua=mailto:a@example.com", false, nil, []Code{RecordVersion}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, probs := ParseRecord(tt.txt)
			if (rec != nil) != tt.valid {
				t.Fatalf("valid = %v, want %v; problems %v", rec != nil, tt.valid, probs)
			}
			if rec != nil && !reflect.DeepEqual(rec.Usable, tt.usable) {
				t.Errorf("usable = %q, want %q", rec.Usable, tt.usable)
			}
			got := map[Code]bool{}
			for _, p := range probs {
				got[p.Code] = true
				if p.Detail == "" {
					t.Errorf("problem %s without detail", p.Code)
				}
			}
			for _, c := range tt.codes {
				if !got[c] {
					t.Errorf("missing problem %s; got %+v", c, probs)
				}
			}
			if tt.codes == nil && len(probs) > 0 {
				t.Errorf("unexpected problems %+v", probs)
			}
		})
	}
}

func TestNoSchemeHint(t *testing.T) {
	_, probs := ParseRecord("v=TLSRPTv1; rua=tlsrpt@example.com")
	if len(probs) != 1 || !strings.Contains(probs[0].Detail, "mailto:tlsrpt@example.com") {
		t.Errorf("want a hint to add mailto:, got %+v", probs)
	}
}

// TestSelectRecord: a single TXT record is parsed as it is; the
// "v=TLSRPTv1;" filter applies only when several come back (RFC 8460 §3).
func TestSelectRecord(t *testing.T) {
	tests := []struct {
		name  string
		txts  []string
		valid bool
	}{
		{"RPT-TXT-4 single record with space before ;", []string{"v=TLSRPTv1 ; rua=mailto:a@example.com"}, true},
		{"RPT-TXT-3 with another record the filter drops it", []string{"v=TLSRPTv1 ; rua=mailto:a@example.com", "other"}, false},
		{"RPT-TXT-3 unrelated record ignored", []string{"v=TLSRPTv1; rua=mailto:a@example.com", "other"}, true},
		{"RPT-TXT-3 two records", []string{"v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:a@example.com"}, false},
		{"none", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, _, why := SelectRecord(tt.txts)
			if (rec != nil) != tt.valid {
				t.Errorf("SelectRecord(%q) = %+v, want valid %v (%s)", tt.txts, rec, tt.valid, why)
			}
		})
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"v=TLSRPTv1;rua=mailto:a@b.c", "v=TLSRPTv1; rua=https://x/y, mailto:z@w.v;", "v=TLSRPTv1 rua=x", "v=TLSRPTv1; rua=mailto:a@b.c!10m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, probs := ParseRecord(txt)
		for _, p := range probs {
			if p.Detail == "" {
				t.Fatalf("problem without detail: %+v", p)
			}
		}
		if rec == nil {
			return
		}
		if !IsCandidate(txt) && !hasCode(probs, RecordSpaceBeforeSemicolon) {
			t.Fatalf("accepted %q, which fails the v=TLSRPTv1; filter, without saying why", txt)
		}
		if len(rec.RUA) == 0 {
			t.Fatalf("accepted %q without rua", txt)
		}
		for _, u := range rec.Usable {
			if l := strings.ToLower(u); !strings.HasPrefix(l, "mailto:") && !strings.HasPrefix(l, "https:") {
				t.Fatalf("usable URI %q is neither mailto: nor https:", u)
			}
			again, _ := ParseRecord(VersionTag + "; rua=" + u)
			if again == nil || len(again.Usable) != 1 || again.Usable[0] != u {
				t.Fatalf("usable URI %q does not survive a round trip", u)
			}
		}
	})
}
