package mtasts

import (
	"strings"
	"testing"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name   string // spec-checklist ID and case
		txt    string
		wantID string // "" = invalid record
		codes  []Code // problem codes expected (in any order); nil = none
	}{
		{"STS-TXT-5 minimal", "v=STSv1; id=abc;", "abc", nil},
		{"RFC example", "v=STSv1; id=20160831085700Z;", "20160831085700Z", nil},
		{"no space", "v=STSv1;id=1565808194", "1565808194", nil},
		{"tabs around delimiter", "v=STSv1;\tid=1\t;", "1", nil},
		{"STS-TXT-2 joined strings", "v=STSv1; id=2024" + "0101", "20240101", nil},
		{"STS-TXT-9 lower-case T and Z", "v=STSv1; id=20260920t000000z", "20260920t000000z", nil},
		{"STS-TXT-9 32 chars", "v=STSv1; id=" + strings.Repeat("a", 32), strings.Repeat("a", 32), nil},
		{"STS-TXT-5 no id", "v=STSv1;", "", []Code{RecordSyntax}},
		{"STS-TXT-5 version alone", "v=STSv1", "", []Code{RecordSyntax}},
		{"STS-TXT-6 upper-case V", "V=STSv1; id=1", "", []Code{RecordVersion}},
		{"STS-TXT-6 lower-case version", "v=stsv1; id=1", "", []Code{RecordVersion}},
		{"STS-TXT-6 leading space", " v=STSv1; id=1", "", []Code{RecordVersion}},
		{"STS-TXT-6 STSv12", "v=STSv12; id=1", "", []Code{RecordVersion}},
		{"STS-TXT-6 quotes", "\"v=STSv1; id=1\"", "", []Code{RecordQuoted}},
		{"STS-TXT-6 not a record", "v=spf1 -all", "", []Code{RecordVersion}},
		// The grammar's delimiter is *WSP ";" *WSP; only the filter for
		// several records needs "v=STSv1;" (RFC 8461 §3.1, erratum 6285).
		{"STS-TXT-7 space before semicolon is grammatical", "v=STSv1 ; id=1", "1", []Code{RecordSpaceBeforeSemicolon}},
		{"STS-TXT-7 tabs before semicolon", "v=STSv1 \t; \tid=policy1 \t;", "policy1", []Code{RecordSpaceBeforeSemicolon}},
		{"STS-TXT-7 space before later semicolon is fine", "v=STSv1; id=1 ;", "1", nil},
		{"missing semicolon after version", "v=STSv1 id=1", "", []Code{RecordSyntax}},
		{"STS-TXT-8 space around equals", "v=STSv1; id = 1", "", []Code{RecordSpaceAroundEquals}},
		{"STS-TXT-9 hyphenated date", "v=STSv1; id=2024-01-01", "", []Code{RecordIDInvalid}},
		{"STS-TXT-9 33 chars", "v=STSv1; id=" + strings.Repeat("a", 33), "", []Code{RecordIDInvalid}},
		{"STS-TXT-9 empty id", "v=STSv1; id=", "", []Code{RecordIDInvalid}},
		{"STS-TXT-9 base64 plus", "v=STSv1; id=ab+c", "", []Code{RecordIDInvalid}},
		{"STS-TXT-10 duplicate id first wins", "v=STSv1; id=1; id=2", "1", []Code{RecordIDDuplicate}},
		{"STS-TXT-12 extension", "v=STSv1; id=1; foo=bar", "1", []Code{RecordExtension}},
		{"STS-TXT-12 bad extension value", "v=STSv1; id=1; foo=a=b", "", []Code{RecordSyntax}},
		{"STS-TXT-12 empty extension value", "v=STSv1; id=1; foo=", "", []Code{RecordSyntax}},
		{"STS-TXT-12 bad extension name", "v=STSv1; id=1; _foo=1", "", []Code{RecordSyntax}},
		{"ID upper-case name", "v=STSv1; ID=1", "", []Code{RecordSyntax}},
		{"STS-TXT-13 non-breaking space", "v=STSv1;\u00a0id=1", "", []Code{RecordNonASCII, RecordSyntax}},
		{"STS-TXT-14 trailing space", "v=STSv1; id=1 ", "", []Code{RecordTrailingSpace}},
		{"STS-TXT-14 trailing delimiter and space", "v=STSv1; id=1; ", "1", nil},
		{"double semicolon", "v=STSv1;; id=1", "", []Code{RecordSyntax}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, probs := ParseRecord(tt.txt)
			gotID := ""
			if rec != nil {
				gotID = rec.ID
			}
			if gotID != tt.wantID {
				t.Errorf("ParseRecord(%q) id = %q, want %q; problems: %v", tt.txt, gotID, tt.wantID, probs)
			}
			got := map[Code]bool{}
			for _, p := range probs {
				got[p.Code] = true
				if p.Detail == "" {
					t.Errorf("problem %s has no detail", p.Code)
				}
			}
			for _, c := range tt.codes {
				if !got[c] {
					t.Errorf("ParseRecord(%q): missing problem %s; got %v", tt.txt, c, probs)
				}
			}
			if tt.codes == nil && len(probs) > 0 {
				t.Errorf("ParseRecord(%q): unexpected problems %v", tt.txt, probs)
			}
		})
	}
}

func TestIsCandidate(t *testing.T) {
	// STS-TXT-3: only records beginning with the exact bytes "v=STSv1;" count.
	for txt, want := range map[string]bool{
		"v=STSv1; id=1":  true,
		"v=STSv1;id=1":   true,
		"v=STSv1 ; id=1": false,
		"v=STSv1":        false,
		"V=STSv1; id=1":  false,
		"v=spf1 -all":    false,
		"v=STSv12; id=1": false,
	} {
		if got := IsCandidate(txt); got != want {
			t.Errorf("IsCandidate(%q) = %v, want %v", txt, got, want)
		}
	}
	for txt, want := range map[string]bool{
		"v=STSv1 ; id=1":             true,
		"\"v=STSv1; id=1\"":          true,
		"V=STSV1; id=1":              true,
		"v=spf1 -all":                false,
		"google-site-verification=x": false,
	} {
		if got := LooksLikeRecord(txt); got != want {
			t.Errorf("LooksLikeRecord(%q) = %v, want %v", txt, got, want)
		}
	}
}

// TestSelectRecord: a single TXT record is parsed as it is; the
// "v=STSv1;" filter applies only when several come back (RFC 8461 §3.1).
func TestSelectRecord(t *testing.T) {
	tests := []struct {
		name   string
		txts   []string
		wantID string // "" = no record
	}{
		{"STS-TXT-7 single record with space before ;", []string{"v=STSv1 ; id=1"}, "1"},
		{"STS-TXT-7 with another record the filter drops it", []string{"v=STSv1 ; id=1", "v=spf1 -all"}, ""},
		{"STS-TXT-7 the filter keeps the exact one", []string{"v=STSv1 ; id=1", "v=STSv1; id=2"}, "2"},
		{"STS-TXT-3 unrelated record ignored", []string{"verification=abc", "v=STSv1; id=policy1;"}, "policy1"},
		{"STS-TXT-4 two records", []string{"v=STSv1; id=1", "v=STSv1; id=2"}, ""},
		{"STS-TXT-4 none", nil, ""},
		{"single unrelated record", []string{"v=spf1 -all"}, ""},
		{"single invalid record", []string{"v=STSv1; id=a;;"}, ""},
		{"STS-TXT-14 trailing space without ;", []string{"v=STSv1; id=abc "}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, _, why := SelectRecord(tt.txts)
			got := ""
			if rec != nil {
				got = rec.ID
			}
			if got != tt.wantID {
				t.Errorf("SelectRecord(%q) id = %q, want %q (%s)", tt.txts, got, tt.wantID, why)
			}
			if rec == nil && why == "" {
				t.Errorf("SelectRecord(%q): no record and no reason", tt.txts)
			}
		})
	}
}

func TestProblemDetailsNameTheValue(t *testing.T) {
	_, probs := ParseRecord("v=STSv1; id=2024-01-01")
	if len(probs) == 0 || !strings.Contains(probs[0].Detail, "2024-01-01") || !strings.Contains(probs[0].Detail, "-") {
		t.Errorf("detail should name the id and the bad character: %v", probs)
	}
	_, probs = ParseRecord("v=STSv1;\u00a0id=1")
	if len(probs) == 0 || !strings.Contains(probs[0].Detail, "non-breaking space") || !strings.Contains(probs[0].Detail, "offset 8") {
		t.Errorf("detail should name the character and offset: %v", probs)
	}
}

// FuzzParseRecord checks properties: a record accepted has a valid id, and
// the canonical record made from it parses to the same id.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"v=STSv1; id=1;", "v=STSv1 ; id=1", "v=STSv1;id=a;b=c", "\"v=STSv1\"", "v=STSv1; id = 1", "v=STSv1;;", "v=STSv1; id=1 "} {
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
		if !ValidID(rec.ID) {
			t.Fatalf("ParseRecord(%q) accepted invalid id %q", txt, rec.ID)
		}
		rest, ok := strings.CutPrefix(txt, VersionTag)
		if !ok || !strings.HasPrefix(strings.TrimLeft(rest, " \t"), ";") {
			t.Fatalf("ParseRecord(%q) accepted a record that does not begin with v=STSv1 *WSP \";\"", txt)
		}
		if !IsCandidate(txt) && !hasCode(probs, RecordSpaceBeforeSemicolon) {
			t.Fatalf("ParseRecord(%q) accepted a record that fails the filter without saying why", txt)
		}
		again, _ := ParseRecord(VersionTag + "; id=" + rec.ID)
		if again == nil || again.ID != rec.ID {
			t.Fatalf("canonical record of id %q does not parse back", rec.ID)
		}
	})
}
