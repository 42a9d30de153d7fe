// Package tlsrptmail reads TLS-RPT reports that arrive by mail (RFC 8460
// §5.3): it finds the report parts of a message, splits mbox files and
// reads Maildir folders, and checks the DKIM signature RFC 8460 §3
// requires. Extraction is pure; only the DKIM key lookup does I/O, through
// the caller's resolver.
package tlsrptmail

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// Default limits for one message.
const (
	// DefaultMaxMessage bounds a whole message: a 10 MiB report
	// (RFC 8460 §5.2) base64-encoded, plus headers and a human part.
	DefaultMaxMessage = 16 << 20
	DefaultMaxParts   = 64 // MIME parts looked at
	DefaultMaxDepth   = 8  // multipart nesting
)

// Limits bound the work on one message. Zero fields take the defaults; a
// nil *Limits means all defaults.
type Limits struct {
	MaxMessage int64
	MaxParts   int
	MaxDepth   int
	Report     *tlsrpt.Limits // for each report part
}

func (l *Limits) withDefaults() Limits {
	var o Limits
	if l != nil {
		o = *l
	}
	if o.MaxMessage <= 0 {
		o.MaxMessage = DefaultMaxMessage
	}
	if o.MaxParts <= 0 {
		o.MaxParts = DefaultMaxParts
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	return o
}

// Errors of [Extract], for errors.Is.
var (
	// ErrTooLarge: the message is larger than MaxMessage; nothing past
	// the limit was read.
	ErrTooLarge = errors.New("tlsrptmail: message too large")
	// ErrNotMessage: the input has no mail header.
	ErrNotMessage = errors.New("tlsrptmail: not a mail message")
	// ErrNoReport: the message holds no part that reads as a report.
	ErrNoReport = errors.New("tlsrptmail: no TLS-RPT report found")
)

// Notes about the mail around a report (codes in the same space as
// tlsrpt's).
const (
	NoteCloseBoundary      tlsrpt.NoteCode = "mime-close-boundary-missing"
	NoteMIMEBroken         tlsrpt.NoteCode = "mime-broken"
	NoteMediaType          tlsrpt.NoteCode = "media-type"
	NoteReportType         tlsrpt.NoteCode = "report-type"
	NoteTransferEncoding   tlsrpt.NoteCode = "transfer-encoding"
	NoteHeaderMissing      tlsrpt.NoteCode = "header-missing"
	NoteSubjectReportID    tlsrpt.NoteCode = "subject-report-id"
	NoteSubjectForm        tlsrpt.NoteCode = "subject-form"
	NoteSubmitterMismatch  tlsrpt.NoteCode = "submitter-mismatch"
	NoteForwardedSkipped   tlsrpt.NoteCode = "forwarded-message-skipped"
	NoteSeveralReports     tlsrpt.NoteCode = "several-reports"
	NoteReportDomainAbsent tlsrpt.NoteCode = "report-domain-not-in-report"
)

// Envelope is what the message's header says about the report
// (RFC 8460 §5.3).
type Envelope struct {
	From       string    `json:"from,omitempty"` // the address
	FromDomain string    `json:"from_domain,omitempty"`
	Subject    string    `json:"subject,omitempty"` // unfolded and decoded
	MessageID  string    `json:"message_id,omitempty"`
	Date       time.Time `json:"date,omitzero"`
	// ReportDomain and Submitter are the TLS-Report-Domain and
	// TLS-Report-Submitter fields.
	ReportDomain string `json:"report_domain,omitempty"`
	Submitter    string `json:"submitter,omitempty"`
	// The parts of an RFC 8460 §5.3 Subject, when it has that form.
	SubjectDomain    string `json:"subject_domain,omitempty"`
	SubjectSubmitter string `json:"subject_submitter,omitempty"`
	SubjectReportID  string `json:"subject_report_id,omitempty"`
	// DKIMSignatures counts the DKIM-Signature fields.
	DKIMSignatures int `json:"dkim_signatures"`
}

// Found is one report part of a message.
type Found struct {
	MediaType string         `json:"media_type"` // as declared
	FileName  string         `json:"file_name,omitempty"`
	Report    *tlsrpt.Report `json:"report,omitempty"`
	Err       error          `json:"-"` // why the part was refused (Report is nil)
}

// Message is a report mail taken apart.
type Message struct {
	Envelope Envelope `json:"envelope"`
	// Reports are the parts that looked like reports, in message order,
	// each parsed or refused.
	Reports []Found `json:"reports"`
	// Notes are about the mail as a whole; they are also added to every
	// report found.
	Notes []tlsrpt.Note `json:"notes,omitempty"`
}

// Parsed returns the reports that were read.
func (m *Message) Parsed() []*tlsrpt.Report {
	var out []*tlsrpt.Report
	for _, f := range m.Reports {
		if f.Report != nil {
			out = append(out, f.Report)
		}
	}
	return out
}

// Extract reads one message (RFC 5322, CRLF or LF line endings; a leading
// mbox "From " line is skipped) and parses every part that holds a report.
// Report parts are found by content, not only by media type: Google's and
// Microsoft's application/tlsrpt+gzip, the bare application/tlsrpt,
// application/json, application/gzip and octet-stream parts, a report as
// the whole body, a human part in text/html. A missing closing MIME
// boundary keeps what was read (noted).
//
// It returns an error wrapping ErrTooLarge, ErrNotMessage or, when no part
// reads as a report, ErrNoReport (the Message is still returned, with the
// refused parts and their reasons).
func Extract(r io.Reader, lim *Limits) (*Message, error) {
	l := lim.withDefaults()
	raw, err := io.ReadAll(io.LimitReader(r, l.MaxMessage+1))
	if err != nil {
		return nil, fmt.Errorf("tlsrptmail: reading the message: %w", err)
	}
	if int64(len(raw)) > l.MaxMessage {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, l.MaxMessage)
	}
	return extract(raw, l)
}

func extract(raw []byte, l Limits) (*Message, error) {
	raw = skipMboxLine(raw)
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil || len(msg.Header) == 0 {
		if err == nil {
			err = errors.New("no header fields")
		}
		return nil, fmt.Errorf("%w: %v", ErrNotMessage, err)
	}
	m := &Message{Envelope: envelope(msg.Header)}
	w := &walker{l: l, m: m}
	body, _ := io.ReadAll(msg.Body)
	w.part(textproto.MIMEHeader(msg.Header), body, 0)

	hints := tlsrpt.Hints{ReportDomain: m.Envelope.ReportDomain, Submitter: m.Envelope.Submitter, MessageID: m.Envelope.MessageID}
	for i := range w.cands {
		c := &w.cands[i]
		h := hints
		h.FileName = c.FileName
		rep, err := tlsrpt.Parse(bytes.NewReader(c.data), &tlsrpt.Options{Limits: l.Report, Hints: h})
		if err != nil {
			c.Err = err
			m.Reports = append(m.Reports, c.Found)
			continue
		}
		rep.Notes = append(append(append([]tlsrpt.Note{}, c.notes...), rep.Notes...), envelopeNotes(&m.Envelope, rep)...)
		c.Report = rep
		m.Reports = append(m.Reports, c.Found)
	}
	if n := len(m.Parsed()); n > 1 {
		m.Notes = append(m.Notes, tlsrpt.Note{Code: NoteSeveralReports, Text: fmt.Sprintf("the message holds %d reports; each is read", n)})
	}
	for _, f := range m.Reports {
		if f.Report != nil {
			f.Report.Notes = append(f.Report.Notes, m.Notes...)
		}
	}
	if len(m.Parsed()) == 0 {
		var why []string
		for _, f := range m.Reports {
			why = append(why, fmt.Sprintf("%s part %q: %v", f.MediaType, f.FileName, f.Err))
		}
		if len(why) == 0 {
			return m, fmt.Errorf("%w: no part of the message looks like a report", ErrNoReport)
		}
		return m, fmt.Errorf("%w: %s", ErrNoReport, strings.Join(why, "; "))
	}
	return m, nil
}

// skipMboxLine drops a leading mbox "From " separator line.
func skipMboxLine(raw []byte) []byte {
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			return raw[i+1:]
		}
	}
	return raw
}

var (
	subjectRE = regexp.MustCompile(`(?i)^\s*Report\s+Domain:\s*(\S+)\s+Submitter:\s*(\S+)\s+Report-ID:\s*<?([^<>\s]+)>?`)
	wordDec   = &mime.WordDecoder{}
)

func envelope(h mail.Header) Envelope {
	var e Envelope
	if a, err := mail.ParseAddress(h.Get("From")); err == nil {
		e.From = a.Address
	} else if s := strings.TrimSpace(h.Get("From")); s != "" {
		e.From = strings.Trim(s[strings.LastIndexAny(s, " <")+1:], "<>")
	}
	if i := strings.LastIndexByte(e.From, '@'); i >= 0 {
		e.FromDomain = domain.Canonical(e.From[i+1:])
	}
	subj := h.Get("Subject")
	if d, err := wordDec.DecodeHeader(subj); err == nil {
		subj = d
	}
	e.Subject = strings.Join(strings.Fields(subj), " ")
	if sm := subjectRE.FindStringSubmatch(e.Subject); sm != nil {
		e.SubjectDomain, e.SubjectSubmitter, e.SubjectReportID = domain.Canonical(sm[1]), domain.Canonical(sm[2]), sm[3]
	}
	e.MessageID = strings.Trim(strings.TrimSpace(h.Get("Message-Id")), "<>")
	if t, err := mail.ParseDate(h.Get("Date")); err == nil {
		e.Date = t.UTC()
	}
	e.ReportDomain = domain.Canonical(strings.TrimSpace(h.Get("TLS-Report-Domain")))
	e.Submitter = domain.Canonical(strings.TrimSpace(h.Get("TLS-Report-Submitter")))
	e.DKIMSignatures = len(h["Dkim-Signature"])
	return e
}

// envelopeNotes compares the header with the report it carried.
func envelopeNotes(e *Envelope, rep *tlsrpt.Report) []tlsrpt.Note {
	var out []tlsrpt.Note
	if e.Submitter == "" {
		out = append(out, tlsrpt.Note{Code: NoteHeaderMissing, Path: "TLS-Report-Submitter", Text: "the mail has no TLS-Report-Submitter field (RFC 8460 §5.3 requires it)"})
	} else if cd := tlsrpt.ContactDomain(rep.ContactInfo); cd != "" && cd != e.Submitter {
		out = append(out, tlsrpt.Note{Code: NoteSubmitterMismatch, Path: "TLS-Report-Submitter", Value: e.Submitter,
			Text: fmt.Sprintf("TLS-Report-Submitter %q is not the contact-info domain %q (RFC 8460 §5.3 says they match; Mail.ru's differ); accepted", e.Submitter, cd)})
	}
	if e.ReportDomain == "" {
		out = append(out, tlsrpt.Note{Code: NoteHeaderMissing, Path: "TLS-Report-Domain", Text: "the mail has no TLS-Report-Domain field (RFC 8460 §5.3 requires it)"})
	} else {
		found := false
		for _, p := range rep.Policies {
			if p.Domain == e.ReportDomain {
				found = true
			}
		}
		if !found {
			out = append(out, tlsrpt.Note{Code: NoteReportDomainAbsent, Path: "TLS-Report-Domain", Value: e.ReportDomain,
				Text: fmt.Sprintf("TLS-Report-Domain %q is not the policy domain of any policy in the report", e.ReportDomain)})
		}
	}
	switch {
	case e.SubjectReportID == "" && e.Subject != "":
		out = append(out, tlsrpt.Note{Code: NoteSubjectForm, Path: "Subject", Value: clip(e.Subject, 200),
			Text: "the Subject does not have the RFC 8460 §5.3 form \"Report Domain: … Submitter: … Report-ID: <…>\"; it is not needed"})
	case e.SubjectReportID != "" && e.SubjectReportID != rep.ReportID:
		out = append(out, tlsrpt.Note{Code: NoteSubjectReportID, Path: "Subject", Value: e.SubjectReportID,
			Text: fmt.Sprintf("the Subject's Report-ID %q differs from the report's report-id %q (Google's always do); the report's is used", e.SubjectReportID, rep.ReportID)})
	}
	return out
}

// candidate is a part that looks like a report.
type candidate struct {
	Found
	data  []byte
	notes []tlsrpt.Note
}

type walker struct {
	l     Limits
	m     *Message
	parts int
	cands []candidate
}

func (w *walker) note(c tlsrpt.NoteCode, path, format string, args ...any) {
	w.m.Notes = append(w.m.Notes, tlsrpt.Note{Code: c, Path: path, Text: fmt.Sprintf(format, args...)})
}

// part looks at one MIME entity with its raw (still transfer-encoded) body.
func (w *walker) part(h textproto.MIMEHeader, body []byte, depth int) {
	w.parts++
	if w.parts > w.l.MaxParts {
		if w.parts == w.l.MaxParts+1 {
			w.note(NoteMIMEBroken, "", "the message has more than %d MIME parts; the rest were not looked at", w.l.MaxParts)
		}
		return
	}
	ctype := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		mt, params = strings.ToLower(strings.TrimSpace(strings.Split(ctype, ";")[0])), map[string]string{}
		if b := boundaryParam(ctype); b != "" {
			params["boundary"] = b
		}
	}
	if mt == "" {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		if depth == 0 && mt == "multipart/report" && !strings.EqualFold(params["report-type"], "tlsrpt") {
			w.note(NoteReportType, "Content-Type", "the multipart/report has report-type=%q, not \"tlsrpt\" (RFC 8460 §5.3)", params["report-type"])
		}
		if depth == 0 && mt != "multipart/report" {
			w.note(NoteReportType, "Content-Type", "the message is %s, not multipart/report (RFC 8460 §5.3)", mt)
		}
		if depth >= w.l.MaxDepth {
			w.note(NoteMIMEBroken, "", "MIME parts nested deeper than %d were not looked at", w.l.MaxDepth)
			return
		}
		w.multipart(params["boundary"], body, depth)
		return
	}
	if mt == "message/rfc822" || mt == "message/global" {
		w.note(NoteForwardedSkipped, "", "an attached message (%s) was not opened: its report would carry the forwarder's signature, not the reporter's", mt)
		return
	}
	if depth == 0 {
		w.note(NoteReportType, "Content-Type", "the message is %s, not multipart/report (RFC 8460 §5.3)", mt)
	}
	if mt == "text/html" {
		return
	}
	name := fileName(h, params)
	data, cteNote := decodeTransfer(h.Get("Content-Transfer-Encoding"), body)
	if !looksLikeReport(data) {
		if alt, ok := base64Fallback(data); ok {
			data = alt
			cteNote = "the part is base64 without saying so in Content-Transfer-Encoding; it was decoded"
		} else if reportType(mt, name) {
			// Declared a report but it is not one: parse it anyway for the error.
		} else {
			return
		}
	}
	c := candidate{Found: Found{MediaType: mt, FileName: name}, data: data}
	if cteNote != "" {
		c.notes = append(c.notes, tlsrpt.Note{Code: NoteTransferEncoding, Path: "Content-Transfer-Encoding", Value: h.Get("Content-Transfer-Encoding"), Text: cteNote})
	}
	if n := mediaTypeNote(mt, data); n != "" {
		c.notes = append(c.notes, tlsrpt.Note{Code: NoteMediaType, Path: "Content-Type", Value: mt, Text: n})
	}
	w.cands = append(w.cands, c)
}

func (w *walker) multipart(boundary string, body []byte, depth int) {
	if boundary == "" {
		w.note(NoteMIMEBroken, "Content-Type", "a multipart part has no boundary; its content was not read")
		return
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return
		}
		if err != nil {
			// mime/multipart wraps the io.EOF of a body that ends before
			// the closing boundary.
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				w.note(NoteCloseBoundary, "", "the closing MIME boundary is missing; the parts before it were read")
			} else {
				w.note(NoteMIMEBroken, "", "the MIME structure is broken (%v); the parts before were read", err)
			}
			return
		}
		data, err := io.ReadAll(p)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				w.note(NoteCloseBoundary, "", "the closing MIME boundary is missing; the last part was read to the end of the message")
			} else {
				w.note(NoteMIMEBroken, "", "a MIME part could not be read to its end (%v); what was read is used", err)
			}
			w.part(p.Header, data, depth+1)
			return
		}
		w.part(p.Header, data, depth+1)
	}
}

// boundaryParam digs the boundary out of a Content-Type that
// mime.ParseMediaType refused.
func boundaryParam(ct string) string {
	// Case-folded byte by byte: strings.ToLower would change the length
	// of a header with invalid UTF-8, and the index would point elsewhere
	// (found by FuzzExtract).
	const key = "boundary="
	i := -1
	for k := 0; k+len(key) <= len(ct); k++ {
		if strings.EqualFold(ct[k:k+len(key)], key) {
			i = k
			break
		}
	}
	if i < 0 {
		return ""
	}
	b := ct[i+len("boundary="):]
	if strings.HasPrefix(b, `"`) {
		if j := strings.IndexByte(b[1:], '"'); j >= 0 {
			return b[1 : j+1]
		}
	}
	if j := strings.IndexAny(b, "; \t"); j >= 0 {
		b = b[:j]
	}
	return b
}

func fileName(h textproto.MIMEHeader, ctParams map[string]string) string {
	if _, p, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil && p["filename"] != "" {
		return clip(p["filename"], 255)
	}
	if ctParams["name"] != "" {
		return clip(ctParams["name"], 255)
	}
	return ""
}

// decodeTransfer undoes the Content-Transfer-Encoding. Base64 is read
// leniently (line breaks, missing padding, stray characters).
func decodeTransfer(cte string, body []byte) ([]byte, string) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit", "binary":
		return body, ""
	case "base64":
		out, clean := lenientBase64(body)
		if !clean {
			return out, "the base64 content has stray characters or no padding; it was decoded anyway"
		}
		return out, ""
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return out, "the quoted-printable content is broken; it was decoded as far as it goes"
		}
		return out, ""
	}
	return body, fmt.Sprintf("the Content-Transfer-Encoding %q is unknown; the part was read as it is", clip(cte, 40))
}

// lenientBase64 decodes base64 ignoring anything outside the alphabet;
// clean reports whether nothing but white space was ignored and the
// padding was right.
func lenientBase64(b []byte) ([]byte, bool) {
	clean := true
	alpha := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			alpha = append(alpha, c)
		case c == '=', c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			clean = false
		}
	}
	if len(alpha)%4 == 1 {
		alpha = alpha[:len(alpha)-1]
		clean = false
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(alpha)))
	n, err := base64.RawStdEncoding.Decode(out, alpha)
	if err != nil {
		clean = false
	}
	return out[:n], clean
}

// base64Fallback decodes a part that is base64 although its
// Content-Transfer-Encoding says nothing, when that yields a report.
func base64Fallback(b []byte) ([]byte, bool) {
	t := bytes.TrimSpace(b)
	if len(t) < 16 {
		return nil, false
	}
	for _, c := range t {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' || c == '\r' || c == '\n') {
			return nil, false
		}
	}
	out, _ := lenientBase64(t)
	return out, looksLikeReport(out)
}

// looksLikeReport: gzip, zip or a JSON object, by content.
func looksLikeReport(b []byte) bool {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b || bytes.HasPrefix(b, []byte("PK\x03\x04")) {
		return true
	}
	t := bytes.TrimLeft(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// reportType: the declared type or name says "report".
func reportType(mt, name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(mt, "tlsrpt") || strings.Contains(mt, "json") || strings.Contains(mt, "gzip") ||
		strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".gz")
}

// mediaTypeNote says when the declared type is not RFC 8460 §5.3's for
// the content.
func mediaTypeNote(mt string, data []byte) string {
	gz := len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
	switch {
	case mt == "application/tlsrpt+gzip" && gz, mt == "application/tlsrpt+json" && !gz:
		return ""
	case mt == "application/tlsrpt+gzip":
		return "the part is declared application/tlsrpt+gzip but holds plain JSON; it was read as JSON"
	case mt == "application/tlsrpt+json":
		return "the part is declared application/tlsrpt+json but holds gzip; it was read as gzip"
	case gz:
		return fmt.Sprintf("the part is declared %s; RFC 8460 §5.3 says application/tlsrpt+gzip", mt)
	}
	return fmt.Sprintf("the part is declared %s; RFC 8460 §5.3 says application/tlsrpt+json", mt)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
