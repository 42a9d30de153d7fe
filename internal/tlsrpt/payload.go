package tlsrpt

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Default limits for an untrusted report. RFC 8460 §5.2 names ten megabytes
// as a commonly observed receiver limit; real reports are a few kilobytes.
const (
	DefaultMaxCompressed     = 10 << 20 // bytes read from the sender (RFC 8460 §5.2)
	DefaultMaxDecompressed   = 20 << 20 // bytes of JSON after gunzip
	DefaultMaxRatio          = 100      // decompressed / compressed, checked past RatioFloor
	DefaultMaxDepth          = 16       // JSON nesting; a report has 5 levels
	DefaultMaxPolicies       = 1000     // policies kept per report
	DefaultMaxFailureDetails = 10000    // failure details kept per report
	DefaultMaxStrings        = 1000     // policy-string lines and mx-host patterns kept per policy
	DefaultMaxString         = 1024     // characters kept of one string value
	// RatioFloor is the output size below which the ratio is not checked:
	// a small report of repeated records compresses very well and is no bomb.
	RatioFloor = 1 << 20
)

// Limits bound the work done on one untrusted report. Zero fields take the
// defaults above; a nil *Limits means all defaults.
type Limits struct {
	MaxCompressed     int64
	MaxDecompressed   int64
	MaxRatio          int64
	MaxDepth          int
	MaxPolicies       int
	MaxFailureDetails int
	MaxStrings        int
	MaxString         int
}

func (l *Limits) withDefaults() Limits {
	var o Limits
	if l != nil {
		o = *l
	}
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxCompressed, DefaultMaxCompressed)
	def(&o.MaxDecompressed, DefaultMaxDecompressed)
	def(&o.MaxRatio, DefaultMaxRatio)
	defInt(&o.MaxDepth, DefaultMaxDepth)
	defInt(&o.MaxPolicies, DefaultMaxPolicies)
	defInt(&o.MaxFailureDetails, DefaultMaxFailureDetails)
	defInt(&o.MaxStrings, DefaultMaxStrings)
	defInt(&o.MaxString, DefaultMaxString)
	return o
}

// Errors returned by [Decode] and [Parse], for errors.Is. Each returned
// error wraps one of them with a sentence saying what was found.
var (
	// ErrTooLarge: the input is larger than MaxCompressed. Nothing past
	// the limit was read.
	ErrTooLarge = errors.New("tlsrpt: report too large")
	// ErrBomb: decompression went past MaxDecompressed or past MaxRatio
	// times the compressed size; it was stopped there.
	ErrBomb = errors.New("tlsrpt: report expands too much")
	// ErrNotReport: the content is neither gzip nor a JSON object.
	ErrNotReport = errors.New("tlsrpt: not a TLS-RPT report")
	// ErrMalformed: the JSON is broken, too deep, or lacks what every
	// report needs (a date range and at least one policy).
	ErrMalformed = errors.New("tlsrpt: malformed report")
)

// Payload kinds, as found by content.
const (
	KindJSON = "json"
	KindGzip = "gzip"
	KindZip  = "zip"
)

// Decode reads one report payload from r and returns the JSON text. The
// kind is decided by content, never by media type or file name (gzip by its
// magic bytes, zip by its local header, else a JSON object after optional
// white space and byte-order mark), so a gzip body labelled
// application/tlsrpt+json and the reverse both work. At most MaxCompressed
// bytes are read; decompression stops at MaxDecompressed or MaxRatio.
// The notes say what was unusual (nested gzip, zip, a BOM, a damaged gzip
// trailer). Errors wrap ErrTooLarge, ErrBomb or ErrNotReport.
func Decode(r io.Reader, lim *Limits) (json []byte, kind string, notes []Note, err error) {
	l := lim.withDefaults()
	raw, err := io.ReadAll(io.LimitReader(r, l.MaxCompressed+1))
	if err != nil {
		return nil, "", nil, fmt.Errorf("tlsrpt: reading the report: %w", err)
	}
	if int64(len(raw)) > l.MaxCompressed {
		return nil, "", nil, fmt.Errorf("%w: more than %d bytes (RFC 8460 §5.2)", ErrTooLarge, l.MaxCompressed)
	}
	return decodeBytes(raw, l)
}

func decodeBytes(raw []byte, l Limits) ([]byte, string, []Note, error) {
	var notes []Note
	kind := ""
	data := raw
	// Two layers at most: a gzip inside a gzip, or a zip holding a gzip.
	for layer := 0; layer < 3; layer++ {
		switch {
		case isGzip(data):
			if kind == "" {
				kind = KindGzip
			} else if kind == KindGzip {
				notes = append(notes, Note{Code: NoteNestedCompression, Text: "the report was compressed twice; both layers were removed"})
			}
			out, n, err := gunzip(data, int64(len(raw)), l)
			if err != nil {
				return nil, kind, notes, err
			}
			notes = append(notes, n...)
			data = out
			continue
		case isZip(data):
			if kind == "" {
				kind = KindZip
			}
			notes = append(notes, Note{Code: NoteZip, Text: "the report came in a zip archive; RFC 8460 §5.2 uses gzip"})
			out, err := unzip(data, int64(len(raw)), l)
			if err != nil {
				return nil, kind, notes, err
			}
			data = out
			continue
		}
		break
	}
	if kind == "" {
		kind = KindJSON
	}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		notes = append(notes, Note{Code: NoteBOM, Text: "the JSON starts with a UTF-8 byte-order mark (RFC 8259 §8.1 forbids it); it was skipped"})
		data = data[3:]
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, kind, notes, fmt.Errorf("%w: the content is neither gzip nor a JSON object (starts with %s)", ErrNotReport, describeStart(data))
	}
	return data, kind, notes, nil
}

func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }
func isZip(b []byte) bool  { return bytes.HasPrefix(b, []byte("PK\x03\x04")) }

// gunzip decompresses one gzip stream (several members are read as one, as
// gzip(1) does) under the size and ratio caps. A truncated stream or a bad
// checksum keeps what was decompressed, with a note: the JSON parser then
// decides whether the content is whole.
func gunzip(data []byte, compressed int64, l Limits) ([]byte, []Note, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: broken gzip header: %v", ErrNotReport, err)
	}
	out, err := readCapped(zr, compressed, l)
	if err == nil {
		return out, nil, nil
	}
	switch {
	case errors.Is(err, ErrBomb):
		return nil, nil, err
	case errors.Is(err, io.ErrUnexpectedEOF):
		return out, []Note{{Code: NoteGzipDamaged, Text: "the gzip stream ends early; the report was read as far as it goes"}}, nil
	case errors.Is(err, gzip.ErrChecksum):
		return out, []Note{{Code: NoteGzipDamaged, Text: "the gzip checksum does not match the content"}}, nil
	}
	if len(out) > 0 {
		return out, []Note{{Code: NoteGzipDamaged, Text: "the gzip stream is damaged after " + fmt.Sprint(len(out)) + " bytes: " + err.Error()}}, nil
	}
	return nil, nil, fmt.Errorf("%w: broken gzip stream: %v", ErrNotReport, err)
}

// readCapped reads r up to the decompression limits.
func readCapped(r io.Reader, compressed int64, l Limits) ([]byte, error) {
	var buf bytes.Buffer
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		buf.Write(chunk[:n])
		size := int64(buf.Len())
		if size > l.MaxDecompressed {
			return nil, fmt.Errorf("%w: more than %d bytes after decompression (from %d compressed)", ErrBomb, l.MaxDecompressed, compressed)
		}
		if size > RatioFloor && size > compressed*l.MaxRatio {
			return nil, fmt.Errorf("%w: more than %d times its compressed size of %d bytes", ErrBomb, l.MaxRatio, compressed)
		}
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return buf.Bytes(), err
		}
	}
}

// unzip returns the first member of a zip archive that is a report (JSON
// or gzip), under the same caps as gunzip.
func unzip(data []byte, compressed int64, l Limits) ([]byte, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: broken zip archive: %v", ErrNotReport, err)
	}
	for i, f := range zr.File {
		if i >= 16 {
			break
		}
		if f.FileInfo().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			continue
		}
		out, err := readCapped(rc, compressed, l)
		rc.Close()
		if err != nil {
			if errors.Is(err, ErrBomb) {
				return nil, err
			}
			continue
		}
		if isGzip(out) || bytes.HasPrefix(bytes.TrimLeft(bytes.TrimPrefix(out, []byte("\xef\xbb\xbf")), " \t\r\n"), []byte("{")) {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%w: the zip archive holds no JSON or gzip member", ErrNotReport)
}

// describeStart names the first bytes of a refused payload for the error.
func describeStart(b []byte) string {
	if len(b) == 0 {
		return "nothing: it is empty"
	}
	n := min(len(b), 16)
	s := string(b[:n])
	printable := true
	for _, c := range []byte(s) {
		if c < 0x20 && c != '\t' && c != '\r' && c != '\n' || c >= 0x7f {
			printable = false
			break
		}
	}
	if printable {
		return fmt.Sprintf("%q", strings.TrimSpace(s))
	}
	return fmt.Sprintf("bytes % x", b[:n])
}
