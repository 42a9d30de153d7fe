// Package dane implements DANE for SMTP (RFC 7672, RFC 6698, RFC 7671,
// RFC 7218) as pure functions: it parses TLSA records, classifies them as
// usable or not for SMTP, verifies a certificate chain presented by an MX
// host against a TLSA RRset, and computes the records a server should
// publish. It does no I/O.
//
// The caller looks the records up and decides their DNSSEC status: only
// records from a secure TLSA RRset have any effect (RFC 7672 §2.1.1,
// §2.2), and converting the DNS library's record type to [TLSA] is the
// caller's job.
//
// [Verify] follows what DANE senders do: DANE-EE(3) records are compared
// with the server certificate only, with no name, issuer or date checks
// (RFC 7672 §3.1.1, §3.2.1); DANE-TA(2) records must match a CA
// certificate the server sent, the path from the server certificate to it
// must verify, and the server certificate must name one of the reference
// identifiers (RFC 7672 §3.1.2, §3.2.2, §3.2.3); digest algorithm agility
// (RFC 7671 §9) is applied before matching.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Certificate usages (RFC 6698 §2.1.1; mnemonics from RFC 7218 §2.1).
const (
	PKIXTA   uint8 = 0
	PKIXEE   uint8 = 1
	DANETA   uint8 = 2
	DANEEE   uint8 = 3
	PrivCert uint8 = 255
)

// Selectors (RFC 6698 §2.1.2; RFC 7218 §2.2).
const (
	Cert    uint8 = 0 // the whole certificate (DER)
	SPKI    uint8 = 1 // the SubjectPublicKeyInfo (DER)
	PrivSel uint8 = 255
)

// Matching types (RFC 6698 §2.1.3; RFC 7218 §2.3).
const (
	Full      uint8 = 0 // the selected content itself
	SHA256    uint8 = 1 // SHA2-256 of the selected content
	SHA512    uint8 = 2 // SHA2-512 of the selected content
	PrivMatch uint8 = 255
)

// MaxDataLen is the largest certificate association data a TLSA record can
// carry: RDLENGTH is 16 bits (RFC 1035 §3.2.1) and usage, selector and
// matching type take one octet each (RFC 6698 §2.1).
const MaxDataLen = 65535 - 3

// TLSA is the RDATA of one TLSA record (RFC 6698 §2.1).
type TLSA struct {
	Usage        uint8
	Selector     uint8
	MatchingType uint8
	Data         []byte // certificate association data
}

type mnemonic struct {
	value uint8
	name  string
}

// RFC 7218 §2.1–§2.3.
var (
	usageNames    = []mnemonic{{PKIXTA, "PKIX-TA"}, {PKIXEE, "PKIX-EE"}, {DANETA, "DANE-TA"}, {DANEEE, "DANE-EE"}, {PrivCert, "PrivCert"}}
	selectorNames = []mnemonic{{Cert, "Cert"}, {SPKI, "SPKI"}, {PrivSel, "PrivSel"}}
	matchingNames = []mnemonic{{Full, "Full"}, {SHA256, "SHA2-256"}, {SHA512, "SHA2-512"}, {PrivMatch, "PrivMatch"}}
)

func nameOf(table []mnemonic, v uint8) string {
	for _, m := range table {
		if m.value == v {
			return m.name
		}
	}
	return strconv.Itoa(int(v))
}

// ParseTLSA parses the presentation form of a TLSA record's RDATA: usage,
// selector and matching type, each as a decimal number or as its RFC 7218
// mnemonic (case-insensitive), followed by the association data in
// hexadecimal, either case, which may contain whitespace (RFC 6698 §2.2)
// and may be wrapped in one pair of zone-file parentheses. Examples:
//
//	3 1 1 0a0b…
//	DANE-EE SPKI SHA2-256 0A0B…
//	2 0 1 ( E8B54E0B4BAA815B06D3462D65FBC7C0
//	        CF556ECCF9F5303EBFBB77D022F834C0 )
//
// ParseTLSA checks the syntax only; [TLSA.Usability] says whether the
// record is usable for SMTP.
func ParseTLSA(s string) (TLSA, error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 3:
		return TLSA{}, errors.New("dane: TLSA record has no certificate association data")
	case len(f) < 3:
		return TLSA{}, fmt.Errorf("dane: TLSA record needs usage, selector, matching type and data, found %d fields", len(f))
	}
	var t TLSA
	var err error
	if t.Usage, err = parseParam(f[0], "usage", usageNames); err != nil {
		return TLSA{}, err
	}
	if t.Selector, err = parseParam(f[1], "selector", selectorNames); err != nil {
		return TLSA{}, err
	}
	if t.MatchingType, err = parseParam(f[2], "matching type", matchingNames); err != nil {
		return TLSA{}, err
	}
	data := strings.Join(f[3:], "")
	if strings.HasPrefix(data, "(") && strings.HasSuffix(data, ")") {
		data = data[1 : len(data)-1]
	}
	if data == "" {
		return TLSA{}, errors.New("dane: TLSA record has no certificate association data")
	}
	if len(data) > 2*MaxDataLen {
		return TLSA{}, fmt.Errorf("dane: association data is %d hex digits, more than the %d a TLSA record can hold", len(data), 2*MaxDataLen)
	}
	t.Data, err = hex.DecodeString(data)
	if err != nil {
		var bad hex.InvalidByteError
		if errors.As(err, &bad) {
			return TLSA{}, fmt.Errorf("dane: association data must be hexadecimal, found %q", rune(bad))
		}
		return TLSA{}, fmt.Errorf("dane: association data has an odd number (%d) of hex digits", len(data))
	}
	return t, nil
}

func parseParam(tok, what string, table []mnemonic) (uint8, error) {
	if n, err := strconv.ParseUint(tok, 10, 8); err == nil {
		return uint8(n), nil
	}
	names := make([]string, 0, len(table))
	for _, m := range table {
		if strings.EqualFold(tok, m.name) {
			return m.value, nil
		}
		names = append(names, m.name)
	}
	return 0, fmt.Errorf("dane: %s %q is neither a number from 0 to 255 nor one of %s", what, tok, strings.Join(names, ", "))
}

// String returns the presentation form with numbers and lower-case hex,
// e.g. "3 1 1 0a0b…".
func (t TLSA) String() string {
	if len(t.Data) == 0 {
		return fmt.Sprintf("%d %d %d", t.Usage, t.Selector, t.MatchingType)
	}
	return fmt.Sprintf("%d %d %d %s", t.Usage, t.Selector, t.MatchingType, hex.EncodeToString(t.Data))
}

// Mnemonic returns the parameters as RFC 7218 acronyms, e.g.
// "DANE-EE SPKI SHA2-256"; values without an acronym are given as numbers.
func (t TLSA) Mnemonic() string {
	return nameOf(usageNames, t.Usage) + " " + nameOf(selectorNames, t.Selector) + " " + nameOf(matchingNames, t.MatchingType)
}

// Params returns the three parameters as numbers, e.g. "3 1 1".
func (t TLSA) Params() string {
	return fmt.Sprintf("%d %d %d", t.Usage, t.Selector, t.MatchingType)
}

// Short returns the presentation form with the data cut to 16 hex digits,
// for messages.
func (t TLSA) Short() string {
	const n = 8
	if len(t.Data) <= n {
		return t.String()
	}
	return fmt.Sprintf("%s %s…", t.Params(), hex.EncodeToString(t.Data[:n]))
}

// Equal reports whether t and u are the same record.
func (t TLSA) Equal(u TLSA) bool {
	return t.Usage == u.Usage && t.Selector == u.Selector && t.MatchingType == u.MatchingType && bytes.Equal(t.Data, u.Data)
}

// MarshalText encodes t in presentation form, so that JSON shows
// "3 1 1 0a0b…".
func (t TLSA) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText parses the presentation form, as ParseTLSA.
func (t *TLSA) UnmarshalText(b []byte) error {
	p, err := ParseTLSA(string(b))
	if err != nil {
		return err
	}
	*t = p
	return nil
}

// Usability classifies a record for SMTP.
type Usability int

// Usability values.
const (
	Usable         Usability = iota
	UnusablePKIX             // usage 0 or 1: SMTP clients ignore it (RFC 7672 §3.1.3)
	UnusableParams           // a usage, selector or matching type that is not defined (or private use)
	Malformed                // a digest of the wrong length, or Full data that does not parse
)

func (u Usability) String() string {
	switch u {
	case Usable:
		return "usable"
	case UnusablePKIX:
		return "unusable-pkix"
	case UnusableParams:
		return "unusable-params"
	case Malformed:
		return "malformed"
	}
	return "usability(" + strconv.Itoa(int(u)) + ")"
}

// Usability says whether SMTP clients use the record, and why not in plain
// words naming the values. Usable are usage 2 or 3, selector 0 or 1 and
// matching type 0, 1 or 2, with data of the right form: a 32-byte digest
// for SHA2-256, 64 bytes for SHA2-512, and for Full a DER certificate
// (selector 0) or SubjectPublicKeyInfo (selector 1) (RFC 6698 §4.1;
// RFC 7672 §3.1; RFC 7671 §9).
func (t TLSA) Usability() (Usability, string) {
	switch t.Usage {
	case DANETA, DANEEE:
	case PKIXTA, PKIXEE:
		// RFC 7672 §3.1.3: opportunistic DANE TLS has no set of trusted
		// CAs, so PKIX usages cannot be verified and are unusable.
		return UnusablePKIX, fmt.Sprintf("usage %d (%s) asks for a check against public CAs, which SMTP clients do not do; they ignore the record (RFC 7672 §3.1.3)", t.Usage, nameOf(usageNames, t.Usage))
	case PrivCert:
		return UnusableParams, "usage 255 (PrivCert) is reserved for private use; SMTP clients ignore the record (RFC 6698 §4.1)"
	default:
		return UnusableParams, fmt.Sprintf("usage %d is not defined; only 2 (DANE-TA) and 3 (DANE-EE) are used for SMTP (RFC 7672 §3.1)", t.Usage)
	}
	if t.Selector != Cert && t.Selector != SPKI {
		return UnusableParams, fmt.Sprintf("selector %d is not supported; only 0 (Cert) and 1 (SPKI) are defined (RFC 6698 §2.1.2)", t.Selector)
	}
	switch t.MatchingType {
	case Full:
		if len(t.Data) == 0 {
			return Malformed, fmt.Sprintf("matching type 0 (Full) needs the whole %s, but the record has no data (RFC 6698 §2.1.4)", selectedThing(t.Selector))
		}
		var err error
		if t.Selector == Cert {
			_, err = x509.ParseCertificate(t.Data)
		} else {
			err = checkSPKI(t.Data)
		}
		if err != nil {
			return Malformed, fmt.Sprintf("matching type 0 (Full) with selector %d (%s) must hold a DER %s, but the data does not parse as one: %v (RFC 6698 §2.1.4)", t.Selector, nameOf(selectorNames, t.Selector), selectedThing(t.Selector), err)
		}
	case SHA256, SHA512:
		want := sha256.Size
		if t.MatchingType == SHA512 {
			want = sha512.Size
		}
		if len(t.Data) != want {
			// RFC 7671 §9: records with an incorrect digest length are
			// discarded as malformed.
			return Malformed, fmt.Sprintf("matching type %d (%s) needs a %d-byte digest (%d hex digits), but the record has %d bytes (%d hex digits) (RFC 7671 §9)", t.MatchingType, nameOf(matchingNames, t.MatchingType), want, 2*want, len(t.Data), 2*len(t.Data))
		}
	case PrivMatch:
		return UnusableParams, "matching type 255 (PrivMatch) is reserved for private use; SMTP clients ignore the record (RFC 6698 §4.1)"
	default:
		return UnusableParams, fmt.Sprintf("matching type %d is not supported; only 0 (Full), 1 (SHA2-256) and 2 (SHA2-512) are defined (RFC 6698 §2.1.3)", t.MatchingType)
	}
	return Usable, fmt.Sprintf("%s (%s) is usable for SMTP", t.Params(), t.Mnemonic())
}

func selectedThing(selector uint8) string {
	if selector == SPKI {
		return "SubjectPublicKeyInfo"
	}
	return "certificate"
}

// checkSPKI checks that b is exactly one DER SubjectPublicKeyInfo
// (RFC 5280 §4.1.2.7). The key algorithm may be one Go does not know.
func checkSPKI(b []byte) error {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(b, &spki)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%d bytes of trailing data", len(rest))
	}
	return nil
}

func (t TLSA) usable() bool {
	u, _ := t.Usability()
	return u == Usable
}

func (t TLSA) clone() TLSA {
	t.Data = bytes.Clone(t.Data)
	return t
}

// digestRank orders matching types by strength for digest algorithm
// agility (RFC 7671 §9): SHA2-512 beats SHA2-256. The order is fixed.
func digestRank(mtype uint8) int {
	switch mtype {
	case SHA256:
		return 1
	case SHA512:
		return 2
	}
	return 0
}

// Effective applies digest algorithm agility (RFC 7671 §9; RFC 7672 §5):
// unusable and malformed records are discarded first; then, for each
// (usage, selector), all Full(0) records are used together with the
// records of the strongest digest type present (SHA2-512 beats SHA2-256).
// Ignored holds the usable records that agility drops; unusable records
// are in neither list. Both keep the input order.
func Effective(records []TLSA) (used, ignored []TLSA) {
	type key struct{ usage, selector uint8 }
	best := map[key]int{}
	for _, t := range records {
		if !t.usable() {
			continue
		}
		k := key{t.Usage, t.Selector}
		if r := digestRank(t.MatchingType); r > best[k] {
			best[k] = r
		}
	}
	for _, t := range records {
		if !t.usable() {
			continue
		}
		if t.MatchingType == Full || digestRank(t.MatchingType) == best[key{t.Usage, t.Selector}] {
			used = append(used, t)
		} else {
			ignored = append(ignored, t)
		}
	}
	return used, ignored
}

// Record computes the record with the given parameters for cert: the
// selected content (RFC 6698 §2.1.2) as is or as its digest (§2.1.3).
// For a nil certificate or an unknown selector or matching type the Data
// is empty, which makes the record malformed or unusable.
func Record(usage, selector, mtype uint8, cert *x509.Certificate) TLSA {
	t := TLSA{Usage: usage, Selector: selector, MatchingType: mtype}
	if cert == nil {
		return t
	}
	switch selector {
	case Cert:
		t.Data = digest(mtype, cert.Raw)
	case SPKI:
		t.Data = digest(mtype, cert.RawSubjectPublicKeyInfo)
	}
	return t
}

func digest(mtype uint8, in []byte) []byte {
	switch mtype {
	case Full:
		return bytes.Clone(in)
	case SHA256:
		s := sha256.Sum256(in)
		return s[:]
	case SHA512:
		s := sha512.Sum512(in)
		return s[:]
	}
	return nil
}
