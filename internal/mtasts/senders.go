package mtasts

import (
	"bufio"
	"bytes"
	"mime"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mailtls/mailtls/internal/domain"
)

// Sender emulation (spec-checklist §H, landscape §4 item 1). Widely deployed
// MTA-STS implementations deviate from RFC 8461 in how they read the TXT
// record and the policy. Each model below restates, in our own code, the
// behaviour read from that implementation's source; versions change, so the
// models are documented with what they were read from (docs/senders.md).

// SenderInput is what a sender sees of a domain: the TXT records at
// _mta-sts (strings of each record joined), the Content-Type header of a
// 200 response (HasContentType false when the header is absent), the body,
// and whether the body was cut at 64 KiB.
type SenderInput struct {
	TXT            []string
	ContentType    string
	HasContentType bool
	Body           []byte
	TooLarge       bool
}

// SenderView is what one sender makes of a domain's policy.
type SenderView struct {
	Sender  string   `json:"sender"`
	Applies bool     `json:"applies"` // the sender has a policy for the domain
	Mode    Mode     `json:"mode,omitempty"`
	MaxAge  int64    `json:"max_age,omitempty"`
	MX      []string `json:"mx,omitempty"`
	Reason  string   `json:"reason,omitempty"` // why it has no policy
}

// Same reports whether two views lead to the same sender behaviour.
func (v SenderView) Same(w SenderView) bool {
	if v.Applies != w.Applies {
		return false
	}
	if !v.Applies {
		return true
	}
	if v.Mode != w.Mode || v.MaxAge != w.MaxAge || len(v.MX) != len(w.MX) {
		return false
	}
	for i := range v.MX {
		if !strings.EqualFold(v.MX[i], w.MX[i]) {
			return false
		}
	}
	return true
}

// Sender names.
const (
	SenderRFC      = "RFC 8461"
	SenderMox      = "mox"
	SenderSnawoot  = "postfix-mta-sts-resolver"
	SenderTLSPol   = "postfix-tlspol"
	SenderGoMTASTS = "go-mtasts (maddy)"
)

// SenderViews returns what RFC 8461 and each modelled implementation make
// of in, RFC 8461 first.
func SenderViews(in SenderInput) []SenderView {
	return []SenderView{rfcView(in), moxView(in), snawootView(in), tlspolView(in), goMTASTSView(in)}
}

func noPolicy(sender, reason string) SenderView {
	return SenderView{Sender: sender, Reason: reason}
}

func applies(sender string, mode Mode, maxAge int64, mx []string) SenderView {
	return SenderView{Sender: sender, Applies: true, Mode: mode, MaxAge: maxAge, MX: mx}
}

// rfcView applies RFC 8461 strictly: exactly one record that begins with
// "v=STSv1;" and parses, at most 64 KiB, a body that matches the grammar.
// The media-type check is a SHOULD (§3.2); it is reported separately and
// not held against the policy here.
func rfcView(in SenderInput) SenderView {
	return strictView(SenderRFC, in, IsCandidate)
}

// moxView: mox parses both grammars strictly and does not check the media
// type; its record filter also accepts a space before the first ';'
// (spec-checklist STS-TXT-7).
func moxView(in SenderInput) SenderView {
	return strictView(SenderMox, in, func(t string) bool {
		return strings.HasPrefix(strings.TrimLeft(strings.TrimPrefix(t, VersionTag), " \t"), ";") && strings.HasPrefix(t, VersionTag)
	})
}

func strictView(sender string, in SenderInput, filter func(string) bool) SenderView {
	var recs []string
	for _, t := range in.TXT {
		if filter(t) {
			recs = append(recs, t)
		}
	}
	if len(recs) != 1 {
		return noPolicy(sender, recordCount(len(recs)))
	}
	txt := recs[0]
	if !IsCandidate(txt) {
		// mox: "v=STSv1 ;" passes its filter; parse it without the space.
		txt = VersionTag + strings.TrimLeft(strings.TrimPrefix(txt, VersionTag), " \t")
	}
	if rec, _ := ParseRecord(txt); rec == nil {
		return noPolicy(sender, "the TXT record is invalid")
	}
	if in.TooLarge {
		return noPolicy(sender, "the policy is larger than 64 KiB")
	}
	pp := ParsePolicy(in.Body)
	if pp.Policy == nil {
		for _, p := range pp.Problems {
			if p.Fatal {
				return noPolicy(sender, "the policy is invalid: "+p.String())
			}
		}
		return noPolicy(sender, "the policy is invalid")
	}
	return applies(sender, pp.Policy.Mode, pp.Policy.MaxAge, pp.Policy.MX)
}

func recordCount(n int) string {
	if n == 0 {
		return "it finds no TXT record that passes its filter"
	}
	return "it finds " + strconv.Itoa(n) + " TXT records that pass its filter, not one"
}

// snawootView models postfix-mta-sts-resolver (resolver.py, utils.py):
// records are filtered on the prefix "v=STSv1" and must number exactly one;
// fields are split on ';' and '=' with the last duplicate winning; the
// media type must be text/plain; the body is decoded with its charset
// (ASCII when none is given); lines are split as Python's splitlines does,
// keys are not trimmed, the last duplicate wins, mx values are not checked,
// max_age is read with Python's int().
func snawootView(in SenderInput) SenderView {
	const s = SenderSnawoot
	var recs []string
	for _, t := range in.TXT {
		if strings.HasPrefix(t, VersionTag) {
			recs = append(recs, t)
		}
	}
	if len(recs) != 1 {
		return noPolicy(s, recordCount(len(recs)))
	}
	fields := map[string]string{}
	for _, f := range strings.Split(recs[0], ";") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, v, _ := strings.Cut(f, "=")
		fields[k] = v
	}
	if _, ok := fields["id"]; fields["v"] != "STSv1" || !ok {
		return noPolicy(s, "its record parser finds no \"v=STSv1\" with an \"id\" field")
	}
	if mt := mediaType(in); mt != "text/plain" {
		return noPolicy(s, "it requires Content-Type text/plain"+gotType(in))
	}
	if in.TooLarge {
		return noPolicy(s, "the policy is larger than its 64 KiB limit")
	}
	text, ok := decodeCharset(in)
	if !ok {
		return noPolicy(s, "it cannot decode the body with the charset "+charsetOf(in))
	}
	pol := map[string]string{}
	var mx []string
	for _, line := range pySplitLines(text) {
		line = strings.TrimRightFunc(line, unicode.IsSpace)
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimLeftFunc(v, unicode.IsSpace)
		if k == "mx" {
			mx = append(mx, v)
		} else {
			pol[k] = v
		}
	}
	if pol["version"] != "STSv1" {
		return noPolicy(s, "it finds no \"version: STSv1\" line (keys are not trimmed)")
	}
	maxAge, ok := pyInt(pol["max_age"])
	if !ok || maxAge < 0 || maxAge > MaxMaxAge {
		return noPolicy(s, "max_age is missing or not a number from 0 to 31557600")
	}
	mode, ok := pol["mode"]
	switch {
	case !ok:
		return noPolicy(s, "it finds no mode line")
	case mode == "none":
		return applies(s, ModeNone, maxAge, mx)
	case mode != "testing" && mode != "enforce":
		return noPolicy(s, "mode "+quote(mode)+" is not enforce, testing or none")
	case len(mx) == 0:
		return noPolicy(s, "it finds no mx line")
	}
	return applies(s, Mode(mode), maxAge, mx)
}

// tlspolView models postfix-tlspol (internal/mta-sts.go): a record is any
// TXT string that starts with "v=STSv1" (no id check); the media type is not
// checked; each line is trimmed, empty lines and lines with '{' or '}' are
// skipped, a line without ':' or with an invalid version, mode or mx
// invalidates the policy, the first duplicate wins, max_age above the cap is
// clamped, and version and max_age are required.
func tlspolView(in SenderInput) SenderView {
	const s = SenderTLSPol
	found := false
	for _, t := range in.TXT {
		if strings.HasPrefix(t, VersionTag) {
			found = true
		}
	}
	if !found {
		return noPolicy(s, "it finds no TXT record starting with \"v=STSv1\"")
	}
	if in.TooLarge {
		return noPolicy(s, "the policy is larger than 64 KiB (mailtls did not read further)")
	}
	seen := map[string]bool{}
	var (
		mode             Mode
		maxAge           int64
		mx               []string
		version, haveAge bool
	)
	sc := bufio.NewScanner(bytes.NewReader(in.Body))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if !utf8.ValidString(line) {
			return noPolicy(s, "a line is not valid UTF-8")
		}
		if strings.ContainsAny(line, "{}") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return noPolicy(s, "the line "+quote(line)+" has no ':'")
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k != "mx" && seen[k] {
			continue
		}
		seen[k] = true
		switch k {
		case "version":
			if v != "STSv1" {
				return noPolicy(s, "version is "+quote(v))
			}
			version = true
		case "mx":
			name := strings.TrimPrefix(v, "*.")
			if domain.CheckHostname(name) != nil {
				return noPolicy(s, "mx "+quote(v)+" is not a host name")
			}
			mx = append(mx, strings.ToLower(v))
		case "mode":
			if v != "enforce" && v != "testing" && v != "none" {
				return noPolicy(s, "mode "+quote(v)+" is not enforce, testing or none")
			}
			mode = Mode(v)
		case "max_age":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return noPolicy(s, "max_age "+quote(v)+" is not a number")
			}
			maxAge, haveAge = int64(min(n, MaxMaxAge)), true
		}
	}
	if sc.Err() != nil {
		return noPolicy(s, "a line is longer than 64 KiB")
	}
	if !version || !haveAge {
		return noPolicy(s, "version or max_age is missing")
	}
	if mode == "" {
		return noPolicy(s, "it finds no mode line")
	}
	if mode == ModeEnforce && len(mx) == 0 {
		return noPolicy(s, "it finds no mx line")
	}
	return applies(s, mode, maxAge, mx)
}

// goMTASTSView models foxcpp/go-mtasts (used by maddy): the domain must have
// exactly one TXT record of any kind; its fields are split on ';' and '='
// (exactly one '=' each, no blanks inside); the media type must be
// text/plain; every policy line must split on ':' into exactly two parts
// (so empty lines, comments without ':' and values containing ':' are
// fatal), keys are not trimmed, the last duplicate wins, and max_age is
// read with strconv.Atoi without range check.
func goMTASTSView(in SenderInput) SenderView {
	const s = SenderGoMTASTS
	if len(in.TXT) != 1 {
		return noPolicy(s, "it needs exactly one TXT record at _mta-sts, found "+strconv.Itoa(len(in.TXT)))
	}
	version := false
	id := ""
	for _, part := range strings.Split(in.TXT[0], ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		kv := strings.Split(part, "=")
		if len(kv) != 2 || strings.ContainsAny(part, " \t") {
			return noPolicy(s, "its record parser rejects the field "+quote(part))
		}
		switch kv[0] {
		case "v":
			if kv[1] != "STSv1" {
				return noPolicy(s, "the record version is "+quote(kv[1]))
			}
			version = true
		case "id":
			id = kv[1]
		}
	}
	if !version || id == "" {
		return noPolicy(s, "its record parser finds no version or no id")
	}
	if mt := mediaType(in); mt != "text/plain" {
		return noPolicy(s, "it requires Content-Type text/plain"+gotType(in))
	}
	if in.TooLarge {
		return noPolicy(s, "the policy is larger than 64 KiB (mailtls did not read further)")
	}
	var (
		mode   Mode
		maxAge int64
		mx     []string
	)
	present := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(in.Body))
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ":")
		if len(parts) != 2 {
			return noPolicy(s, "it rejects the line "+quote(sc.Text())+" (it needs exactly one ':' per line)")
		}
		k, v := parts[0], strings.TrimSpace(parts[1])
		switch k {
		case "version":
			if v != "STSv1" {
				return noPolicy(s, "version is "+quote(v))
			}
		case "mode":
			if v != "enforce" && v != "testing" && v != "none" {
				return noPolicy(s, "mode "+quote(v)+" is not enforce, testing or none")
			}
			mode = Mode(v)
		case "max_age":
			n, err := strconv.Atoi(v)
			if err != nil {
				return noPolicy(s, "max_age "+quote(v)+" is not a number")
			}
			maxAge = int64(n)
		case "mx":
			mx = append(mx, v)
		}
		present[k] = true
	}
	if sc.Err() != nil {
		return noPolicy(s, "a line is longer than 64 KiB")
	}
	for _, k := range []string{"version", "mode", "max_age"} {
		if !present[k] {
			return noPolicy(s, "it finds no "+k+" line (keys are not trimmed)")
		}
	}
	if mode != ModeNone && len(mx) == 0 {
		return noPolicy(s, "it finds no mx line")
	}
	return applies(s, mode, maxAge, mx)
}

// mediaType returns the lower-case media type of the response, "" when
// absent or unparsable.
func mediaType(in SenderInput) string {
	if !in.HasContentType {
		return ""
	}
	mt, _, err := mime.ParseMediaType(in.ContentType)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.Split(in.ContentType, ";")[0]))
	}
	return mt
}

func gotType(in SenderInput) string {
	if !in.HasContentType {
		return " and the response has no Content-Type"
	}
	return ", not " + quote(in.ContentType)
}

func charsetOf(in SenderInput) string {
	_, params, _ := mime.ParseMediaType(in.ContentType)
	if cs := params["charset"]; cs != "" {
		return quote(cs)
	}
	return "ascii (the default when none is given)"
}

// decodeCharset decodes the body as Python would with the response charset
// (ASCII by default). Only the charsets that matter are distinguished.
func decodeCharset(in SenderInput) (string, bool) {
	_, params, _ := mime.ParseMediaType(in.ContentType)
	switch strings.ToLower(params["charset"]) {
	case "", "ascii", "us-ascii":
		for _, c := range in.Body {
			if c >= 0x80 {
				return "", false
			}
		}
	case "utf-8", "utf8":
		if !utf8.Valid(in.Body) {
			return "", false
		}
	case "iso-8859-1", "latin-1", "latin1":
		r := make([]rune, len(in.Body))
		for i, c := range in.Body {
			r[i] = rune(c)
		}
		return string(r), true
	}
	return string(in.Body), true
}

// pySplitLines splits like Python's str.splitlines.
func pySplitLines(s string) []string {
	var out []string
	start := 0
	for i, r := range s {
		switch r {
		case '\n', '\r', '\v', '\f', '\x1c', '\x1d', '\x1e', '\u0085', '\u2028', '\u2029':
			if r == '\n' && i > 0 && s[i-1] == '\r' {
				start = i + 1
				continue
			}
			out = append(out, s[start:i])
			start = i + utf8.RuneLen(r)
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// pyInt parses like Python's int() on a str: optional sign, ASCII digits
// with single underscores between them, surrounding whitespace allowed.
func pyInt(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}
