package mtasts

import (
	"bufio"
	"bytes"
	"mime"
	"net"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/mailtls/mailtls/internal/txtrec"
)

// Sender emulation (spec-checklist §H, landscape §4 item 1). Widely deployed
// MTA-STS implementations deviate from RFC 8461 in how they read the TXT
// record and the policy. Each model below restates, in our own code, the
// behaviour read from that implementation's source; versions change, so the
// models are documented with what they were read from (docs/senders.md).

// SenderInput is what a sender sees of a domain: the TXT records at
// _mta-sts (strings of each record joined) and the 200 response to the
// policy request without Accept-Encoding: its Content-Type header
// (HasContentType false when the header is absent), its body and whether
// the body was cut at 64 KiB; and the responses to the requests senders
// make with Accept-Encoding (see encoding.go).
type SenderInput struct {
	TXT            []string
	ContentType    string
	HasContentType bool
	// ContentEncoding is the Content-Encoding of the response ("" when
	// absent); Body is as received, not decoded.
	ContentEncoding string
	Body            []byte
	TooLarge        bool
	// Encoded holds the responses to the same request sent with an
	// Accept-Encoding header, keyed by the header. A sender whose header
	// has no entry is judged on the response above.
	Encoded map[string]*Response
}

// SenderView is what one sender makes of a domain's policy.
type SenderView struct {
	Sender  string   `json:"sender"`
	Applies bool     `json:"applies"`      // the sender has a policy for the domain
	ID      string   `json:"id,omitempty"` // the record id the sender read
	Mode    Mode     `json:"mode,omitempty"`
	MaxAge  int64    `json:"max_age,omitempty"`
	MX      []string `json:"mx,omitempty"`
	Reason  string   `json:"reason,omitempty"` // why it has no policy

	coding bool // it has no policy because of the content coding of the response it got
}

// FailedOnCoding reports whether the sender has no policy because of the
// content coding of the response to its request: a body labelled with a
// coding it is not in, a coding it does not decode, or a request with its
// Accept-Encoding header that failed.
func (v SenderView) FailedOnCoding() bool { return v.coding }

func codingFailure(sender, why string) SenderView {
	return SenderView{Sender: sender, Reason: why, coding: true}
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

// Match reports whether the sender accepts host as an MX host under the
// policy it read (RFC 8461 §4.1). go-mtasts compares names after turning
// A-labels into Unicode and lower-casing both sides, and finds the dot after
// a wildcard's label in the host as given. For the Postfix resolvers this is
// the RFC rule: how Postfix then applies the patterns is not modelled.
func (v SenderView) Match(host string) bool {
	if !v.Applies {
		return false
	}
	for _, p := range v.MX {
		if v.Sender == SenderGoMTASTS {
			if goMTASTSMatch(p, host) {
				return true
			}
		} else if MatchMX(p, host) {
			return true
		}
	}
	return false
}

// goMTASTSMatch is go-mtasts' Policy.Match for one pattern.
func goMTASTSMatch(pattern, host string) bool {
	normHost, err := goMTASTSName(host)
	if err != nil {
		return false
	}
	normPattern, err := goMTASTSName(pattern)
	if err != nil {
		return false
	}
	if rest, ok := strings.CutPrefix(normPattern, "*"); ok && strings.HasPrefix(rest, ".") {
		dot := strings.Index(host, ".")
		return dot >= 0 && dot <= len(normHost) && normHost[dot:] == rest
	}
	return normHost == normPattern
}

// goMTASTSName is go-mtasts' name normalisation: A-labels to Unicode, lower
// case, no trailing dot (it also applies NFC, which the names that reach
// this model never need).
func goMTASTSName(name string) (string, error) {
	u, err := idna.ToUnicode(name)
	if err != nil {
		return strings.ToLower(name), err
	}
	return strings.TrimSuffix(strings.ToLower(u), "."), nil
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

func applies(sender, id string, mode Mode, maxAge int64, mx []string) SenderView {
	return SenderView{Sender: sender, Applies: true, ID: id, Mode: mode, MaxAge: maxAge, MX: mx}
}

// rfcView applies RFC 8461 strictly: the record chosen by SelectRecord
// (§3.1), at most 64 KiB, a body that matches the grammar (§3.2). The
// media-type check is a SHOULD (§3.2); it is reported separately and not
// held against the policy here.
func rfcView(in SenderInput) SenderView {
	rec, _, why := SelectRecord(in.TXT)
	if rec == nil {
		return noPolicy(SenderRFC, why)
	}
	rd, why := in.read(rfcClient)
	if why != "" {
		return codingFailure(SenderRFC, why)
	}
	return strictPolicy(SenderRFC, rec.ID, rd)
}

// moxView models mox (mtasts/mtasts.go LookupRecord, mtasts/parse.go): a
// TXT record is an MTA-STS record when it begins with "v=STSv1" and a
// delimiter (*WSP ";" *WSP), so "v=STSv1 ;" counts, also beside other
// records; the first such record that does not parse, or a second one,
// leaves no policy. Its record parser is the RFC grammar, except that a
// repeated id is an error. Both grammars are otherwise strict; the media
// type is not checked.
func moxView(in SenderInput) SenderView {
	const s = SenderMox
	var rec *Record
	for _, t := range in.TXT {
		rest, ok := strings.CutPrefix(t, VersionTag)
		if !ok || !strings.HasPrefix(strings.TrimLeft(rest, " \t"), ";") {
			continue
		}
		r, probs := ParseRecord(t)
		if r == nil || hasCode(probs, RecordIDDuplicate) {
			return noPolicy(s, "its record parser rejects "+quote(t))
		}
		if rec != nil {
			return noPolicy(s, "it finds more than one MTA-STS TXT record")
		}
		rec = r
	}
	if rec == nil {
		return noPolicy(s, recordCount(0))
	}
	rd, why := in.read(goClient)
	if why != "" {
		return codingFailure(s, why)
	}
	return strictPolicy(s, rec.ID, rd)
}

// strictPolicy reads the body by the RFC 8461 §3.2 grammar, at most 64 KiB
// (§3.3).
func strictPolicy(sender, id string, in reading) SenderView {
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
	return applies(sender, id, pp.Policy.Mode, pp.Policy.MaxAge, pp.Policy.MX)
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
	id, ok := fields["id"]
	if fields["v"] != "STSv1" || !ok {
		return noPolicy(s, "its record parser finds no \"v=STSv1\" with an \"id\" field")
	}
	rd, why := in.read(aiohttpClient)
	if why != "" {
		return codingFailure(s, why)
	}
	if mt := mediaType(rd); mt != "text/plain" {
		return noPolicy(s, "it requires Content-Type text/plain"+gotType(rd))
	}
	if rd.TooLarge {
		return noPolicy(s, "the policy is larger than its 64 KiB limit")
	}
	text, ok := decodeCharset(rd)
	if !ok {
		return noPolicy(s, "it cannot decode the body with the charset "+charsetOf(rd))
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
		return applies(s, id, ModeNone, maxAge, mx)
	case mode != "testing" && mode != "enforce":
		return noPolicy(s, "mode "+quote(mode)+" is not enforce, testing or none")
	case len(mx) == 0:
		return noPolicy(s, "it finds no mx line")
	}
	return applies(s, id, Mode(mode), maxAge, mx)
}

// tlspolView models postfix-tlspol v1.12.1 and later (internal/mta-sts.go;
// checked against v1.13.0, whose parser is unchanged):
//
//   - Records: the joined TXT strings that begin with "v=STSv1", optional
//     blanks and ';' are candidates; exactly one must remain, be printable
//     ASCII (tabs allowed), and split on ';' into "v=STSv1" and fields with
//     blanks trimmed (the last field only on the left, so "id=1 " fails); an
//     empty field may only be the last; a field needs '='; the first id
//     wins and must be 1-32 letters and digits, later ids are not checked;
//     other names and values follow the RFC extension grammar; an id is
//     required.
//   - Fetch: the media type must be text/plain (a missing or unparsable
//     header fails); at most 64 KiB.
//   - Lines (split at LF, a CR before it dropped) lose trailing blanks; an
//     empty line, a line without ':', an invalid extension name or value
//     (control characters, tabs), a bad version, mode, max_age or mx
//     invalidate the policy. Keys are not trimmed; values lose leading
//     blanks. The first of a repeated key wins and later ones are not
//     checked. An mx must be a host name by its own rule (one trailing dot
//     allowed, no IP address, labels of letters, digits and inner hyphens,
//     253 octets), optionally after "*.". max_age is 1-10 digits, clamped
//     to one year. version, mode and max_age are required, and mx unless
//     the mode is none.
func tlspolView(in SenderInput) SenderView {
	const s = SenderTLSPol
	var cands []string
	for _, t := range in.TXT {
		if rest, ok := strings.CutPrefix(t, VersionTag); ok && strings.HasPrefix(strings.TrimLeft(rest, " \t"), ";") {
			cands = append(cands, t)
		}
	}
	if len(cands) != 1 {
		return noPolicy(s, recordCount(len(cands)))
	}
	id, bad := tlspolRecord(cands[0])
	if bad != "" {
		return noPolicy(s, "its record check rejects "+quote(cands[0])+": "+bad)
	}
	rd, why := in.read(goClient)
	if why != "" {
		return codingFailure(s, why)
	}
	if mt := mediaType(rd); mt != "text/plain" {
		return noPolicy(s, "it requires Content-Type text/plain"+gotType(rd))
	}
	if rd.TooLarge {
		return noPolicy(s, "the policy is larger than its 64 KiB limit")
	}
	seen := map[string]bool{}
	var (
		mode            Mode
		maxAge          int64
		mx              []string
		version, hasAge bool
	)
	sc := bufio.NewScanner(bytes.NewReader(rd.Body))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t")
		if line == "" {
			return noPolicy(s, "it rejects empty lines")
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return noPolicy(s, "the line "+quote(line)+" has no ':'")
		}
		v = strings.TrimLeft(v, " \t")
		known := k == "version" || k == "mode" || k == "mx" || k == "max_age"
		if !known && !txtrec.ValidExtName(k) {
			return noPolicy(s, "the key "+quote(k)+" is not a valid name")
		}
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
			if !tlspolHostname(strings.TrimPrefix(v, "*.")) {
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
			if err != nil || len(v) > 10 || strings.ContainsAny(v, "+-") {
				return noPolicy(s, "max_age "+quote(v)+" is not 1 to 10 digits")
			}
			maxAge, hasAge = int64(min(n, MaxMaxAge)), true
		default:
			if !tlspolExtValue(v) {
				return noPolicy(s, "the value of "+quote(k)+" is empty or has control characters")
			}
		}
	}
	if sc.Err() != nil {
		return noPolicy(s, "a line is longer than 64 KiB")
	}
	switch {
	case !version || !hasAge || mode == "":
		return noPolicy(s, "version, mode or max_age is missing")
	case mode != ModeNone && len(mx) == 0:
		return noPolicy(s, "mode is "+string(mode)+" but it finds no mx line")
	}
	return applies(s, id, mode, maxAge, mx)
}

// tlspolRecord checks a candidate record as postfix-tlspol does and
// returns its id, or why it fails.
func tlspolRecord(txt string) (id, why string) {
	for i := 0; i < len(txt); i++ {
		if c := txt[i]; c != '\t' && (c < 0x20 || c > 0x7e) {
			return "", "it is not printable ASCII"
		}
	}
	fields := strings.Split(txt, ";")
	if strings.TrimRight(fields[0], " \t") != VersionTag {
		return "", "it does not start with the version"
	}
	haveID := false
	for i, f := range fields[1:] {
		last := i == len(fields)-2
		f = strings.TrimLeft(f, " \t")
		if !last {
			f = strings.TrimRight(f, " \t")
		}
		if f == "" {
			if last {
				continue
			}
			return "", "it has an empty field"
		}
		k, v, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			return "", "the field " + quote(f) + " has no '='"
		case k == "id" && haveID:
		case k == "id":
			if !validID(v) {
				return "", "the id " + quote(v) + " is not 1 to 32 letters and digits"
			}
			id, haveID = v, true
		case !txtrec.ValidExtName(k) || !txtrec.ValidExtValue(v):
			return "", "the field " + quote(f) + " is not a valid extension"
		}
	}
	if !haveID {
		return "", "it has no id"
	}
	return id, ""
}

// tlspolHostname is postfix-tlspol's host-name rule: one trailing dot
// allowed, not an IP address, at most 253 octets, labels of 1-63 letters,
// digits and hyphens that neither start nor end with a hyphen.
func tlspolHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 || net.ParseIP(s) != nil {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// tlspolExtValue is postfix-tlspol's rule for policy extension values:
// not empty, UTF-8, and only spaces, printable ASCII and non-control
// characters above ASCII (so no tab, CR, NUL or DEL).
func tlspolExtValue(v string) bool {
	if v == "" || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if !(r == ' ' || r >= 0x21 && r <= 0x7e || r >= 0x80 && !unicode.IsControl(r)) {
			return false
		}
	}
	return true
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
	rd, why := in.read(goClient)
	if why != "" {
		return codingFailure(s, why)
	}
	if mt := mediaType(rd); mt != "text/plain" {
		return noPolicy(s, "it requires Content-Type text/plain"+gotType(rd))
	}
	if rd.TooLarge {
		return noPolicy(s, "the policy is larger than 64 KiB (mailtls did not read further)")
	}
	var (
		mode   Mode
		maxAge int64
		mx     []string
	)
	present := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(rd.Body))
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
	return applies(s, id, mode, maxAge, mx)
}

// mediaType returns the lower-case media type of the response, "" when
// absent or unparsable.
func mediaType(in reading) string {
	if !in.HasContentType {
		return ""
	}
	mt, _, err := mime.ParseMediaType(in.ContentType)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.Split(in.ContentType, ";")[0]))
	}
	return mt
}

func gotType(in reading) string {
	if !in.HasContentType {
		return " and the response has no Content-Type"
	}
	return ", not " + quote(in.ContentType)
}

func charsetOf(in reading) string {
	_, params, _ := mime.ParseMediaType(in.ContentType)
	if cs := params["charset"]; cs != "" {
		return quote(cs)
	}
	return "ascii (the default when none is given)"
}

// decodeCharset decodes the body as Python would with the response charset
// (ASCII by default). Only the charsets that matter are distinguished.
func decodeCharset(in reading) (string, bool) {
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
