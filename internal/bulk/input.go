package bulk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/mailtls/mailtls/internal/domain"
)

// MaxLineLength bounds one input line. A domain is at most 253 octets; the
// rest leaves room for a rank column, a URL or an address around it.
const MaxLineLength = 4096

// Item is one domain read from the input.
type Item struct {
	Line   int      // 1-based line number in the input
	Input  string   // the domain as written (the domain column of a CSV line)
	Domain string   // the A-label domain (domain.Parse)
	Notes  []string // what domain.Parse changed
}

// LineError is an input line that is not a domain. It is reported with its
// line number and skipped; it never stops a run.
type LineError struct {
	Line   int
	Text   string // the line, cut to 80 characters
	Reason string
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// ParseLine reads one input line: a domain, or a "rank,domain" line of a
// top-sites list (Tranco, Umbrella). It returns skip for blank lines, "#"
// comments and a "rank,domain" header, and an error for anything else that
// is not a domain. It is pure and fuzzed.
func ParseLine(line string) (input, name string, notes []string, skip bool, err error) {
	s := strings.TrimSpace(strings.TrimPrefix(line, "\ufeff"))
	if s == "" || strings.HasPrefix(s, "#") {
		return "", "", nil, true, nil
	}
	if !utf8.ValidString(s) {
		return "", "", nil, false, errors.New("not valid UTF-8")
	}
	if rank, dom, ok := strings.Cut(s, ","); ok {
		rank, dom = strings.TrimSpace(rank), strings.TrimSpace(dom)
		if strings.EqualFold(rank, "rank") && strings.EqualFold(dom, "domain") {
			return "", "", nil, true, nil
		}
		if !isDigits(rank) || strings.Contains(dom, ",") {
			return "", "", nil, false, errors.New(`want one domain, or "rank,domain"`)
		}
		s = dom
	}
	if strings.ContainsAny(s, " \t") {
		return "", "", nil, false, errors.New("more than one word; want one domain per line")
	}
	name, notes, err = domain.Parse(s)
	if err != nil {
		var ie *domain.InvalidError
		if errors.As(err, &ie) {
			return "", "", nil, false, errors.New(ie.Reason)
		}
		return "", "", nil, false, err
	}
	return s, name, notes, false, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Reader reads Items from a stream one line at a time, so that the input
// never has to fit in memory.
type Reader struct {
	br   *bufio.Reader
	line int
}

// NewReader reads from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next domain. A line that is not a domain gives a
// *LineError, after which Next may be called again; io.EOF ends the input;
// any other error is a read error.
func (r *Reader) Next() (Item, error) {
	for {
		raw, err := r.readLine()
		if err != nil {
			return Item{}, err
		}
		r.line++
		if len(raw) > MaxLineLength {
			return Item{}, &LineError{Line: r.line, Text: clip(string(raw[:80])), Reason: fmt.Sprintf("longer than %d bytes", MaxLineLength)}
		}
		input, name, notes, skip, perr := ParseLine(string(raw))
		if skip {
			continue
		}
		if perr != nil {
			return Item{}, &LineError{Line: r.line, Text: clip(string(raw)), Reason: perr.Error()}
		}
		return Item{Line: r.line, Input: input, Domain: name, Notes: notes}, nil
	}
}

// readLine returns the next line without its end; a line longer than
// MaxLineLength is returned cut to MaxLineLength+1 bytes (the rest is
// skipped), so memory stays bounded whatever the input.
func (r *Reader) readLine() ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(buf) <= MaxLineLength {
			buf = append(buf, chunk[:min(len(chunk), MaxLineLength+1-len(buf))]...)
		}
		switch {
		case err == nil:
			return bytes.TrimRight(buf, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return bytes.TrimRight(buf, "\r\n"), nil
		default:
			return nil, err
		}
	}
}

func clip(s string) string {
	s = strings.TrimRight(s, "\r\n")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
