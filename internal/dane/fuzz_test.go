package dane

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

// FuzzParseTLSA: accepted input round-trips through String, and accepted
// records stay within RFC 6698 §2.1 bounds.
func FuzzParseTLSA(f *testing.F) {
	for _, s := range []string{
		"3 1 1 3fe246a848798236dd2ab78d39f0651d6b6e7ca8e2984012eb0a2e1ac8a87b72",
		"DANE-EE SPKI SHA2-256 3FE246A848798236DD2AB78D39F0651D 6B6E7CA8E2984012EB0A2E1AC8A87B72",
		"2 0 1 ( E8B54E0B4BAA815B06D3462D65FBC7C0\n CF556ECCF9F5303EBFBB77D022F834C0 )",
		"PKIX-TA CERT SHA2-512 00",
		"PrivCert PrivSel PrivMatch ff",
		"3 1 1",
		"3 1 1 0",
		"3 1 1 ()",
		"256 1 1 00",
		"3 1 1 0g",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseTLSA(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dane: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if len(r.Data) == 0 || len(r.Data) > MaxDataLen {
			t.Fatalf("accepted %d bytes of data", len(r.Data))
		}
		back, err := ParseTLSA(r.String())
		if err != nil {
			t.Fatalf("ParseTLSA(%q) (from %q): %v", r.String(), s, err)
		}
		if !back.Equal(r) {
			t.Fatalf("round trip %q -> %v -> %v", s, r, back)
		}
		if m, err := ParseTLSA(r.Mnemonic() + " " + strings.ToUpper(r.String()[len(r.Params()):])); err != nil || !m.Equal(r) {
			t.Fatalf("mnemonic form of %v: %v, %v", r, m, err)
		}
		_, _ = r.Usability()
	})
}

// decodeRecords reads records from fuzz bytes: usage, selector, matching
// type, a big-endian uint16 length, then that many bytes of data (cut
// short at the end of the input).
func decodeRecords(b []byte) []TLSA {
	var out []TLSA
	for len(b) >= 5 {
		t := TLSA{Usage: b[0], Selector: b[1], MatchingType: b[2]}
		n := int(binary.BigEndian.Uint16(b[3:5]))
		b = b[5:]
		n = min(n, len(b))
		t.Data, b = b[:n], b[n:]
		out = append(out, t)
	}
	return out
}

func encodeRecords(records ...TLSA) []byte {
	var out []byte
	for _, t := range records {
		out = append(out, t.Usage, t.Selector, t.MatchingType)
		out = binary.BigEndian.AppendUint16(out, uint16(len(t.Data)))
		out = append(out, t.Data...)
	}
	return out
}

// FuzzVerify: random records against a fixed chain never panic, and the
// result is consistent.
func FuzzVerify(f *testing.F) {
	chain := fuzzChain(f)
	leaf, inter, root := chain[0], chain[1], chain[2]
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	f.Add(encodeRecords(Record(3, 1, 1, leaf)), at, uint8(3), uint8(0))
	f.Add(encodeRecords(Record(3, 0, 0, leaf), Record(3, 1, 2, root)), at, uint8(3), uint8(0))
	f.Add(encodeRecords(Record(2, 0, 1, inter)), at, uint8(3), uint8(1))
	f.Add(encodeRecords(Record(2, 1, 0, root)), at, uint8(2), uint8(0))
	f.Add(encodeRecords(Record(2, 0, 0, root)), at, uint8(1), uint8(0))
	f.Add(encodeRecords(Record(2, 1, 0, inter)), at, uint8(1), uint8(0))
	f.Add(encodeRecords(Record(1, 1, 1, leaf), TLSA{3, 1, 1, make([]byte, 31)}), at, uint8(3), uint8(0))
	f.Add(encodeRecords(Record(2, 0, 1, root)), int64(0), uint8(3), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, unix int64, nCerts, nameSet uint8) {
		records := decodeRecords(data)
		c := chain[:min(int(nCerts)%4, len(chain))]
		var names []string
		switch nameSet % 4 {
		case 0:
			names = []string{"mx.example.com"}
		case 1:
			names = []string{"other.example.net", "example.com"}
		case 2:
			names = []string{"*.example.com", "MX.EXAMPLE.COM."}
		}
		r := Verify(records, c, VerifyOptions{Names: names, Now: time.Unix(unix, 0)})
		if r.Authenticated != (r.Matched != nil) {
			t.Fatalf("Authenticated %v but Matched %v", r.Authenticated, r.Matched)
		}
		if r.Usable < 0 || r.Usable > len(records) {
			t.Fatalf("Usable = %d of %d records", r.Usable, len(records))
		}
		if r.MatchedCert < -1 || r.MatchedCert >= len(c) {
			t.Fatalf("MatchedCert = %d for %d certificates", r.MatchedCert, len(c))
		}
		if r.Authenticated {
			if !r.Matched.usable() {
				t.Fatalf("matched unusable record %v", r.Matched)
			}
			if r.Matched.Usage == DANEEE && r.MatchedCert != 0 {
				t.Fatalf("DANE-EE matched certificate %d", r.MatchedCert)
			}
			if r.Matched.Usage == DANETA && r.MatchedName == "" {
				t.Fatal("DANE-TA authenticated without a name")
			}
		}
		for _, p := range r.Problems {
			if p.Code == "" || p.Detail == "" {
				t.Fatalf("empty problem %+v", p)
			}
		}
		_ = Stale(records, c)
		_ = CheckRollover(records, c)
		_ = Recommend(c)
		u, i := Effective(records)
		if len(u)+len(i) != r.Usable {
			t.Fatalf("Effective %d+%d, Usable %d", len(u), len(i), r.Usable)
		}
	})
}

// The fuzz chain is deterministic and its seeds mean what they say.
func TestFuzzChain(t *testing.T) {
	a, b := fuzzChain(t), fuzzChain(t)
	for i := range a {
		if string(a[i].Raw) != string(b[i].Raw) {
			t.Fatalf("certificate %d differs between runs", i)
		}
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, rec := range []TLSA{Record(3, 1, 1, a[0]), Record(2, 0, 1, a[1]), Record(2, 1, 0, a[2]), Record(2, 0, 0, a[2])} {
		if r := Verify([]TLSA{rec}, a, VerifyOptions{Names: []string{"mx.example.com"}, Now: at}); !r.Authenticated {
			t.Errorf("%s does not authenticate the fuzz chain: %+v", rec.Short(), r.Problems)
		}
	}
}
