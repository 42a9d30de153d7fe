package bulk

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		line, name string
		skip       bool
		err        string
	}{
		{line: "example.com", name: "example.com"},
		{line: "  Example.COM.  ", name: "example.com"},
		{line: "\ufeffexample.com", name: "example.com"}, // a byte-order mark on the first line
		{line: "example.com\r", name: "example.com"},
		{line: "1,google.com", name: "google.com"}, // Tranco and Umbrella lists: rank,domain
		{line: "12345, bücher.example ", name: "xn--bcher-kva.example"},
		{line: "user@example.org", name: "example.org"},
		{line: "https://example.net/path", name: "example.net"},
		{line: "", skip: true},
		{line: "   ", skip: true},
		{line: "# a comment", skip: true},
		{line: "  # indented comment", skip: true},
		{line: "rank,domain", skip: true},
		{line: "example.com extra", err: "more than one word"},
		{line: "google.com,1", err: `want one domain, or "rank,domain"`},
		{line: "1,a.com,b.com", err: `want one domain, or "rank,domain"`},
		{line: "1,", err: "empty"},
		{line: "bad..name", err: "empty label"},
		{line: "192.0.2.1", err: "IP address"},
		{line: "\xff\xfe", err: "not valid UTF-8"},
	}
	for _, tt := range tests {
		_, name, _, skip, err := ParseLine(tt.line)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseLine(%q): error %v, want one with %q", tt.line, err, tt.err)
			}
		case err != nil:
			t.Errorf("ParseLine(%q): %v", tt.line, err)
		case skip != tt.skip || name != tt.name:
			t.Errorf("ParseLine(%q) = %q skip %v, want %q skip %v", tt.line, name, skip, tt.name, tt.skip)
		}
	}
}

func TestReaderLineNumbersAndLongLines(t *testing.T) {
	long := strings.Repeat("a", 3*MaxLineLength) + ".example"
	in := "a.example\n\n# c\n" + long + "\nnot valid\nb.example" // no final line end
	r := NewReader(strings.NewReader(in))
	var got []string
	for {
		it, err := r.Next()
		var le *LineError
		switch {
		case errors.Is(err, io.EOF):
			want := []string{"1 a.example", "err 4", "err 5", "6 b.example"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("got %q, want %q", got, want)
			}
			return
		case errors.As(err, &le):
			got = append(got, "err "+itoa(le.Line))
			if len(le.Text) > 100 {
				t.Errorf("line %d: the error quotes %d bytes", le.Line, len(le.Text))
			}
		case err != nil:
			t.Fatal(err)
		default:
			got = append(got, itoa(it.Line)+" "+it.Domain)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// FuzzParseLine: any line is a domain, skipped, or an error; a domain is a
// canonical A-label name that parses to itself.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"example.com", "1,google.com", "# x", "rank,domain", "a b", "https://x.example/", "\ufeffé.example", "1,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		_, name, _, skip, err := ParseLine(line)
		if err != nil || skip {
			if name != "" {
				t.Errorf("ParseLine(%q): name %q with skip %v err %v", line, name, skip, err)
			}
			return
		}
		if name == "" || !utf8.ValidString(name) || strings.ToLower(name) != name || strings.HasSuffix(name, ".") {
			t.Fatalf("ParseLine(%q) = %q: not a canonical name", line, name)
		}
		if _, again, _, _, err := ParseLine(name); err != nil || again != name {
			t.Errorf("ParseLine(%q) = %q, but that parses to %q, %v", line, name, again, err)
		}
	})
}

// TestShardStable pins the partition: it must never change between
// versions, or split lists would overlap or leave gaps.
func TestShardStable(t *testing.T) {
	got := ""
	for _, d := range []string{"example.com", "google.com", "d00001.bulk.test", "xn--bcher-kva.example"} {
		for i := 1; i <= 4; i++ {
			if (Shard{i, 4}).Has(d) {
				got += itoa(i)
			}
		}
	}
	const wantShards = "3231"
	if got != wantShards {
		t.Errorf("shards %q, want %q (FNV-1a 64 mod n must not change)", got, wantShards)
	}
	// FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the FNV reference test
	// vectors), 12638187200555641996: 996 mod 1000, so shard 997/1000.
	if !(Shard{997, 1000}).Has("a") || (Shard{996, 1000}).Has("a") {
		t.Error(`"a" is not in shard 997/1000`)
	}
	for _, bad := range []string{"0/4", "5/4", "1/0", "x", "1/", "/2", "-1/2"} {
		var ie *InputError
		if _, err := ParseShard(bad); !errors.As(err, &ie) || !strings.HasPrefix(ie.Reason, "shard ") {
			t.Errorf("ParseShard(%q): %v, want an *InputError", bad, err)
		}
	}
	if s, err := ParseShard("2/3"); err != nil || s != (Shard{2, 3}) {
		t.Errorf("ParseShard(2/3) = %v, %v", s, err)
	}
}
