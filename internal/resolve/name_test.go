package resolve

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestCanonicalName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "example.com", want: "example.com"},
		{in: "Example.COM.", want: "example.com"},
		{in: "_MTA-STS.Example.com", want: "_mta-sts.example.com"},
		{in: "_25._tcp.mx.example.com.", want: "_25._tcp.mx.example.com"},
		{in: `a\.b.example`, want: `a\.b.example`},
		{in: `a\065.example`, want: "aa.example"},
		{in: `a\032b.example`, want: `a\032b.example`},
		{in: `a\ b.example`, want: `a\032b.example`},
		{in: `a\@b.example.`, want: `a\@b.example`},
		{in: `end\.`, want: `end\.`},
		{in: `end\..`, want: `end\.`},
		{in: `x\\.example`, want: `x\\.example`},
		{in: strings.Repeat("a", 63) + ".example", want: strings.Repeat("a", 63) + ".example"},
		{in: "", wantErr: "empty name"},
		{in: ".", want: "."},
		{in: "a..b", wantErr: "empty label"},
		{in: "a.b..", wantErr: "empty label"},
		{in: strings.Repeat("a", 64), wantErr: "label of 64 octets"},
		{in: strings.Repeat(`\097`, 64), wantErr: "label of 64 octets"},
		{in: strings.Repeat("abcdefghi.", 25) + "abcd", wantErr: "name of 256 octets"},
		{in: "a b", wantErr: "invalid character"},
		{in: "tab\t.example", wantErr: "invalid character"},
		{in: "bücher.example", wantErr: "A-labels"},
		{in: `a\1`, wantErr: "bad escape"},
		{in: `a\300`, wantErr: "bad escape"},
		{in: `a\`, wantErr: "trailing backslash"},
	}
	for _, tt := range tests {
		got, err := canonicalName(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("canonicalName(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("canonicalName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// FuzzCanonicalName checks that accepted names are canonical (idempotent),
// lower-case, within the RFC 1035 §2.3.4 limits, and survive the wire: packed
// into a query by miekg/dns and read back, they come out the same.
func FuzzCanonicalName(f *testing.F) {
	for _, s := range []string{"example.com", "Example.COM.", "_25._tcp.mx.example.com", `a\.b`, `a\000\255.x`, "a..b", `\`, `\999`, strings.Repeat("a.", 130)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := canonicalName(s)
		if err != nil {
			return
		}
		if again, err := canonicalName(c); err != nil || again != c {
			t.Fatalf("canonicalName(%q) = %q, then %q, %v; want idempotent", s, c, again, err)
		}
		if strings.ContainsFunc(c, func(r rune) bool { return r >= 'A' && r <= 'Z' }) {
			t.Fatalf("canonicalName(%q) = %q has upper case", s, c)
		}
		if _, ok := dns.IsDomainName(c); !ok {
			t.Fatalf("canonicalName(%q) = %q is not a domain name for miekg/dns", s, c)
		}
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(c), dns.TypeA)
		b, err := q.Pack()
		if err != nil {
			t.Fatalf("packing %q: %v", c, err)
		}
		if len(b) > 12+maxNameWire+4 {
			t.Fatalf("query for %q is %d octets; name exceeds %d", c, len(b), maxNameWire)
		}
		var back dns.Msg
		if err := back.Unpack(b); err != nil {
			t.Fatalf("unpacking %q: %v", c, err)
		}
		if got := ownerName(back.Question[0].Name); got != c {
			t.Fatalf("wire round trip of %q gave %q", c, got)
		}
	})
}

// FuzzTXTText checks that Record.Text holds the exact octets of each
// character-string, whatever they are (RFC 1035 §3.3.14).
func FuzzTXTText(f *testing.F) {
	f.Add([]byte("v=STSv1; id=1"), uint8(4))
	f.Add([]byte("a\"b\\c\x00\xff\\123"), uint8(3))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		if len(data) > 2000 {
			return
		}
		// Split data into character-strings of at most 255 octets.
		var want []string
		step := int(cut)
		if step == 0 {
			step = 255
		}
		for len(data) > step {
			want = append(want, string(data[:step]))
			data = data[step:]
		}
		want = append(want, string(data))
		var rdata []byte
		for _, s := range want {
			rdata = append(rdata, byte(len(s)))
			rdata = append(rdata, s...)
		}
		h := dns.RR_Header{Name: "x.example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1, Rdlength: uint16(len(rdata))}
		rr, _, err := dns.UnpackRRWithHeader(h, rdata, 0)
		if err != nil {
			t.Fatalf("unpack: %v", err)
		}
		got := newRecord(rr)
		if len(got.Text) != len(want) {
			t.Fatalf("Text has %d strings, want %d", len(got.Text), len(want))
		}
		for i := range want {
			if got.Text[i] != want[i] {
				t.Fatalf("Text[%d] = %q, want %q", i, got.Text[i], want[i])
			}
		}
	})
}
