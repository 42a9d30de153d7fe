package dane

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func mustParse(t testing.TB, s string) TLSA {
	t.Helper()
	r, err := ParseTLSA(s)
	if err != nil {
		t.Fatalf("ParseTLSA(%q): %v", s, err)
	}
	return r
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The example RRset of RFC 7671 §9: a P-256 SubjectPublicKeyInfo in full and
// its SHA2-256 and SHA2-512 digests.
const (
	rfc7671SPKI = `3059301306072A8648CE3D020106082A
	               8648CE3D0301070342000471CB1F504F
	               9E4B33971376C005445DACD33CD79A28
	               81C3DED1981F18E7AAA76609DD0E4EF2
	               8265C82703030AD60C5DBA6FB8A9397A
	               C0FCF06D424C885D484887`
	rfc7671SHA256 = `3FE246A848798236DD2AB78D39F0651D
	                 6B6E7CA8E2984012EB0A2E1AC8A87B72`
	rfc7671SHA512 = `D4F5AF015B46C5057B841C7E7BAB759C
	                 BF029526D29520C5BE6A32C67475439E
	                 54AB3A945D80C743347C9BD4DADC9D8D
	                 57FAB78EAA835362F3CA07CCC19A3214`
)

// DANE-REC-1: the presentation form and the RFC 7218 mnemonic form parse
// identically; hex case and whitespace do not matter (RFC 6698 §2.2;
// RFC 7218 §2).
func TestParseTLSAForms(t *testing.T) {
	const h = "3fe246a848798236dd2ab78d39f0651d6b6e7ca8e2984012eb0a2e1ac8a87b72"
	want := TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: mustHex(t, h)}
	for _, s := range []string{
		"3 1 1 " + h,
		"3 1 1 " + strings.ToUpper(h),
		"DANE-EE SPKI SHA2-256 " + h,
		"dane-ee spki sha2-256 " + strings.ToUpper(h),
		"  DANE-EE\t1 SHA2-256 " + h[:20] + " " + h[20:] + "\n",
		"3 1 1 ( " + h[:32] + "\n\t" + h[32:] + " )",
		"3 1 1 (" + h + ")",
		"03 001 1 " + h,
	} {
		got, err := ParseTLSA(s)
		if err != nil {
			t.Errorf("DANE-REC-1: ParseTLSA(%q): %v", s, err)
			continue
		}
		if !got.Equal(want) {
			t.Errorf("DANE-REC-1: ParseTLSA(%q) = %v, want %v", s, got, want)
		}
	}
	if got := want.String(); got != "3 1 1 "+h {
		t.Errorf("String() = %q", got)
	}
	if got := want.Mnemonic(); got != "DANE-EE SPKI SHA2-256" {
		t.Errorf("Mnemonic() = %q", got)
	}
}

// RFC 7218 §3.1 examples and every acronym.
func TestParseTLSAMnemonics(t *testing.T) {
	for _, tc := range []struct {
		in      string
		u, s, m uint8
		mnem    string
	}{
		{"PKIX-TA CERT SHA2-512 00", 0, 0, 2, "PKIX-TA Cert SHA2-512"},
		{"DANE-TA SPKI SHA2-256 00", 2, 1, 1, "DANE-TA SPKI SHA2-256"},
		{"pkix-ee cert full 00", 1, 0, 0, "PKIX-EE Cert Full"},
		{"PrivCert PrivSel PrivMatch 00", 255, 255, 255, "PrivCert PrivSel PrivMatch"},
		{"7 9 200 00", 7, 9, 200, "7 9 200"},
	} {
		got := mustParse(t, tc.in)
		if got.Usage != tc.u || got.Selector != tc.s || got.MatchingType != tc.m {
			t.Errorf("ParseTLSA(%q) = %v, want %d %d %d", tc.in, got, tc.u, tc.s, tc.m)
		}
		if m := got.Mnemonic(); m != tc.mnem {
			t.Errorf("Mnemonic(%q) = %q, want %q", tc.in, m, tc.mnem)
		}
	}
}

func TestParseTLSAErrors(t *testing.T) {
	for _, s := range []string{
		"",
		"3 1 1",
		"3 1",
		"3 1 1 ()",
		"256 1 1 00",
		"-1 1 1 00",
		"+3 1 1 00",
		"DANE-XX 1 1 00",
		"3 SPK 1 00",
		"3 1 SHA256 00", // the acronym is SHA2-256
		"3 1 1 0",
		"3 1 1 0g",
		"3 1 1 (00",
		"3 1 1 0x00",
		"3 1 1 " + strings.Repeat("00", MaxDataLen+1),
	} {
		if r, err := ParseTLSA(s); err == nil {
			t.Errorf("ParseTLSA(%.40q) = %v, want an error", s, r)
		} else if !strings.HasPrefix(err.Error(), "dane: ") {
			t.Errorf("ParseTLSA(%.40q) error %q lacks the package prefix", s, err)
		}
	}
}

func TestTLSAJSON(t *testing.T) {
	in := mustParse(t, "3 1 1 0a0b")
	b, err := json.Marshal(struct{ R TLSA }{in})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"R":"3 1 1 0a0b"}`; got != want {
		t.Errorf("json = %s, want %s", got, want)
	}
	var out struct{ R TLSA }
	if err := json.Unmarshal(b, &out); err != nil || !out.R.Equal(in) {
		t.Errorf("round trip = %v, %v", out.R, err)
	}
}

// DANE-REC-2, DANE-REC-3: usability for SMTP (RFC 6698 §4.1; RFC 7672
// §3.1, §3.1.3; RFC 7671 §9).
func TestUsability(t *testing.T) {
	p := testPKI(t)
	h32 := strings.Repeat("ab", 32)
	full := Record(DANEEE, Cert, Full, p.leafEC)
	spki := Record(DANEEE, SPKI, Full, p.leafEC)
	for _, tc := range []struct {
		id   string
		rec  TLSA
		want Usability
		in   string // the reason must mention this
	}{
		{"DANE-REC-2", mustParse(t, "3 1 1 "+h32), Usable, "3 1 1"},
		{"DANE-REC-2", mustParse(t, "2 0 2 "+h32+h32), Usable, "DANE-TA Cert SHA2-512"},
		{"DANE-REC-2 31-byte SHA-256", mustParse(t, "3 1 1 "+h32[2:]), Malformed, "31 bytes"},
		{"DANE-REC-2 33-byte SHA-256", mustParse(t, "3 1 1 "+h32+"00"), Malformed, "33 bytes"},
		{"DANE-REC-2 SHA-512 length", mustParse(t, "3 1 2 "+h32), Malformed, "64-byte"},
		{"DANE-REC-2 full cert", full, Usable, "3 0 0"},
		{"DANE-REC-2 full SPKI", spki, Usable, "3 1 0"},
		{"DANE-REC-2 RFC 7671 §9 SPKI", TLSA{3, 1, 0, mustHex(t, rfc7671SPKI)}, Usable, "3 1 0"},
		{"DANE-REC-2 SPKI as cert", TLSA{3, 0, 0, spki.Data}, Malformed, "certificate"},
		{"DANE-REC-2 cert as SPKI", TLSA{3, 1, 0, full.Data}, Malformed, "SubjectPublicKeyInfo"},
		{"DANE-REC-2 trailing data", TLSA{3, 1, 0, append(append([]byte{}, spki.Data...), 0)}, Malformed, "trailing"},
		{"DANE-REC-2 empty full", TLSA{3, 0, 0, nil}, Malformed, "no data"},
		{"DANE-REC-3 PKIX-EE", mustParse(t, "1 1 1 "+h32), UnusablePKIX, "usage 1 (PKIX-EE)"},
		{"DANE-REC-3 PKIX-TA", mustParse(t, "0 0 1 "+h32), UnusablePKIX, "usage 0 (PKIX-TA)"},
		{"DANE-REC-2 usage 4", mustParse(t, "4 1 1 "+h32), UnusableParams, "usage 4"},
		{"DANE-REC-2 PrivCert", mustParse(t, "255 1 1 "+h32), UnusableParams, "PrivCert"},
		{"DANE-REC-2 selector 2", mustParse(t, "3 2 1 "+h32), UnusableParams, "selector 2"},
		{"DANE-REC-2 matching 3", mustParse(t, "3 1 3 "+h32), UnusableParams, "matching type 3"},
		{"DANE-REC-2 PrivMatch", mustParse(t, "3 1 255 "+h32), UnusableParams, "PrivMatch"},
	} {
		got, why := tc.rec.Usability()
		if got != tc.want || !strings.Contains(why, tc.in) {
			t.Errorf("%s: Usability(%s) = %v, %q; want %v mentioning %q", tc.id, tc.rec.Short(), got, why, tc.want, tc.in)
		}
	}
}

// DANE-VER-1: known answers from RFC 7671 §9: the SHA2-256 and SHA2-512 of
// the SPKI there are the 3 1 1 and 3 1 2 records of the same key.
func TestDigestsKnownAnswer(t *testing.T) {
	spki := mustHex(t, rfc7671SPKI)
	s256, s512 := sha256.Sum256(spki), sha512.Sum512(spki)
	if got, want := hex.EncodeToString(s256[:]), strings.ToLower(strings.Join(strings.Fields(rfc7671SHA256), "")); got != want {
		t.Errorf("SHA2-256 = %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(s512[:]), strings.ToLower(strings.Join(strings.Fields(rfc7671SHA512), "")); got != want {
		t.Errorf("SHA2-512 = %s, want %s", got, want)
	}
}

// DANE-VER-2: digest algorithm agility (RFC 7671 §9).
func TestEffective(t *testing.T) {
	h32, h64 := strings.Repeat("11", 32), strings.Repeat("22", 64)
	spki := mustHex(t, rfc7671SPKI)
	r311 := mustParse(t, "3 1 1 "+h32)
	r312 := mustParse(t, "3 1 2 "+h64)
	r310 := TLSA{3, 1, 0, spki}
	r201 := mustParse(t, "2 0 1 "+h32)
	r211 := mustParse(t, "2 1 1 "+h32)
	bad := mustParse(t, "3 1 2 "+h32) // malformed: does not make 3 1 1 weaker
	pkix := mustParse(t, "1 1 2 "+h64)
	for _, tc := range []struct {
		name          string
		in            []TLSA
		used, ignored []TLSA
	}{
		{"RFC 7671 §9 example", []TLSA{r311, r312, r310}, []TLSA{r312, r310}, []TLSA{r311}},
		{"per usage and selector", []TLSA{r311, r201, r312, r211}, []TLSA{r201, r312, r211}, []TLSA{r311}},
		{"malformed stronger digest discarded first", []TLSA{r311, bad}, []TLSA{r311}, nil},
		{"unusable usage discarded first", []TLSA{r311, pkix}, []TLSA{r311}, nil},
		{"only SHA2-256", []TLSA{r311, r201}, []TLSA{r311, r201}, nil},
	} {
		used, ignored := Effective(tc.in)
		if !equalSets(used, tc.used) || !equalSets(ignored, tc.ignored) {
			t.Errorf("DANE-VER-2 %s: Effective = %v, %v; want %v, %v", tc.name, used, ignored, tc.used, tc.ignored)
		}
	}
}

func equalSets(a, b []TLSA) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// DANE-VER-1: Record computes selector 0 over cert.Raw and selector 1 over
// the SPKI (RFC 6698 §2.1.2, §2.1.3).
func TestRecord(t *testing.T) {
	p := testPKI(t)
	c := p.leafEC
	s256 := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	c512 := sha512.Sum512(c.Raw)
	if got := Record(3, 1, 1, c); !got.Equal(TLSA{3, 1, 1, s256[:]}) {
		t.Errorf("3 1 1 = %v", got)
	}
	if got := Record(2, 0, 2, c); !got.Equal(TLSA{2, 0, 2, c512[:]}) {
		t.Errorf("2 0 2 = %v", got)
	}
	if got := Record(3, 0, 0, c); !got.Equal(TLSA{3, 0, 0, c.Raw}) {
		t.Errorf("3 0 0 differs")
	}
	if got := Record(3, 1, 7, c); len(got.Data) != 0 {
		t.Errorf("unknown matching type gave data %x", got.Data)
	}
	if got := Record(3, 1, 1, nil); len(got.Data) != 0 || got.Params() != "3 1 1" {
		t.Errorf("nil cert gave %v", got)
	}
}

func ExampleParseTLSA() {
	t, err := ParseTLSA("DANE-EE SPKI SHA2-256 3FE246A848798236DD2AB78D39F0651D 6B6E7CA8E2984012EB0A2E1AC8A87B72")
	if err != nil {
		fmt.Println(err)
		return
	}
	u, why := t.Usability()
	fmt.Println(t)
	fmt.Println(t.Mnemonic())
	fmt.Println(u, "-", why)
	// Output:
	// 3 1 1 3fe246a848798236dd2ab78d39f0651d6b6e7ca8e2984012eb0a2e1ac8a87b72
	// DANE-EE SPKI SHA2-256
	// usable - 3 1 1 (DANE-EE SPKI SHA2-256) is usable for SMTP
}
