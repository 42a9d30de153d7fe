package socketmap

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  error
	}{
		{in: "12:hello world!,", want: []string{"hello world!"}, err: io.EOF},
		{in: "0:,", want: []string{""}, err: io.EOF},
		{in: "3:abc,3:def,", want: []string{"abc", "def"}, err: io.EOF},
		{in: "", err: io.EOF},
		{in: "3:abc", err: io.ErrUnexpectedEOF},
		{in: "3:ab", err: io.ErrUnexpectedEOF},
		{in: "12", err: io.ErrUnexpectedEOF},
		{in: "3:abc;", err: ErrMalformed},  // bad terminator
		{in: "x:abc,", err: ErrMalformed},  // non-digit length
		{in: ":abc,", err: ErrMalformed},   // no length
		{in: "03:abc,", err: ErrMalformed}, // leading zero
		{in: "-1:,", err: ErrMalformed},    // sign
		{in: "1025:" + strings.Repeat("a", 1025) + ",", err: ErrTooLarge},
		{in: "99999999999999999999999:", err: ErrTooLarge}, // no overflow
		{in: "1024:" + strings.Repeat("a", 1024) + ",", want: []string{strings.Repeat("a", 1024)}, err: io.EOF},
		{in: "3:abc,junk", want: []string{"abc"}, err: ErrMalformed},
	}
	for _, tt := range tests {
		r := NewReader(bufio.NewReader(strings.NewReader(tt.in)), DefaultMaxRequest)
		var got []string
		var err error
		for {
			var p []byte
			p, err = r.Next()
			if err != nil {
				break
			}
			got = append(got, string(p))
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%.40q: error %v, want %v", tt.in, err, tt.err)
		}
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("%.40q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAppendNetstring(t *testing.T) {
	if got := string(AppendNetstring(nil, "OK secure")); got != "9:OK secure," {
		t.Errorf("got %q", got)
	}
	if got := string(Reply{Status: NotFound}.Append(nil)); got != "9:NOTFOUND ," {
		t.Errorf("NOTFOUND keeps its space: got %q", got)
	}
	long := Reply{Status: OK, Data: strings.Repeat("x", MaxReply)}
	p, err := NewReader(bufio.NewReader(strings.NewReader(string(long.Append(nil)))), MaxReply).Next()
	if got := ParseReply(string(p)); err != nil || got.Status != Temp {
		t.Errorf("a reply over Postfix's limit must become TEMP, got %v (%v)", got.Status, err)
	}
}

func TestParseRequest(t *testing.T) {
	for in, want := range map[string]Request{
		"postfix example.com":    {"postfix", "example.com"},
		"example.com":            {"example.com", ""},
		"postfix ":               {"postfix", ""},
		"postfix a b":            {"postfix", "a b"},
		"QUERYwithTLSRPT [x]:25": {"QUERYwithTLSRPT", "[x]:25"},
	} {
		if got := ParseRequest([]byte(in)); got != want {
			t.Errorf("%q: got %+v, want %+v", in, got, want)
		}
	}
}

// FuzzReader: any input either yields netstrings that re-encode to the
// bytes consumed, or stops with an error; it never panics or reads past a
// payload bigger than the limit.
func FuzzReader(f *testing.F) {
	for _, s := range []string{"3:abc,", "0:,", "1024:", "3:ab;", "10:postfix a,", "5:a b c,4:abcd,"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bufio.NewReader(strings.NewReader(string(in))), 64)
		var re []byte
		for {
			p, err := r.Next()
			if err != nil {
				break
			}
			if len(p) > 64 {
				t.Fatalf("payload of %d bytes over the limit", len(p))
			}
			re = AppendNetstring(re, string(p))
		}
		if !strings.HasPrefix(string(in), string(re)) {
			t.Fatalf("re-encoded %q is not a prefix of the input %q", re, in)
		}
	})
}
