package domain

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		want     string
		wantNote string // substring of one note; "" = no notes
	}{
		{"example.com", "example.com", ""},
		{"  example.com\n", "example.com", ""},
		{"Example.COM.", "example.com", "normalised"}, // STS-FETCH-1
		{"bücher.example", "xn--bcher-kva.example", "A-label"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", ""},
		{"https://example.com/", "example.com", "URL"},
		{"https://Example.com:8443/path?q=1", "example.com", "URL"},
		{"user@example.com", "example.com", "address"},
		{"mailto:user@Example.com", "example.com", "address"},
		{"_mta-sts.example.com", "example.com", "record name"},
		{"_smtp._tls.example.com", "example.com", "record name"},
		{"mail.example.test", "mail.example.test", ""},
		{"corp.internal", "corp.internal", ""},
		{"printer.lan", "printer.lan", ""},
	}
	for _, tt := range tests {
		got, notes, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): unexpected error %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %q, want %q", tt.in, got, tt.want)
		}
		joined := strings.Join(notes, "; ")
		if tt.wantNote == "" && len(notes) > 0 {
			t.Errorf("Parse(%q) notes = %q, want none", tt.in, joined)
		}
		if tt.wantNote != "" && !strings.Contains(joined, tt.wantNote) {
			t.Errorf("Parse(%q) notes = %q, want one mentioning %q", tt.in, joined, tt.wantNote)
		}
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"", "empty"},
		{"192.0.2.1", "IP address"},
		{"[192.0.2.1]", "IP address"},
		{"user@[192.0.2.1]", "IP address"},
		{"2001:db8::1", "IP address"},
		{"localhost", "single label"},
		{"com.", "single label"},
		{"example..com", "empty label"},
		{"exa_mple.com", "not a valid host name"},
		{"-example.com", "not a valid host name"},
		{"exa mple.com", "not a valid host name"},
		{"example.123", "all-numeric"},
		{"https:///path", "no host"},
		{strings.Repeat("a", 64) + ".com", "not a valid host name"},
		{strings.Repeat("a.", 2000) + "com", "too long"},
		{"\xff.example", "UTF-8"},
	}
	for _, tt := range tests {
		got, _, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q) = %q, want error containing %q", tt.in, got, tt.wantErr)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) error %v does not wrap ErrInvalid", tt.in, err)
		}
		// The reason travels as data, for callers that word the error
		// their own way (the web checker).
		var ie *InvalidError
		if !errors.As(err, &ie) || !strings.Contains(ie.Reason, tt.wantErr) || strings.Contains(ie.Reason, ErrInvalid.Error()) {
			t.Errorf("Parse(%q): %#v, want an *InvalidError whose Reason contains %q", tt.in, ie, tt.wantErr)
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestCheckHostname(t *testing.T) {
	good := []string{"mx.example.com", "a", "MX1.Example.Com", "xn--bcher-kva.example", "a-b.c"}
	bad := []string{"", "mx.example.com.", "-a.b", "a-.b", "a..b", "a_b.c", "mail.bücher.example", "xn--zz-.example", strings.Repeat("a", 64) + ".b", "*.example.com"}
	for _, n := range good {
		if err := CheckHostname(n); err != nil {
			t.Errorf("CheckHostname(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		if err := CheckHostname(n); err == nil {
			t.Errorf("CheckHostname(%q) = nil, want an error", n)
		}
	}
}

func TestUnicodeAndASCII(t *testing.T) {
	if got := Unicode("xn--bcher-kva.example"); got != "bücher.example" {
		t.Errorf("Unicode = %q", got)
	}
	if got := ToASCII("mail.bücher.example."); got != "mail.xn--bcher-kva.example" {
		t.Errorf("ToASCII = %q", got)
	}
	if !IsSubdomainOf("Mail.Example.com.", "example.com") || IsSubdomainOf("example.com", "example.com") || IsSubdomainOf("badexample.com", "example.com") {
		t.Error("IsSubdomainOf is wrong")
	}
}

// FuzzParse checks that whatever Parse accepts is a clean A-label host name
// that parses to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"example.com", "Example.COM.", "bücher.example", "https://a.b/", "u@a.b", "[1.2.3.4]", "a..b", "xn--zz.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		name, _, err := Parse(in)
		if err != nil {
			return
		}
		if !utf8.ValidString(name) || name != strings.ToLower(name) || strings.HasSuffix(name, ".") {
			t.Fatalf("Parse(%q) = %q: not canonical", in, name)
		}
		if err := CheckHostname(name); err != nil {
			t.Fatalf("Parse(%q) = %q, which CheckHostname rejects: %v", in, name, err)
		}
		again, _, err := Parse(name)
		if err != nil || again != name {
			t.Fatalf("Parse(Parse(%q)) = %q, %v; want %q", in, again, err, name)
		}
	})
}
