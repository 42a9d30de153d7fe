// Package tlsrpt implements the pure parts of SMTP TLS Reporting (RFC 8460):
// the _smtp._tls TXT record. It does no I/O.
package tlsrpt

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"strings"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/txtrec"
)

// VersionTag starts every TLS-RPT record.
const VersionTag = "v=TLSRPTv1"

// RecordText is the _smtp._tls TXT record to publish for report URIs
// (RFC 8460 §3: "v=TLSRPTv1; rua=<uri>,<uri>").
func RecordText(rua []string) string { return VersionTag + "; rua=" + strings.Join(rua, ",") }

// UsableURI reports whether u is a report URI senders can deliver to: a
// record of its own made from it parses with u as its one usable URI
// (RFC 8460 §3: mailto: or https:).
func UsableURI(u string) bool {
	rec, _ := ParseRecord(RecordText([]string{u}))
	return rec != nil && len(rec.Usable) == 1 && rec.Usable[0] == u
}

// Code names a kind of problem in a TLS-RPT record.
type Code string

// Problem codes (RFC 8460 §3).
const (
	RecordNonASCII             Code = "record-non-ascii"
	RecordQuoted               Code = "record-quoted"
	RecordVersion              Code = "record-version"
	RecordSpaceBeforeSemicolon Code = "record-space-before-semicolon"
	RecordSpaceAroundEquals    Code = "record-space-around-equals"
	RecordSyntax               Code = "record-syntax"
	RecordTrailingSpace        Code = "record-trailing-space"
	RUAMissing                 Code = "rua-missing"
	RUAInvalid                 Code = "rua-invalid"     // not a URI by the grammar: fatal
	RUAUnsupported             Code = "rua-unsupported" // a URI, but not mailto: or https:
	RUARepeated                Code = "rua-repeated"    // several rua= fields (merged)
	Extension                  Code = "extension"
)

// Problem is one deviation from RFC 8460 §3.
type Problem struct {
	Code   Code   `json:"code"`
	Fatal  bool   `json:"fatal"` // makes the record invalid
	Offset int    `json:"offset,omitempty"`
	Text   string `json:"text,omitempty"`
	Detail string `json:"detail"`
}

// Ext is an extension field.
type Ext struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Record is a valid TLS-RPT record.
type Record struct {
	RUA        []string `json:"rua"`        // every URI, in order, from all rua fields
	Usable     []string `json:"usable_rua"` // the mailto: and https: URIs senders can use
	Extensions []Ext    `json:"extensions,omitempty"`
}

// IsCandidate reports whether a TXT record (strings joined) survives the
// sender's filter when several TXT records come back: it begins with
// "v=TLSRPTv1;" (RFC 8460 §3).
func IsCandidate(txt string) bool { return strings.HasPrefix(txt, VersionTag+";") }

// SelectRecord applies RFC 8460 §3 to the TXT records at _smtp._tls (the
// strings of each record joined): a single record is parsed as it is; of
// several, those not beginning with "v=TLSRPTv1;" are discarded first.
// Exactly one must remain and parse. It returns that record (which may
// still have no usable rua) and its text, or nil and why there is none.
func SelectRecord(txts []string) (rec *Record, txt, why string) {
	kept, _ := txtrec.Select(txts, VersionTag+";")
	switch len(kept) {
	case 0:
		return nil, "", "no TXT record begins with \"v=TLSRPTv1;\""
	case 1:
	default:
		return nil, "", fmt.Sprintf("%d TXT records begin with \"v=TLSRPTv1;\"", len(kept))
	}
	rec, probs := ParseRecord(kept[0])
	if rec == nil {
		for _, p := range probs {
			if p.Fatal {
				return nil, kept[0], "the TXT record is invalid: " + p.Detail
			}
		}
	}
	return rec, kept[0], ""
}

// LooksLikeRecord reports whether txt was meant as a TLS-RPT record.
func LooksLikeRecord(txt string) bool {
	t := strings.ToLower(strings.TrimLeft(txt, " \t\"'"))
	return strings.HasPrefix(t, "v=tlsrpt")
}

// ParseRecord parses one _smtp._tls TXT record (strings joined). The record
// is nil when a fatal problem is found.
func ParseRecord(txt string) (*Record, []Problem) {
	tok := txtrec.Parse(txt, VersionTag)
	var probs []Problem
	for _, p := range tok.Problems {
		probs = append(probs, Problem{Code: recordCode(p.Code), Fatal: p.Code.Fatal(), Offset: p.Offset, Text: p.Text, Detail: p.Detail})
	}
	rec := &Record{}
	ruaFields := 0
	for _, f := range tok.Fields {
		switch {
		case f.Name == "rua":
			ruaFields++
			if ruaFields == 2 {
				probs = append(probs, Problem{Code: RUARepeated, Offset: f.Offset, Text: f.Raw,
					Detail: "the record has more than one rua= field; RFC 8460 senders merge them, some tools use only the first"})
			}
			for _, u := range splitURIs(f.Value) {
				rec.RUA = append(rec.RUA, u)
				usable, fatal, why := checkURI(u)
				switch {
				case fatal:
					probs = append(probs, Problem{Code: RUAInvalid, Fatal: true, Offset: f.Offset, Text: u, Detail: why})
				case !usable:
					probs = append(probs, Problem{Code: RUAUnsupported, Offset: f.Offset, Text: u, Detail: why})
				default:
					rec.Usable = append(rec.Usable, u)
				}
			}
		case strings.EqualFold(f.Name, "rua"):
			probs = append(probs, Problem{Code: RecordSyntax, Fatal: true, Offset: f.Offset, Text: f.Raw,
				Detail: fmt.Sprintf("the field name %q must be written \"rua\" in lower case", f.Name)})
		case !txtrec.ValidExtName(f.Name):
			probs = append(probs, Problem{Code: RecordSyntax, Fatal: true, Offset: f.Offset, Text: f.Raw,
				Detail: fmt.Sprintf("the field name %q is not valid", f.Name)})
		case !txtrec.ValidExtValue(f.Value):
			probs = append(probs, Problem{Code: RecordSyntax, Fatal: true, Offset: f.Offset, Text: f.Raw,
				Detail: fmt.Sprintf("the value of %q is %q; values must be printable ASCII without spaces, '=' or ';'", f.Name, f.Value)})
		default:
			rec.Extensions = append(rec.Extensions, Ext{Name: f.Name, Value: f.Value})
			detail := fmt.Sprintf("the extension field %q is ignored by senders", f.Raw)
			if f.Name == "ruf" {
				detail += " (TLS-RPT has no ruf; only rua is defined)"
			}
			probs = append(probs, Problem{Code: Extension, Offset: f.Offset, Text: f.Raw, Detail: detail})
		}
	}
	if ruaFields == 0 && !hasCode(probs, RecordVersion) {
		probs = append(probs, Problem{Code: RUAMissing, Fatal: true, Text: txt, Detail: "the record has no rua field"})
	}
	for _, p := range probs {
		if p.Fatal {
			return nil, probs
		}
	}
	return rec, probs
}

// splitURIs splits a rua value: URI *(*WSP "," *WSP URI).
func splitURIs(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		out = append(out, strings.Trim(part, " \t"))
	}
	return out
}

var sizeSuffix = regexp.MustCompile(`![0-9]+[kmgtKMGT]?$`)

// checkURI classifies one rua URI (RFC 8460 §3: mailto and https only;
// ',', '!' and ';' must be percent-encoded).
func checkURI(u string) (usable, fatal bool, why string) {
	switch {
	case u == "":
		return false, true, "an empty entry in the rua list (two commas in a row, or a trailing comma)"
	case sizeSuffix.MatchString(u):
		return false, true, fmt.Sprintf("%q ends in a DMARC-style size limit %q; TLS-RPT has none and '!' must be percent-encoded", u, sizeSuffix.FindString(u))
	case strings.ContainsAny(u, "! \t"):
		return false, true, fmt.Sprintf("%q contains a space or '!'; these must be percent-encoded", u)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return false, true, fmt.Sprintf("%q is not a valid URI", u)
	}
	switch strings.ToLower(parsed.Scheme) {
	case "":
		if strings.Contains(u, "@") {
			return false, false, fmt.Sprintf("%q has no scheme; write \"mailto:%s\"", u, u)
		}
		return false, false, fmt.Sprintf("%q is not a mailto: or https: URI", u)
	case "mailto":
		addr := parsed.Opaque
		if addr == "" {
			addr = parsed.Path
		}
		addr, _, _ = strings.Cut(addr, "?")
		if dec, err := url.PathUnescape(addr); err == nil {
			addr = dec
		}
		a, err := mail.ParseAddress(addr)
		if err != nil || a.Address != addr {
			return false, false, fmt.Sprintf("%q does not hold one valid e-mail address", u)
		}
		_, host, _ := strings.Cut(a.Address, "@")
		if domain.CheckHostname(strings.TrimSuffix(host, ".")) != nil {
			return false, false, fmt.Sprintf("the address in %q has an invalid domain %q", u, host)
		}
		return true, false, ""
	case "https":
		if parsed.Host == "" {
			return false, false, fmt.Sprintf("%q has no host", u)
		}
		return true, false, ""
	case "http":
		return false, false, fmt.Sprintf("%q uses http:; only https: is supported", u)
	}
	return false, false, fmt.Sprintf("%q uses the scheme %q; only mailto: and https: are supported", u, parsed.Scheme+":")
}

// recordCode names a tokeniser problem in this package's vocabulary:
// "record-" plus its class.
func recordCode(c txtrec.Code) Code { return Code("record-" + c.Class()) }

func hasCode(ps []Problem, c Code) bool {
	for _, p := range ps {
		if p.Code == c {
			return true
		}
	}
	return false
}
