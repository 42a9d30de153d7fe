package tlsrpt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailtls/mailtls/internal/domain"
)

// Hints are facts from around a report (the mail that carried it, its file
// name) that stand in for values a sender left out. Each use adds a note.
type Hints struct {
	ReportDomain string // TLS-Report-Domain (RFC 8460 §5.3), for a policy without policy-domain
	Submitter    string // TLS-Report-Submitter, for a missing organization-name
	MessageID    string // Message-ID, for a missing report-id
	FileName     string // the attachment or file name (RFC 8460 §5.1)
}

// Options for [Parse]. A nil *Options means default limits and no hints.
type Options struct {
	Limits *Limits
	Hints  Hints
}

// Parse reads one report (gzip, zip or JSON, told apart by content; see
// [Decode]) and parses it with [ParseJSON]. The payload notes come first.
func Parse(r io.Reader, o *Options) (*Report, error) {
	var lim *Limits
	if o != nil {
		lim = o.Limits
	}
	data, _, notes, err := Decode(r, lim)
	if err != nil {
		return nil, err
	}
	rep, err := ParseJSON(data, o)
	if err != nil {
		return nil, err
	}
	rep.Notes = append(notes, rep.Notes...)
	return rep, nil
}

// ParseJSON parses the JSON text of a report (RFC 8460 §4.4) tolerantly:
// every quirk real senders have is accepted and recorded as a [Note] (see
// docs/reports.md). It refuses only input that is not a JSON object, that
// is broken or nested deeper than MaxDepth, or that has no usable date range
// or no policies; errors wrap [ErrNotReport] or [ErrMalformed].
func ParseJSON(data []byte, o *Options) (*Report, error) {
	var opt Options
	if o != nil {
		opt = *o
	}
	p := &parser{lim: opt.Limits.withDefaults(), hints: opt.Hints, notes: newNoteSet()}
	rep, err := p.parse(data)
	if err != nil {
		return nil, err
	}
	rep.Notes = p.notes.list()
	return rep, nil
}

// jv is a JSON value read within bounds.
type jv struct {
	kind byte // 's' string, 'n' number, 'b' bool, 'z' null, 'a' array, 'o' object
	s    string
	arr  []jv
	obj  []jkv
}

type jkv struct {
	key string
	val jv
}

func (v *jv) typeName() string {
	switch v.kind {
	case 's':
		return "a string"
	case 'n':
		return "a number"
	case 'b':
		return "a boolean"
	case 'z':
		return "null"
	case 'a':
		return "an array"
	}
	return "an object"
}

// raw is a short rendering of v for a note's Value.
func (v *jv) raw() string {
	switch v.kind {
	case 's':
		return clip(v.s, 200)
	case 'n':
		return v.s
	case 'b':
		return v.s
	case 'z':
		return "null"
	case 'a':
		return fmt.Sprintf("[%d elements]", len(v.arr))
	}
	return fmt.Sprintf("{%d keys}", len(v.obj))
}

type parser struct {
	dec         *json.Decoder
	lim         Limits
	hints       Hints
	notes       *noteSet
	detailsKept int
}

func (p *parser) note(c NoteCode, path, value, format string, args ...any) {
	p.notes.add(Note{Code: c, Path: path, Value: value, Text: fmt.Sprintf(format, args...)})
}

// Known keys per object, by the name RFC 8460 §4.4 gives them.
var (
	topKeys     = []string{"organization-name", "date-range", "contact-info", "report-id", "policies"}
	rangeKeys   = []string{"start-datetime", "end-datetime"}
	entryKeys   = []string{"policy", "summary", "failure-details"}
	policyKeys  = []string{"policy-type", "policy-string", "policy-domain", "mx-host"}
	summaryKeys = []string{"total-successful-session-count", "total-failure-session-count"}
	detailKeys  = []string{"result-type", "sending-mta-ip", "receiving-mx-hostname", "receiving-mx-helo",
		"receiving-ip", "failed-session-count", "additional-information", "failure-reason-code"}
	// keyAliases are spellings seen in the wild: SocketLabs'
	// receiving-mx-host-name, the drafts' mx-host-pattern and the schema's
	// own additional-info-uri (RFC 8460 §4.4 names the value, not the key).
	keyAliases = map[string]string{
		"receiving-mx-host-name": "receiving-mx-hostname",
		"mx-host-pattern":        "mx-host",
		"additional-info-uri":    "additional-information",
	}
)

// canonKey maps a key as sent to its RFC name, noting case changes and
// aliases; unknown keys give "" and a note.
func (p *parser) canonKey(path, key string, known []string) string {
	if slices.Contains(known, key) {
		return key
	}
	norm := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(key)), "_", "-")
	if slices.Contains(known, norm) {
		p.note(NoteKeyCase, join(path, key), "", "the key %q was read as %q (RFC 8460 §4.4 spells it so)", key, norm)
		return norm
	}
	if a, ok := keyAliases[norm]; ok && slices.Contains(known, a) {
		p.note(NoteKeyAlias, join(path, key), "", "the key %q was read as %q", key, a)
		return a
	}
	p.note(NoteKeyUnknown, join(path, key), "", "the key %q is not defined by RFC 8460 §4.4 and was ignored", clip(key, 100))
	return ""
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (p *parser) malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// syntax turns a decoder error into ErrMalformed with the byte offset.
func (p *parser) syntax(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return p.malformed("invalid JSON at byte %d: %v", se.Offset, se)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return p.malformed("the JSON ends early, at byte %d", p.dec.InputOffset())
	}
	return p.malformed("invalid JSON at byte %d: %v", p.dec.InputOffset(), err)
}

func (p *parser) token() (json.Token, error) {
	t, err := p.dec.Token()
	if err != nil {
		return nil, p.syntax(err)
	}
	return t, nil
}

// readValue reads one value, at most depth levels deep. Arrays and objects
// keep at most max members each and budget values in all; the rest is
// skipped and counted in *dropped.
func (p *parser) readValue(depth, max int, budget *int, dropped *int) (jv, error) {
	t, err := p.token()
	if err != nil {
		return jv{}, err
	}
	return p.valueFrom(t, depth, max, budget, dropped)
}

func (p *parser) valueFrom(t json.Token, depth, max int, budget *int, dropped *int) (jv, error) {
	*budget--
	switch v := t.(type) {
	case string:
		return jv{kind: 's', s: v}, nil
	case json.Number:
		return jv{kind: 'n', s: v.String()}, nil
	case bool:
		return jv{kind: 'b', s: strconv.FormatBool(v)}, nil
	case nil:
		return jv{kind: 'z'}, nil
	case json.Delim:
		if depth >= p.lim.MaxDepth {
			return jv{}, p.malformed("the JSON is nested deeper than %d levels", p.lim.MaxDepth)
		}
		if v == '[' {
			out := jv{kind: 'a'}
			for p.dec.More() {
				if len(out.arr) >= max || *budget <= 0 {
					*dropped++
					if err := p.skip(depth + 1); err != nil {
						return jv{}, err
					}
					continue
				}
				e, err := p.readValue(depth+1, max, budget, dropped)
				if err != nil {
					return jv{}, err
				}
				out.arr = append(out.arr, e)
			}
			_, err := p.token()
			return out, err
		}
		out := jv{kind: 'o'}
		for p.dec.More() {
			kt, err := p.token()
			if err != nil {
				return jv{}, err
			}
			k, _ := kt.(string)
			if len(out.obj) >= max || *budget <= 0 {
				*dropped++
				if err := p.skip(depth + 1); err != nil {
					return jv{}, err
				}
				continue
			}
			e, err := p.readValue(depth+1, max, budget, dropped)
			if err != nil {
				return jv{}, err
			}
			out.obj = append(out.obj, jkv{k, e})
		}
		_, err := p.token()
		return out, err
	}
	return jv{}, p.malformed("unexpected JSON token %v", t)
}

// skip reads and drops one value.
func (p *parser) skip(depth int) error {
	level := 0
	for {
		t, err := p.token()
		if err != nil {
			return err
		}
		if d, ok := t.(json.Delim); ok {
			switch d {
			case '[', '{':
				level++
				if depth+level > p.lim.MaxDepth {
					return p.malformed("the JSON is nested deeper than %d levels", p.lim.MaxDepth)
				}
			default:
				level--
			}
		}
		if level == 0 {
			return nil
		}
	}
}

// object reads the members of an object whose '{' was consumed, calling f
// with each canonical key (unknown keys are skipped, duplicates noted).
func (p *parser) object(path string, depth int, known []string, f func(key, path string) error) error {
	seen := map[string]bool{}
	for p.dec.More() {
		kt, err := p.token()
		if err != nil {
			return err
		}
		raw, _ := kt.(string)
		key := p.canonKey(path, raw, known)
		switch {
		case key == "":
			err = p.skip(depth + 1)
		case seen[key]:
			p.note(NoteKeyDuplicate, join(path, key), "", "the key %q appears twice; the first value counts", key)
			err = p.skip(depth + 1)
		default:
			seen[key] = true
			err = f(key, join(path, key))
		}
		if err != nil {
			return err
		}
	}
	_, err := p.token()
	return err
}

// expectOpen reads the next token; it reports whether it opens delim. Any
// other value is skipped after a wrong-type note.
func (p *parser) expectOpen(path string, depth int, delim json.Delim, want string) (bool, error) {
	t, err := p.token()
	if err != nil {
		return false, err
	}
	if d, ok := t.(json.Delim); ok && d == delim {
		if depth+1 > p.lim.MaxDepth {
			return false, p.malformed("the JSON is nested deeper than %d levels", p.lim.MaxDepth)
		}
		return true, nil
	}
	budget, dropped := 1<<20, 0
	v, err := p.valueFrom(t, depth, 16, &budget, &dropped)
	if err != nil {
		return false, err
	}
	if v.kind == 'z' {
		p.note(NoteNull, path, "null", "%s is null; %s was expected", path, want)
	} else {
		p.note(NoteWrongType, path, v.raw(), "%s is %s; %s was expected, so it was ignored", path, v.typeName(), want)
	}
	return false, nil
}

// entry is one policies[] element as read, before interpretation.
type entry struct {
	path     string
	policy   *jv
	summary  *jv
	details  []FailureDetail
	hasDet   bool
	detSum   int64
	detDrop  int
	detCount int
}

func (p *parser) parse(data []byte) (*Report, error) {
	trim := bytes.TrimLeft(data, " \t\r\n")
	if len(trim) == 0 || trim[0] != '{' {
		return nil, fmt.Errorf("%w: the content is not a JSON object (starts with %s)", ErrNotReport, describeStart(trim))
	}
	p.dec = json.NewDecoder(bytes.NewReader(data))
	p.dec.UseNumber()
	if _, err := p.token(); err != nil {
		return nil, err
	}
	rep := &Report{}
	var (
		org, contact, id, start, end *jv
		entries                      []*entry
		policiesSeen                 bool
	)
	err := p.object("", 0, topKeys, func(key, path string) error {
		switch key {
		case "policies":
			policiesSeen = true
			ok, err := p.expectOpen(path, 0, '[', "an array")
			if err != nil || !ok {
				return err
			}
			dropped := 0
			for i := 0; p.dec.More(); i++ {
				if len(entries) >= p.lim.MaxPolicies {
					dropped++
					if err := p.skip(2); err != nil {
						return err
					}
					continue
				}
				e, err := p.entry(fmt.Sprintf("policies[%d]", i))
				if err != nil {
					return err
				}
				if e != nil {
					entries = append(entries, e)
				}
			}
			if dropped > 0 {
				p.note(NotePoliciesDropped, "policies", "", "%d policies beyond the first %d were not read", dropped, p.lim.MaxPolicies)
			}
			_, err = p.token()
			return err
		case "date-range":
			ok, err := p.expectOpen(path, 0, '{', "an object")
			if err != nil || !ok {
				return err
			}
			return p.object(path, 1, rangeKeys, func(key, path string) error {
				v, err := p.small(2)
				if key == "start-datetime" {
					start = &v
				} else {
					end = &v
				}
				return err
			})
		default:
			v, err := p.small(1)
			switch key {
			case "organization-name":
				org = &v
			case "contact-info":
				contact = &v
			case "report-id":
				id = &v
			}
			return err
		}
	})
	if err != nil {
		return nil, err
	}
	if rest := bytes.TrimSpace(data[p.dec.InputOffset():]); len(rest) > 0 {
		p.note(NoteTrailingData, "", clip(string(rest), 40), "%d bytes follow the JSON object and were ignored", len(rest))
	}

	rep.ContactInfo = p.str(contact, "contact-info", NoteContactMissing, "contact-info is missing; RFC 8460 §4.4 requires it")
	rep.OrganizationName = p.str(org, "organization-name", NoteOrganizationMissing, "")
	if rep.OrganizationName == "" {
		p.fallbackOrganization(rep)
	}
	rep.ReportID = p.str(id, "report-id", NoteReportIDMissing, "")
	if rep.ReportID == "" {
		p.fallbackReportID(rep, data)
	}
	if err := p.dateRange(rep, start, end); err != nil {
		return nil, err
	}
	if !policiesSeen {
		return nil, p.malformed("the report has no policies")
	}
	if len(entries) == 0 {
		return nil, p.malformed("the report's policies hold no policy object")
	}
	seen := map[string]bool{}
	for _, e := range entries {
		pol := p.policy(e)
		k := string(pol.Type) + " " + pol.Domain
		if seen[k] {
			p.note(NoteSamePolicyTwice, e.path, "", "the report holds a second %s policy for %q (a policy changed during the period, or a sender split its counts); both are kept", pol.Type, pol.Domain)
		}
		seen[k] = true
		rep.Policies = append(rep.Policies, pol)
	}
	return rep, nil
}

// small reads a value that should be a scalar or a short list.
func (p *parser) small(depth int) (jv, error) {
	budget, dropped := 4*p.lim.MaxStrings, 0
	return p.readValue(depth, p.lim.MaxStrings, &budget, &dropped)
}

// entry reads one policies[] element.
func (p *parser) entry(path string) (*entry, error) {
	ok, err := p.expectOpen(path, 1, '{', "an object")
	if err != nil || !ok {
		return nil, err
	}
	e := &entry{path: path}
	err = p.object(path, 2, entryKeys, func(key, kpath string) error {
		switch key {
		case "failure-details":
			e.hasDet = true
			ok, err := p.expectOpen(kpath, 2, '[', "an array")
			if err != nil || !ok {
				return err
			}
			for i := 0; p.dec.More(); i++ {
				if p.detailsKept >= p.lim.MaxFailureDetails {
					// Beyond the cap only the count matters; the
					// decoder's own reader is much faster than Token.
					var d struct {
						N json.RawMessage `json:"failed-session-count"`
					}
					if err := p.dec.Decode(&d); err != nil {
						var ute *json.UnmarshalTypeError
						if !errors.As(err, &ute) {
							return p.syntax(err)
						}
					}
					n, _ := strconv.ParseInt(strings.Trim(string(d.N), `" `), 10, 64)
					e.detSum = addCount(e.detSum, max(n, 0))
					e.detCount++
					e.detDrop++
					continue
				}
				budget, dropped := 256, 0
				v, err := p.readValue(3, 64, &budget, &dropped)
				if err != nil {
					return err
				}
				dpath := fmt.Sprintf("%s[%d]", kpath, i)
				if v.kind != 'o' {
					p.note(NoteWrongType, kpath+"[*]", v.raw(), "a failure detail is %s, not an object; it was ignored", v.typeName())
					continue
				}
				d := p.detail(dpath, &v)
				e.detSum = addCount(e.detSum, d.FailedSessions)
				e.detCount++
				p.detailsKept++
				e.details = append(e.details, d)
			}
			_, err = p.token()
			return err
		default:
			budget, dropped := 4*p.lim.MaxStrings+64, 0
			v, err := p.readValue(3, p.lim.MaxStrings, &budget, &dropped)
			if dropped > 0 {
				p.note(NoteTruncated, kpath, "", "%s holds more than %d elements; %d were not read", key, p.lim.MaxStrings, dropped)
			}
			if key == "policy" {
				e.policy = &v
			} else {
				e.summary = &v
			}
			return err
		}
	})
	return e, err
}

func addCount(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// str reads a string value, cut to MaxString. A missing or null value
// gives "" and, when code is set, a note.
func (p *parser) str(v *jv, path string, code NoteCode, missing string) string {
	if v == nil || v.kind == 'z' || (v.kind == 's' && strings.TrimSpace(v.s) == "") {
		if code != "" && missing != "" {
			val := ""
			if v != nil {
				val = v.raw()
			}
			p.note(code, path, val, "%s", missing)
		}
		return ""
	}
	if v.kind != 's' {
		if v.kind == 'n' {
			p.note(NoteWrongType, path, v.raw(), "%s is a number; it was read as a string", path)
			return v.s
		}
		p.note(NoteWrongType, path, v.raw(), "%s is %s, not a string; it was ignored", path, v.typeName())
		return ""
	}
	s := strings.TrimSpace(v.s)
	if len(s) > p.lim.MaxString {
		p.note(NoteTruncated, path, clip(s, 200), "%s is %d bytes long; only the first %d were kept", path, len(s), p.lim.MaxString)
		s = clip(s, p.lim.MaxString)
	}
	return s
}

func (p *parser) fallbackOrganization(rep *Report) {
	switch {
	case contactDomain(rep.ContactInfo) != "":
		rep.OrganizationName = contactDomain(rep.ContactInfo)
		p.note(NoteOrganizationMissing, "organization-name", "", "organization-name is missing; the contact-info domain %q stands in", rep.OrganizationName)
	case p.hints.Submitter != "":
		rep.OrganizationName = strings.ToLower(clip(p.hints.Submitter, 253))
		p.note(NoteOrganizationMissing, "organization-name", "", "organization-name is missing; the TLS-Report-Submitter %q stands in", rep.OrganizationName)
	default:
		p.note(NoteOrganizationMissing, "organization-name", "", "organization-name is missing and nothing stands in for it")
	}
}

func (p *parser) fallbackReportID(rep *Report, data []byte) {
	switch {
	case p.hints.MessageID != "":
		rep.ReportID = clip(strings.Trim(strings.TrimSpace(p.hints.MessageID), "<>"), p.lim.MaxString)
		p.note(NoteReportIDMissing, "report-id", "", "report-id is missing; the mail's Message-ID %q stands in", rep.ReportID)
	case p.hints.FileName != "":
		rep.ReportID = clip(p.hints.FileName, p.lim.MaxString)
		p.note(NoteReportIDMissing, "report-id", "", "report-id is missing; the file name %q stands in", rep.ReportID)
	default:
		sum := sha256.Sum256(data)
		rep.ReportID = clip("sha256:"+hex.EncodeToString(sum[:16]), p.lim.MaxString)
		p.note(NoteReportIDMissing, "report-id", "", "report-id is missing; a SHA-256 hash of the report stands in, so the same bytes give the same id")
	}
}

// ContactDomain returns the domain of a contact-info value: the domain of
// an e-mail address (with or without mailto:) or the host of a URL; ""
// when it has none.
func ContactDomain(contact string) string { return contactDomain(contact) }

func contactDomain(c string) string {
	c = strings.TrimSpace(c)
	if c == "" {
		return ""
	}
	if u, err := url.Parse(c); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Hostname() != "" {
		return domain.Canonical(u.Hostname())
	}
	c = strings.TrimPrefix(strings.TrimPrefix(c, "mailto:"), "MAILTO:")
	if a, err := mail.ParseAddress(c); err == nil {
		c = a.Address
	}
	if i := strings.LastIndexByte(c, '@'); i >= 0 {
		d := domain.Canonical(strings.Trim(c[i+1:], "<> "))
		if domain.CheckHostname(d) == nil {
			return d
		}
	}
	return ""
}

// dateRange sets Start and End (RFC 8460 §4.4: RFC 3339 date-time, one
// UTC day). Zone-less datetimes are read as UTC; a missing bound is taken
// from the file name or as one day from the other bound.
func (p *parser) dateRange(rep *Report, start, end *jv) error {
	s, sok := p.datetime(start, "date-range.start-datetime")
	e, eok := p.datetime(end, "date-range.end-datetime")
	if !sok || !eok {
		if fs, fe, ok := fileNameRange(p.hints.FileName); ok {
			if !sok {
				s, sok = fs, true
			}
			if !eok {
				e, eok = fe, true
			}
			p.note(NoteDateFormat, "date-range", "", "the date range is incomplete; the file name's timestamps stand in")
		}
	}
	switch {
	case !sok && !eok:
		return p.malformed("the report has no usable date range")
	case !sok:
		s = e.Add(-24 * time.Hour)
		p.note(NoteDateFormat, "date-range.start-datetime", "", "start-datetime is unusable; one day before end-datetime stands in")
	case !eok:
		e = s.Add(24 * time.Hour)
		p.note(NoteDateFormat, "date-range.end-datetime", "", "end-datetime is unusable; one day after start-datetime stands in")
	}
	if e.Before(s) {
		p.note(NoteDateInverted, "date-range", "", "end-datetime %s is before start-datetime %s; the two were swapped", e.Format(time.RFC3339), s.Format(time.RFC3339))
		s, e = e, s
	}
	rep.Start, rep.End = s, e
	midnight := s.Equal(s.Truncate(24 * time.Hour))
	if d := e.Sub(s); !midnight || d < 24*time.Hour-time.Second || d > 24*time.Hour {
		p.note(NoteDateNotOneDay, "date-range", "", "the report covers %s to %s, not one UTC day (RFC 8460 §4.4); its sessions are attributed by overlap", s.Format(time.RFC3339), e.Format(time.RFC3339))
	}
	return nil
}

// datetime reads one RFC 3339 date-time, accepting the forms real senders
// use with a note: no zone (Microsoft 2023 and March 2024), a space or
// lower-case t, a date alone, or Unix seconds.
func (p *parser) datetime(v *jv, path string) (time.Time, bool) {
	if v == nil || v.kind == 'z' {
		return time.Time{}, false
	}
	raw := strings.TrimSpace(v.s)
	if v.kind == 'n' || (v.kind == 's' && raw != "" && strings.Trim(raw, "0123456789") == "") {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 || n > 1<<40 {
			p.note(NoteDateFormat, path, clip(raw, 200), "%s %q is not a date-time", path, clip(raw, 200))
			return time.Time{}, false
		}
		p.note(NoteDateFormat, path, raw, "%s is a number; it was read as Unix seconds", path)
		return time.Unix(n, 0).UTC(), true
	}
	if v.kind != 's' {
		p.note(NoteWrongType, path, v.raw(), "%s is %s, not a date-time", path, v.typeName())
		return time.Time{}, false
	}
	s := raw
	if len(s) > 10 && (s[10] == ' ' || s[10] == 't') {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if s != raw {
			p.note(NoteDateFormat, path, raw, "%s %q is not written as RFC 3339 requires; it was read as %s", path, raw, t.UTC().Format(time.RFC3339))
		}
		return t.UTC(), true
	}
	if t, err := time.Parse("2006-01-02T15:04:05.999999999", s); err == nil {
		p.note(NoteDateNoZone, path, raw, "%s %q has no time zone (RFC 3339 requires one); it was read as UTC", path, raw)
		return t, true
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		p.note(NoteDateFormat, path, raw, "%s %q is a date without a time; it was read as 00:00 UTC", path, raw)
		return t, true
	}
	p.note(NoteDateFormat, path, clip(raw, 200), "%s %q is not a date-time", path, clip(raw, 200))
	return time.Time{}, false
}

// FileNameParts splits an RFC 8460 §5.1 report file name,
// "sender!policy-domain!begin!end[!unique-id].json[.gz]".
func FileNameParts(name string) (sender, policyDomain string, begin, end time.Time, ok bool) {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	base := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(name), ".gz"), ".json")
	parts := strings.Split(base, "!")
	if len(parts) < 4 || len(parts) > 5 {
		return "", "", time.Time{}, time.Time{}, false
	}
	b, err1 := strconv.ParseInt(parts[2], 10, 64)
	e, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || b < 0 || e < 0 || b > 1<<40 || e > 1<<40 {
		return "", "", time.Time{}, time.Time{}, false
	}
	d := domain.Canonical(parts[1])
	if domain.CheckHostname(d) != nil {
		return "", "", time.Time{}, time.Time{}, false
	}
	return parts[0], d, time.Unix(b, 0).UTC(), time.Unix(e, 0).UTC(), true
}

func fileNameRange(name string) (time.Time, time.Time, bool) {
	_, _, b, e, ok := FileNameParts(name)
	return b, e, ok
}

// reportDomainHint is the TLS-Report-Domain, else the file name's domain.
func (p *parser) reportDomainHint() (string, string) {
	if d := domain.Canonical(strings.TrimSpace(p.hints.ReportDomain)); d != "" && domain.CheckHostname(d) == nil {
		return d, "the TLS-Report-Domain header"
	}
	if _, d, _, _, ok := FileNameParts(p.hints.FileName); ok {
		return d, "the file name"
	}
	return "", ""
}

// policy interprets one policies[] entry.
func (p *parser) policy(e *entry) Policy {
	var pol Policy
	ppath := e.path + ".policy"
	var typ, dom, strs, mx *jv
	if e.policy == nil || e.policy.kind != 'o' {
		if e.policy == nil {
			p.note(NotePolicyTypeUnknown, ppath, "", "the entry has no policy object; its type and domain are unknown")
		} else {
			p.note(NoteWrongType, ppath, e.policy.raw(), "policy is %s, not an object", e.policy.typeName())
		}
	} else {
		seen := map[string]bool{}
		for _, kv := range e.policy.obj {
			key := p.canonKey(ppath, kv.key, policyKeys)
			if key == "" {
				continue
			}
			if seen[key] {
				p.note(NoteKeyDuplicate, join(ppath, key), "", "the key %q appears twice; the first value counts", key)
				continue
			}
			seen[key] = true
			v := kv.val
			switch key {
			case "policy-type":
				typ = &v
			case "policy-domain":
				dom = &v
			case "policy-string":
				strs = &v
			case "mx-host":
				mx = &v
			}
		}
	}

	// policy-type (RFC 8460 §4.4): three values; others kept verbatim.
	t := p.str(typ, ppath+".policy-type", "", "")
	switch lt := strings.ToLower(t); {
	case t == "":
		if e.policy != nil && e.policy.kind == 'o' {
			p.note(NotePolicyTypeUnknown, ppath+".policy-type", "", "the policy has no policy-type")
		}
	case PolicyType(lt).Known():
		if lt != t {
			p.note(NoteKeyCase, ppath+".policy-type", t, "the policy-type %q was read as %q", t, lt)
		}
		t = lt
	default:
		t = clip(t, 64)
		p.note(NotePolicyTypeUnknown, ppath+".policy-type", t, "the policy-type %q is not one of sts, tlsa and no-policy-found (RFC 8460 §4.4); it is kept as sent", t)
	}
	pol.Type = PolicyType(t)

	// policy-domain: an A-label (RFC 8460 §4.4).
	pol.Domain = p.policyDomain(dom, ppath+".policy-domain")

	// policy-string.
	pol.Strings = p.policyStrings(strs, ppath+".policy-string", pol.Type)
	if strs == nil && (pol.Type == PolicySTS || pol.Type == PolicyTLSA) {
		p.note(NotePolicyStringMissing, ppath+".policy-string", "", "the %s policy has no policy-string (Microsoft and Mail.ru leave it out when the policy could not be fetched)", pol.Type)
	}

	// mx-host, and the patterns in force.
	pol.MXHost = p.mxHost(mx, ppath+".mx-host")
	var fromString []string
	if pp := pol.STS(); pp != nil {
		fromString = pp.Draft.MX
	}
	switch {
	case len(pol.MXHost) > 0:
		pol.MXPatterns, pol.MXSource = pol.MXHost, "mx-host"
		if len(fromString) > 0 && !sameFold(pol.MXHost, fromString) {
			p.note(NoteMXHostDisagrees, ppath+".mx-host", strings.Join(pol.MXHost, ","), "mx-host %q differs from the policy-string's mx lines %q; mx-host is used", pol.MXHost, fromString)
		}
	case len(fromString) > 0:
		pol.MXPatterns, pol.MXSource = fromString, "policy-string"
	}
	if pol.Type == PolicySTS && len(pol.MXHost) == 0 {
		what := "missing"
		if mx != nil {
			what = "empty"
		}
		if len(fromString) > 0 {
			p.note(NoteMXHostMissing, ppath+".mx-host", "", "mx-host is %s; the mx patterns were taken from the policy-string", what)
		} else {
			p.note(NoteMXHostMissing, ppath+".mx-host", "", "mx-host is %s and the policy-string has no mx lines; the mx patterns are unknown", what)
		}
	}

	// summary and details.
	spath := e.path + ".summary"
	var succ, fail *jv
	if e.summary == nil || e.summary.kind != 'o' {
		if e.summary == nil {
			p.note(NoteSummaryMissing, spath, "", "the policy has no summary")
		} else {
			p.note(NoteWrongType, spath, e.summary.raw(), "summary is %s, not an object", e.summary.typeName())
		}
	} else {
		for _, kv := range e.summary.obj {
			key := p.canonKey(spath, kv.key, summaryKeys)
			v := kv.val
			switch key {
			case "total-successful-session-count":
				if succ == nil {
					succ = &v
				}
			case "total-failure-session-count":
				if fail == nil {
					fail = &v
				}
			}
		}
	}
	pol.Failures = e.details
	pol.DetailsFailed = e.detSum
	pol.DetailsDropped = e.detDrop
	if e.detDrop > 0 {
		p.note(NoteDetailsDropped, e.path+".failure-details", "", "%d of %d failure details were summed but not kept (the limit is %d per report)", e.detDrop, e.detCount, p.lim.MaxFailureDetails)
	}
	var ok bool
	if pol.Successful, ok = p.count(succ, spath+".total-successful-session-count"); !ok && e.summary != nil && e.summary.kind == 'o' {
		p.note(NoteCountMissing, spath+".total-successful-session-count", "", "total-successful-session-count is missing; 0 is shown")
	}
	pol.Failed, ok = p.count(fail, spath+".total-failure-session-count")
	if !ok {
		pol.Failed = e.detSum
		if e.summary != nil && e.summary.kind == 'o' {
			p.note(NoteCountMissing, spath+".total-failure-session-count", "", "total-failure-session-count is missing; the sum of the failure details (%d) stands in", e.detSum)
		}
	}
	switch {
	case e.hasDet && e.detCount > 0 && e.detSum != pol.Failed:
		p.note(NoteTotalsDisagree, e.path, fmt.Sprintf("%d vs %d", pol.Failed, e.detSum), "totals disagree: the summary counts %d failed session(s), the failure details add up to %d; the summary is shown", pol.Failed, e.detSum)
	case e.detCount == 0 && pol.Failed > 0:
		p.note(NoteDetailsMissing, e.path+".failure-details", "", "the summary counts %d failed session(s) but the report gives no failure details", pol.Failed)
	}
	return pol
}

func sameFold(a, b []string) bool {
	norm := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = domain.Canonical(s)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

func (p *parser) policyDomain(v *jv, path string) string {
	d := p.str(v, path, "", "")
	if d == "" {
		hint, from := p.reportDomainHint()
		if hint != "" {
			p.note(NotePolicyDomainMissing, path, "", "policy-domain is missing; %q from %s stands in", hint, from)
			return hint
		}
		p.note(NotePolicyDomainMissing, path, "", "policy-domain is missing and nothing stands in for it")
		return ""
	}
	d = domain.Canonical(d)
	if domain.CheckHostname(d) == nil {
		return d
	}
	if a := domain.ToASCII(d); a != "" && domain.CheckHostname(a) == nil {
		p.note(NotePolicyDomainInvalid, path, d, "policy-domain %q is not in A-label form (RFC 8460 §4.4); it was read as %q", d, a)
		return a
	}
	d = clip(d, 253)
	p.note(NotePolicyDomainInvalid, path, d, "policy-domain %q is not a valid domain name; it is kept as sent", d)
	return d
}

// stringList reads an array of strings. A lone string is read as one
// element (noted with lone and loneText); other elements are dropped with
// a note.
func (p *parser) stringList(v *jv, path, name string, lone NoteCode, loneText string) []string {
	if v == nil || v.kind == 'z' {
		return nil
	}
	var in []jv
	switch v.kind {
	case 'a':
		in = v.arr
	case 's':
		p.note(lone, path, v.raw(), "%s", loneText)
		in = []jv{*v}
	default:
		p.note(NoteWrongType, path, v.raw(), "%s is %s, not an array of strings; it was ignored", name, v.typeName())
		return nil
	}
	out := make([]string, 0, len(in))
	for _, e := range in {
		if e.kind != 's' {
			p.note(NoteWrongType, path+"[*]", e.raw(), "a %s element is %s; it was ignored", name, e.typeName())
			continue
		}
		out = append(out, e.s)
	}
	return out
}

// policyStrings reads policy-string: echoed CRs are removed (Google 2022
// echoed a CRLF policy file), and Microsoft's TLSA list, a one-element
// array holding a JSON-encoded array, is decoded (RFC 8460 §4.5).
func (p *parser) policyStrings(v *jv, path string, typ PolicyType) []string {
	in := p.stringList(v, path, "policy-string", NoteWrongType, "policy-string is a single string, not an array; it was read as one element")
	if in == nil {
		return nil
	}
	var out []string
	cr, encoded := false, false
	for _, s := range in {
		if strings.ContainsAny(s, "\r") {
			cr = true
			s = strings.ReplaceAll(s, "\r", "")
		}
		if typ == PolicyTLSA && strings.HasPrefix(strings.TrimSpace(s), "[") {
			var inner []string
			if json.Unmarshal([]byte(s), &inner) == nil {
				encoded = true
				for _, r := range inner {
					out = append(out, strings.TrimSpace(r))
				}
				continue
			}
		}
		out = append(out, s)
	}
	if len(out) > p.lim.MaxStrings {
		p.note(NoteTruncated, path, "", "policy-string has %d elements; the first %d were kept", len(out), p.lim.MaxStrings)
		out = out[:p.lim.MaxStrings]
	}
	if cr {
		p.note(NotePolicyStringCR, path, "", "policy-string elements end in CR characters (the policy file's CRLF echoed); they were removed")
	}
	if encoded {
		p.note(NotePolicyStringTLSA, path, "", "the TLSA records were sent as one JSON-encoded string inside the array (as Microsoft does); they were decoded")
	}
	return out
}

// mxHost reads mx-host: an array of patterns per RFC 8460 §4.4; the
// Appendix B example's single string (erratum 6241) and elements with an
// "mx:" prefix are accepted.
func (p *parser) mxHost(v *jv, path string) []string {
	in := p.stringList(v, path, "mx-host", NoteMXHostString, "mx-host is a string, not an array (as in RFC 8460 Appendix B; erratum 6241); it was read as one pattern")
	var out []string
	for _, raw := range in {
		s := strings.TrimSpace(strings.ReplaceAll(raw, "\r", ""))
		if _, ok := cutPrefixFold(s, "mx:"); ok {
			for ok {
				var rest string
				rest, ok = cutPrefixFold(s, "mx:")
				if ok {
					s = strings.TrimSpace(rest)
				}
			}
			p.note(NoteMXHostPrefix, path, clip(raw, 200), "the mx-host element %q repeats the policy's \"mx:\" key; the pattern %q was used", clip(raw, 200), s)
		}
		if s == "" {
			continue
		}
		out = append(out, clip(s, 253))
		if len(out) >= p.lim.MaxStrings {
			break
		}
	}
	return out
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// count reads a session count: a non-negative JSON integer (RFC 8460
// §4.4). Strings of digits and integral floats are accepted with a note;
// anything else counts 0 with a note. ok is false when v is missing.
func (p *parser) count(v *jv, path string) (n int64, ok bool) {
	if v == nil {
		return 0, false
	}
	switch v.kind {
	case 'z':
		p.note(NoteCountMissing, path, "null", "%s is null; 0 is shown", lastKey(path))
		return 0, true
	case 'n', 's':
	default:
		p.note(NoteWrongType, path, v.raw(), "%s is %s, not a number; 0 is shown", lastKey(path), v.typeName())
		return 0, true
	}
	raw := strings.TrimSpace(v.s)
	if i, err := strconv.ParseInt(raw, 10, 64); err == nil && i >= 0 {
		if v.kind == 's' {
			p.note(NoteCountNotInteger, path, raw, "%s is the string %q, not a number; it was read as %d", lastKey(path), raw, i)
		}
		return i, true
	}
	f, err := strconv.ParseFloat(raw, 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		p.note(NoteCountNotInteger, path, clip(raw, 200), "%s %q is not a number; 0 is shown", lastKey(path), clip(raw, 200))
		return 0, true
	case f < 0:
		p.note(NoteCountNotInteger, path, raw, "%s is negative (%s); 0 is shown", lastKey(path), raw)
		return 0, true
	case f > 1e15:
		p.note(NoteCountNotInteger, path, raw, "%s (%s) is implausibly large; 0 is shown", lastKey(path), raw)
		return 0, true
	}
	i := int64(f)
	if float64(i) == f {
		p.note(NoteCountNotInteger, path, raw, "%s is written %s; it was read as %d", lastKey(path), raw, i)
	} else {
		p.note(NoteCountNotInteger, path, raw, "%s is the fraction %s; it was read as %d", lastKey(path), raw, i)
	}
	return i, true
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// detail interprets one failure-details element.
func (p *parser) detail(path string, v *jv) FailureDetail {
	var d FailureDetail
	fold := foldIndex(path)
	vals := map[string]*jv{}
	for _, kv := range v.obj {
		key := p.canonKey(fold, kv.key, detailKeys)
		if key == "" {
			continue
		}
		if _, dup := vals[key]; dup {
			p.note(NoteKeyDuplicate, join(fold, key), "", "the key %q appears twice; the first value counts", key)
			continue
		}
		val := kv.val
		vals[key] = &val
	}
	rt := p.str(vals["result-type"], fold+".result-type", "", "")
	switch lt := strings.ToLower(rt); {
	case rt == "":
		p.note(NoteResultTypeUnknown, fold+".result-type", "", "a failure detail has no result-type")
	case ResultType(lt).Known():
		if lt != rt {
			p.note(NoteKeyCase, fold+".result-type", rt, "the result-type %q was read as %q", rt, lt)
		}
		rt = lt
	default:
		rt = clip(rt, 64)
		p.note(NoteResultTypeUnknown, fold+".result-type", rt, "the result-type %q is not in the RFC 8460 §4.3 registry; it is kept as sent", rt)
	}
	d.ResultType = ResultType(rt)
	d.SendingMTAIP = p.ip(vals["sending-mta-ip"], fold+".sending-mta-ip", NoteSendingIPMissing)
	d.ReceivingIP = p.ip(vals["receiving-ip"], fold+".receiving-ip", "")
	host := p.str(vals["receiving-mx-hostname"], fold+".receiving-mx-hostname", "", "")
	if host == "" {
		p.note(NoteMXHostnameMissing, fold+".receiving-mx-hostname", rawOf(vals["receiving-mx-hostname"]), "receiving-mx-hostname is missing or empty; the failure is shown under an unknown MX")
	}
	d.ReceivingMXHostname = domain.Canonical(clip(host, 253))
	d.ReceivingMXHelo = p.str(vals["receiving-mx-helo"], fold+".receiving-mx-helo", "", "")
	d.AdditionalInfo = p.str(vals["additional-information"], fold+".additional-information", "", "")
	d.FailureReasonCode = p.str(vals["failure-reason-code"], fold+".failure-reason-code", "", "")
	n, ok := p.count(vals["failed-session-count"], fold+".failed-session-count")
	if !ok {
		p.note(NoteCountMissing, fold+".failed-session-count", "", "a failure detail has no failed-session-count; 0 is shown")
	}
	d.FailedSessions = n
	return d
}

func rawOf(v *jv) string {
	if v == nil {
		return ""
	}
	return v.raw()
}

// ip reads an IP address, canonical when it parses.
func (p *parser) ip(v *jv, path string, missing NoteCode) string {
	s := p.str(v, path, "", "")
	if s == "" {
		if missing != "" {
			p.note(missing, path, rawOf(v), "%s is missing or empty", lastKey(path))
		}
		return ""
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap().WithZone("").String()
	}
	s = clip(s, 64)
	p.note(NoteIPInvalid, path, s, "%s %q is not an IP address; it is kept as sent", lastKey(path), s)
	return s
}

// foldIndex replaces the index of a failure detail by "*", so notes about
// many details fold into one.
func foldIndex(path string) string {
	i := strings.LastIndex(path, "failure-details[")
	if i < 0 {
		return path
	}
	j := strings.IndexByte(path[i:], ']')
	if j < 0 {
		return path
	}
	return path[:i] + "failure-details[*]" + path[i+j+1:]
}

// clip cuts s to at most n bytes on a UTF-8 boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// maxNotes bounds the notes kept per report.
const maxNotes = 100

// noteSet folds notes with the same code and path and keeps at most
// maxNotes of them, in the order first seen.
type noteSet struct {
	order []string
	byKey map[string]*Note
	more  int
}

func newNoteSet() *noteSet { return &noteSet{byKey: map[string]*Note{}} }

func (s *noteSet) add(n Note) {
	k := string(n.Code) + "\x00" + n.Path
	if old, ok := s.byKey[k]; ok {
		if old.Count == 0 {
			old.Count = 1
		}
		old.Count++
		return
	}
	if len(s.order) >= maxNotes {
		s.more++
		return
	}
	s.order = append(s.order, k)
	s.byKey[k] = &n
}

func (s *noteSet) list() []Note {
	out := make([]Note, 0, len(s.order)+1)
	for _, k := range s.order {
		out = append(out, *s.byKey[k])
	}
	if s.more > 0 {
		out = append(out, Note{Code: NoteMore, Count: s.more, Text: fmt.Sprintf("%d more notes were not kept", s.more)})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
