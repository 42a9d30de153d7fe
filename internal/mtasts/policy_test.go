package mtasts

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const good = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name    string // spec-checklist ID and case
		body    string
		valid   bool
		codes   []Code // expected problem codes (subset); nil = no problems at all
		mode    Mode   // expected Draft mode when non-empty
		maxAge  int64  // expected Draft max_age when non-zero
		wantMX  []string
		endings string
	}{
		{"RFC example CRLF", good, true, nil, ModeEnforce, 604800, []string{"mail.example.com", "*.example.net"}, EndingsCRLF},
		{"STS-POL-2 LF only", strings.ReplaceAll(good, "\r\n", "\n"), true, nil, ModeEnforce, 0, nil, EndingsLF},
		{"STS-POL-2 no final newline", strings.TrimSuffix(good, "\r\n"), true, nil, "", 0, nil, ""},
		{"STS-POL-2 mixed endings", "version: STSv1\nmode: testing\r\nmx: a.example\nmax_age: 86400\r\n", true, []Code{PolicyLineEndings}, ModeTesting, 86400, nil, EndingsMixed},
		{"STS-POL-2 bare CR", "version: STSv1\rmode: enforce\rmx: a.example\rmax_age: 1", false, []Code{PolicyBareCR}, "", 0, nil, ""},
		{"STS-POL-3 blank line", "version: STSv1\nmode: enforce\n\nmx: a.example\nmax_age: 604800\n", false, []Code{PolicyBlankLine}, ModeEnforce, 0, nil, ""},
		{"STS-POL-3 double final newline", "version: STSv1\nmode: none\nmax_age: 1\n\n", false, []Code{PolicyBlankLine}, "", 0, nil, ""},
		{"STS-POL-4 leading space", " mode: enforce\nversion: STSv1\nmx: a.example\nmax_age: 1\n", false, []Code{PolicyLeadingSpace}, ModeEnforce, 0, nil, ""},
		{"STS-POL-4 space before colon", "version: STSv1\nmode :enforce\nmx: a.example\nmax_age: 1\n", false, []Code{PolicySpaceBeforeColon}, "", 0, nil, ""},
		{"STS-POL-4 no space after colon", "version:STSv1\nmode:enforce\nmx:a.example\nmax_age:604800\n", true, nil, ModeEnforce, 0, nil, ""},
		{"STS-POL-4 tab after colon", "version:\tSTSv1\nmode:\tenforce\nmx:\ta.example\nmax_age:\t604800\n", true, nil, "", 0, nil, ""},
		{"STS-POL-4 trailing space", "version: STSv1 \nmode: enforce   \nmx: a.example\nmax_age: 604800\n", true, []Code{PolicyTrailingSpace}, ModeEnforce, 0, nil, ""},
		{"STS-POL-5 Mode upper-case", "version: STSv1\nMode: enforce\nmx: a.example\nmax_age: 1\n", false, []Code{PolicyKeyCase, PolicyMode}, "", 0, nil, ""},
		{"STS-POL-5 max-age", "version: STSv1\nmode: enforce\nmx: a.example\nmax-age: 604800\n", false, []Code{PolicyKeyCase, PolicyMaxAge}, "", 0, nil, ""},
		{"STS-POL-5 shadowed", "version: STSv1\nmode: enforce\nMode: testing\nmx: a.example\nmax_age: 604800\n", true, []Code{PolicyKeyCaseShadowed}, ModeEnforce, 0, nil, ""},
		{"Zuplu #95 nmx", "version: STSv1\nmode: enforce\nnmx: a.example\nmax_age: 604800\n", false, []Code{PolicyKeyCase, PolicyMXMissing}, "", 0, nil, ""},
		{"STS-POL-6 version", "version: STSV1\nmode: enforce\nmx: a.example\nmax_age: 1\n", false, []Code{PolicyVersion}, "", 0, nil, ""},
		{"STS-POL-6 version missing", "mode: none\nmax_age: 1\n", false, []Code{PolicyVersion}, ModeNone, 0, nil, ""},
		{"STS-POL-7 Enforce", "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", false, []Code{PolicyMode}, "", 0, nil, ""},
		{"STS-POL-7 report", "version: STSv1\nmode: report\nmx: a.example\nmax_age: 1\n", false, []Code{PolicyMode}, "", 0, nil, ""},
		{"STS-POL-7 enforced", "version: STSv1\nmode: enforced\nmx: a.example\nmax_age: 1\n", false, []Code{PolicyMode}, "", 0, nil, ""},
		{"STS-POL-8 units", "version: STSv1\nmode: none\nmax_age: 604800s\n", false, []Code{PolicyMaxAge}, "", 0, nil, ""},
		{"STS-POL-8 11 digits", "version: STSv1\nmode: none\nmax_age: 99999999999\n", false, []Code{PolicyMaxAge}, "", 0, nil, ""},
		{"STS-POL-8 over the cap", "version: STSv1\nmode: none\nmax_age: 31557601\n", false, []Code{PolicyMaxAge}, "", 0, nil, ""},
		{"STS-POL-8 exactly the cap", "version: STSv1\nmode: none\nmax_age: 31557600\n", true, nil, "", 31557600, nil, ""},
		{"STS-POL-8 leading zero", "version: STSv1\nmode: none\nmax_age: 0604800\n", true, nil, "", 604800, nil, ""},
		{"STS-POL-8 zero", "version: STSv1\nmode: none\nmax_age: 0\n", true, nil, ModeNone, 0, nil, ""},
		{"STS-POL-8 negative", "version: STSv1\nmode: none\nmax_age: -1\n", false, []Code{PolicyMaxAge}, "", 0, nil, ""},
		{"STS-POL-8 decimal", "version: STSv1\nmode: none\nmax_age: 86400.5\n", false, []Code{PolicyMaxAge}, "", 0, nil, ""},
		{"STS-POL-9 trailing dot", "version: STSv1\nmode: enforce\nmx: mail.example.com.\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		{"STS-POL-9 port", "version: STSv1\nmode: enforce\nmx: mx.example.com:25\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		{"STS-POL-9 IP", "version: STSv1\nmode: enforce\nmx: 192.0.2.1\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		// RFC 8461 §4.1: a wildcard over an address is no more a host name
		// than the address itself.
		{"STS-POL-9 wildcard over an IP", "version: STSv1\nmode: enforce\nmx: *.1.2.3.4\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		{"STS-POL-9 numeric labels under a name are fine", "version: STSv1\nmode: enforce\nmx: *.1.2.3.4.example\nmax_age: 1\n", true, nil, ModeEnforce, 1, []string{"*.1.2.3.4.example"}, ""},
		{"STS-POL-9 draft dot form", "version: STSv1\nmode: enforce\nmx: .example.net\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		{"STS-POL-9 partial wildcard", "version: STSv1\nmode: enforce\nmx: *example.com\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		{"STS-POL-9 double wildcard", "version: STSv1\nmode: enforce\nmx: *.*.example.com\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		{"STS-POL-9 inner wildcard", "version: STSv1\nmode: enforce\nmx: mail.*.example.com\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		{"STS-POL-9 underscore (Hostinger)", "version: STSv1\nmode: enforce\nmx: _dc-mx.abc.example.com\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		{"STS-POL-9 wildcard", "version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 1\n", true, nil, "", 0, []string{"*.example.com"}, ""},
		{"STS-POL-9 upper-case is fine", "version: STSv1\nmode: enforce\nmx: ALT1.ASPMX.L.GOOGLE.com\nmax_age: 1\n", true, nil, "", 0, nil, ""},
		{"STS-POL-10 enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 604800\n", false, []Code{PolicyMXMissing}, "", 0, nil, ""},
		{"STS-POL-10 none without mx", "version: STSv1\nmode: none\nmax_age: 604800\n", true, nil, "", 0, nil, ""},
		{"STS-POL-11 list", "version: STSv1\nmode: enforce\nmx: a.example.com, b.example.com\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		{"STS-POL-12 U-label", "version: STSv1\nmode: enforce\nmx: mail.bücher.example\nmax_age: 1\n", false, []Code{PolicyMXInvalid}, "", 0, nil, ""},
		{"STS-POL-13 order", "mode: testing\nversion: STSv1\nmx: a.example\nmax_age: 86400\n", true, []Code{PolicyFieldOrder}, "", 0, nil, ""},
		{"STS-POL-14 conflicting duplicate first wins", "version: STSv1\nmode: testing\nmx: a.example\nmode: enforce\nmax_age: 86400\n", true, []Code{PolicyDuplicateConflict}, ModeTesting, 0, nil, ""},
		{"STS-POL-14 identical duplicate", "version: STSv1\nmode: testing\nmode: testing\nmx: a.example\nmax_age: 86400\n", true, []Code{PolicyDuplicateSame}, ModeTesting, 0, nil, ""},
		{"STS-POL-14 duplicate mx", "version: STSv1\nmode: testing\nmx: a.example\nmx: A.example\nmax_age: 86400\n", true, []Code{PolicyMXDuplicate}, "", 0, []string{"a.example"}, ""},
		{"STS-POL-15 unknown key", "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 86400\nfoo: bar\n", true, []Code{PolicyUnknownKey}, "", 0, nil, ""},
		{"STS-POL-15 comment", "# policy\nversion: STSv1\nmode: testing\nmx: a.example\nmax_age: 86400\n", false, []Code{PolicyNotKeyValue}, "", 0, nil, ""},
		{"STS-POL-15 comment with colon", "version: STSv1\n# see: https://example.com\nmode: testing\nmx: a.example\nmax_age: 86400\n", false, []Code{PolicyNotKeyValue}, "", 0, nil, ""},
		{"STS-POL-15 section", "[policy]\nversion: STSv1\nmode: none\nmax_age: 1\n", false, []Code{PolicyNotKeyValue}, "", 0, nil, ""},
		{"YAML list", "version: STSv1\nmode: testing\nmx:\n  - a.example\nmax_age: 86400\n", false, []Code{PolicyMXInvalid, PolicyLeadingSpace, PolicyNotKeyValue}, "", 0, nil, ""},
		{"STS-POL-16 colon in extension", "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 86400\ncontact: https://example.com/x\n", true, []Code{PolicyExtensionColon}, "", 0, nil, ""},
		{"STS-POL-16 UTF-8 extension value", "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 86400\nnote: grüße aus köln\n", true, []Code{PolicyUnknownKey}, "", 0, nil, ""},
		{"STS-POL-17 BOM", "\xef\xbb\xbfversion: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 10368000\r\n", false, []Code{PolicyBOM}, ModeEnforce, 10368000, nil, ""},
		{"STS-POL-18 tab comment", "version: STSv1\nmode: enforce\nmx: mail.example.com\t# primary\nmax_age: 1\n", false, []Code{PolicyControlChar}, "", 0, nil, ""},
		{"STS-POL-18 NUL", "version: STSv1\nmode: none\x00\nmax_age: 1\n", false, []Code{PolicyControlChar}, "", 0, nil, ""},
		{"STS-POL-18 invalid UTF-8", "version: STSv1\nmode: none\nmax_age: 1\nx: \xff\n", false, []Code{PolicyInvalidUTF8}, "", 0, nil, ""},
		{"STS-POL-1 garbage line", good + "hello\r\n", false, []Code{PolicyNotKeyValue}, ModeEnforce, 0, nil, ""},
		{"empty", "", false, []Code{PolicyEmpty}, "", 0, nil, ""},
		{"missing max_age with mode none", "version: STSv1\nmode: none\n", false, []Code{PolicyMaxAge}, ModeNone, 0, nil, ""},
		{"missing colon", "version: STSv1\nmode testing\nmx: a.example\nmax_age: 1\n", false, []Code{PolicyNotKeyValue, PolicyMode}, "", 0, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pp := ParsePolicy([]byte(tt.body))
			if got := pp.Policy != nil; got != tt.valid {
				t.Fatalf("valid = %v, want %v; problems: %v", got, tt.valid, pp.Problems)
			}
			got := map[Code]bool{}
			for _, p := range pp.Problems {
				got[p.Code] = true
				if p.Detail == "" {
					t.Errorf("problem %s has no detail", p.Code)
				}
			}
			for _, c := range tt.codes {
				if !got[c] {
					t.Errorf("missing problem %s; got %v", c, pp.Problems)
				}
			}
			if tt.codes == nil && len(pp.Problems) > 0 {
				t.Errorf("unexpected problems %v", pp.Problems)
			}
			if tt.mode != "" && pp.Draft.Mode != tt.mode {
				t.Errorf("draft mode = %q, want %q", pp.Draft.Mode, tt.mode)
			}
			if tt.maxAge != 0 && pp.Draft.MaxAge != tt.maxAge {
				t.Errorf("draft max_age = %d, want %d", pp.Draft.MaxAge, tt.maxAge)
			}
			if tt.wantMX != nil && !reflect.DeepEqual(pp.Draft.MX, tt.wantMX) {
				t.Errorf("draft mx = %q, want %q", pp.Draft.MX, tt.wantMX)
			}
			if tt.endings != "" && pp.Endings != tt.endings {
				t.Errorf("endings = %q, want %q", pp.Endings, tt.endings)
			}
		})
	}
}

func TestProblemLines(t *testing.T) {
	pp := ParsePolicy([]byte("version: STSv1\nmode: enforce\n mx: a.example\nmax_age: 1\n"))
	for _, p := range pp.Problems {
		if p.Code == PolicyLeadingSpace && p.Line != 3 {
			t.Errorf("leading space reported on line %d, want 3", p.Line)
		}
	}
}

func TestMatchMX(t *testing.T) {
	// RFC 8461 §4.1, STS-SND-7, NAME-4.
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"*.example.com", "mail.example.com", true},
		{"*.example.com", "MAIL.Example.com.", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "mail.example.com.evil.com", false},
		{"*.example.com", "mailexample.com", false},
		{"example.com", "bad-example.com", false},
		{"mail.example.com", "mail.example.com", true},
		{"Mail.Example.COM", "mail.example.com.", true},
		{"mail.example.com", "mail2.example.com", false},
		{"*.mx.microsoft", "tenant.b-v1.mx.microsoft", false},
		{"*.mail.protection.outlook.com", "contoso-com.mail.protection.outlook.com", true},
		{"*.abc.example.com", "_dc-mx.abc.example.com", true},
		{"", "example.com", false},
	}
	for _, tt := range tests {
		if got := MatchMX(tt.pattern, tt.host); got != tt.want {
			t.Errorf("MatchMX(%q, %q) = %v, want %v", tt.pattern, tt.host, got, tt.want)
		}
	}
}

func TestWriteRoundTrip(t *testing.T) {
	p := &Policy{Version: "STSv1", Mode: ModeEnforce, MaxAge: 604800, MX: []string{"mx1.example.com", "*.example.net"}, Extensions: []Extension{{"contact", "postmaster"}}}
	s := p.String()
	want := "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\ncontact: postmaster\r\n"
	if s != want {
		t.Fatalf("String() = %q, want %q", s, want)
	}
	pp := ParsePolicy([]byte(s))
	if pp.Policy == nil || !pp.Policy.Equal(p) {
		t.Fatalf("round trip: got %+v, problems %v", pp.Policy, pp.Problems)
	}
}

func TestNewID(t *testing.T) {
	now := time.Date(2026, 11, 28, 17, 54, 0, 0, time.FixedZone("CET", 3600))
	if got := NewID(now); got != "20261128165400" {
		t.Errorf("NewID = %q", got)
	}
	if got := NewID(now, "20261128165400"); got != "202611281654001" {
		t.Errorf("NewID avoiding the current id = %q", got)
	}
	if got := NewID(now, "20261128165400", "202611281654001"); got != "202611281654002" {
		t.Errorf("NewID avoiding two ids = %q", got)
	}
	if !ValidID(NewID(now)) {
		t.Error("NewID makes invalid ids")
	}
}

// FuzzParsePolicy checks properties of the policy parser: accepted policies
// respect the RFC bounds, and writing an accepted policy and parsing it again
// gives the same policy (STS-POL-22).
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{good, strings.ReplaceAll(good, "\r\n", "\n"), "version: STSv1\nmode: none\nmax_age: 0", "\xef\xbb\xbfversion: STSv1\n", "mode:testing\nversion:STSv1\nmx:*.a.b\nmax_age:1\n\n", "version: STSv1\rmode: none"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		pp := ParsePolicy(body)
		for _, p := range pp.Problems {
			if p.Detail == "" {
				t.Fatalf("problem without detail: %+v", p)
			}
		}
		p := pp.Policy
		if p == nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge {
			t.Fatalf("max_age %d out of bounds", p.MaxAge)
		}
		if p.Mode != ModeEnforce && p.Mode != ModeTesting && p.Mode != ModeNone {
			t.Fatalf("bad mode %q", p.Mode)
		}
		if p.Mode != ModeNone && len(p.MX) == 0 {
			t.Fatalf("mode %s without mx accepted", p.Mode)
		}
		for _, mx := range p.MX {
			if err := CheckPattern(mx); err != nil {
				t.Fatalf("accepted bad mx %q: %v", mx, err)
			}
		}
		again := ParsePolicy([]byte(p.String()))
		if again.Policy == nil || !again.Policy.Equal(p) {
			t.Fatalf("round trip of %q failed: %v", p.String(), again.Problems)
		}
		for _, q := range again.Problems {
			// Extensions are carried over and reported as such; anything
			// else in the canonical form is a writer bug.
			if q.Code != PolicyUnknownKey && q.Code != PolicyExtensionColon {
				t.Fatalf("canonical form %q has problems: %v", p.String(), again.Problems)
			}
		}
	})
}

func TestRepairPattern(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.com.":            "mail.example.com",
		"mx.example.com:25":            "mx.example.com",
		".example.net":                 "*.example.net",
		"a.example.com, b.example.com": "a.example.com b.example.com",
		"mail.bücher.example":          "mail.xn--bcher-kva.example",
		"192.0.2.1":                    "",
		"*.*.example.com":              "",
		"_dc-mx.abc.example.com":       "",
	} {
		got := strings.Join(RepairPattern(in), " ")
		if got != want {
			t.Errorf("RepairPattern(%q) = %q, want %q", in, got, want)
		}
	}
}
