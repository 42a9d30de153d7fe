package txtrec

import (
	"strings"
	"testing"
)

func TestParseFields(t *testing.T) {
	r := Parse("v=STSv1; id=1 ;ext=a", "v=STSv1")
	if len(r.Problems) != 0 {
		t.Fatalf("problems: %+v", r.Problems)
	}
	want := []Field{{Name: "id", Value: "1", Raw: "id=1", Offset: 9}, {Name: "ext", Value: "a", Raw: "ext=a", Offset: 15}}
	if len(r.Fields) != len(want) {
		t.Fatalf("fields = %+v, want %+v", r.Fields, want)
	}
	for i := range want {
		if r.Fields[i] != want[i] {
			t.Errorf("field %d = %+v, want %+v", i, r.Fields[i], want[i])
		}
	}
}

func TestExtGrammar(t *testing.T) {
	for s, want := range map[string]bool{"a": true, "1x": true, "a_b-c.d": true, "_a": false, "": false, strings.Repeat("a", 32): true, strings.Repeat("a", 33): false, "a b": false} {
		if got := ValidExtName(s); got != want {
			t.Errorf("ValidExtName(%q) = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{"bar": true, "a=b": false, "a;b": false, "a b": false, "": false, "~!": true} {
		if got := ValidExtValue(s); got != want {
			t.Errorf("ValidExtValue(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzParse checks that offsets point at the text they describe and that
// recovered fields are pieces of the record.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"v=STSv1; id=1", "v=STSv1 ; a = b;;c", "\"v=STSv1\"", " v=stsv1;x", "v=STSv1;\u00a0id=1 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		r := Parse(txt, "v=STSv1")
		for _, p := range r.Problems {
			if p.Offset < 0 || p.Offset > len(txt) || p.Detail == "" {
				t.Fatalf("bad problem %+v for %q", p, txt)
			}
		}
		for _, fl := range r.Fields {
			if fl.Offset < 0 || fl.Offset+len(fl.Raw) > len(txt) || txt[fl.Offset:fl.Offset+len(fl.Raw)] != fl.Raw {
				t.Fatalf("field %+v does not point into %q", fl, txt)
			}
		}
	})
}
