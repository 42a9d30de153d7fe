package mtasts

import (
	"strconv"
	"strings"

	"github.com/mailtls/mailtls/internal/txtrec"
)

// Record problem codes (RFC 8461 §3.1).
const (
	RecordNonASCII             Code = "record-non-ascii"
	RecordQuoted               Code = "record-quoted"
	RecordVersion              Code = "record-version"
	RecordSpaceBeforeSemicolon Code = "record-space-before-semicolon"
	RecordSpaceAroundEquals    Code = "record-space-around-equals"
	RecordSyntax               Code = "record-syntax"
	RecordTrailingSpace        Code = "record-trailing-space"
	RecordIDMissing            Code = "record-id-missing"
	RecordIDInvalid            Code = "record-id-invalid"
	RecordIDDuplicate          Code = "record-id-duplicate" // not fatal: first wins
	RecordExtension            Code = "record-extension"    // not fatal: ignored
)

// VersionTag starts every MTA-STS TXT record.
const VersionTag = "v=STSv1"

// RecordText is the _mta-sts TXT record to publish for a policy id, in the
// form every sender accepts (RFC 8461 §3.1: "v=STSv1; id=<id>").
func RecordText(id string) string { return VersionTag + "; id=" + id }

// Record is a valid _mta-sts TXT record.
type Record struct {
	ID         string      `json:"id"`
	Extensions []Extension `json:"extensions,omitempty"`
}

// IsCandidate reports whether a TXT record (its strings joined) survives
// the sender's filter when several TXT records come back: it must begin
// with the exact bytes "v=STSv1;" (RFC 8461 §3.1).
func IsCandidate(txt string) bool { return strings.HasPrefix(txt, VersionTag+";") }

// SelectRecord applies RFC 8461 §3.1 to the TXT records at _mta-sts (the
// strings of each record joined): a single record is parsed as it is; of
// several, those not beginning with "v=STSv1;" are discarded first. Exactly
// one must remain and parse. It returns the record senders use and its
// text, or nil and why there is none.
func SelectRecord(txts []string) (rec *Record, txt, why string) {
	kept, _ := txtrec.Select(txts, VersionTag+";")
	switch len(kept) {
	case 0:
		return nil, "", "no TXT record begins with \"v=STSv1;\""
	case 1:
	default:
		return nil, "", strconv.Itoa(len(kept)) + " TXT records begin with \"v=STSv1;\""
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

// LooksLikeRecord reports whether txt was meant as an MTA-STS record even
// though it may fail the filter: a wrong case, quotes, a leading space, or a
// space before the first ';'.
func LooksLikeRecord(txt string) bool {
	t := strings.ToLower(strings.TrimLeft(txt, " \t\"'\u201c\u201d"))
	return strings.HasPrefix(t, "v=stsv1")
}

// ParseRecord parses one _mta-sts TXT record (its strings already joined,
// RFC 8461 §3.1). The record is nil when any fatal problem is found. Non-fatal
// problems (a duplicate id, extension fields) are returned with a valid
// record.
func ParseRecord(txt string) (*Record, []Problem) {
	tok := txtrec.Parse(txt, VersionTag)
	var probs []Problem
	for _, p := range tok.Problems {
		probs = append(probs, Problem{Code: recordCode(p.Code), Fatal: p.Code.Fatal(), Offset: p.Offset, Text: p.Text, Detail: p.Detail})
	}
	rec := &Record{}
	haveID, badID := false, false
	for _, f := range tok.Fields {
		switch {
		case f.Name == "id":
			switch {
			case haveID:
				probs = append(probs, Problem{Code: RecordIDDuplicate, Offset: f.Offset, Text: f.Raw,
					Detail: "the record has a second id " + quote(f.Value) + "; senders use the first one, " + quote(rec.ID)})
			case validID(f.Value):
				rec.ID, haveID = f.Value, true
			default:
				badID = true
				probs = append(probs, Problem{Code: RecordIDInvalid, Fatal: true, Offset: f.Offset, Text: f.Raw, Detail: idProblem(f.Value)})
			}
		case !txtrec.ValidExtName(f.Name):
			probs = append(probs, Problem{Code: RecordSyntax, Fatal: true, Offset: f.Offset, Text: f.Raw,
				Detail: "the field name " + quote(f.Name) + " is not valid (letters, digits, '_', '-', '.'; at most 32; starting with a letter or digit)"})
		case strings.EqualFold(f.Name, "id"):
			probs = append(probs, Problem{Code: RecordSyntax, Fatal: true, Offset: f.Offset, Text: f.Raw,
				Detail: "the field name " + quote(f.Name) + " must be written \"id\" in lower case"})
			badID = true
		case !txtrec.ValidExtValue(f.Value):
			probs = append(probs, Problem{Code: RecordSyntax, Fatal: true, Offset: f.Offset, Text: f.Raw,
				Detail: "the value of " + quote(f.Name) + " is " + quote(f.Value) + "; values must be printable ASCII without spaces, '=' or ';'"})
		default:
			rec.Extensions = append(rec.Extensions, Extension{Name: f.Name, Value: f.Value})
			probs = append(probs, Problem{Code: RecordExtension, Offset: f.Offset, Text: f.Raw,
				Detail: "the extension field " + quote(f.Raw) + " is ignored by senders"})
		}
	}
	if !haveID && !badID && !hasCode(probs, RecordVersion) {
		probs = append(probs, Problem{Code: RecordIDMissing, Fatal: true, Text: txt, Detail: "the record has no id field"})
	}
	for _, p := range probs {
		if p.Fatal {
			return nil, probs
		}
	}
	return rec, probs
}

// recordCode names a tokeniser problem in this package's vocabulary:
// "record-" plus its class.
func recordCode(c txtrec.Code) Code { return Code("record-" + c.Class()) }

// validID reports whether id matches 1*32(ALPHA / DIGIT) (RFC 8461 §3.1).
func validID(id string) bool {
	if len(id) == 0 || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isAlnum(id[i]) {
			return false
		}
	}
	return true
}

// ValidID reports whether id is a valid MTA-STS policy id.
func ValidID(id string) bool { return validID(id) }

func idProblem(id string) string {
	switch {
	case id == "":
		return "the id is empty"
	case len(id) > 32:
		return "the id " + quote(id) + " is " + strconv.Itoa(len(id)) + " characters long; the limit is 32"
	}
	for i := 0; i < len(id); i++ {
		if !isAlnum(id[i]) {
			return "the id " + quote(id) + " contains " + quote(string(id[i])) + "; only letters and digits are allowed"
		}
	}
	return "the id " + quote(id) + " is not valid"
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func hasCode(ps []Problem, c Code) bool {
	for _, p := range ps {
		if p.Code == c {
			return true
		}
	}
	return false
}
