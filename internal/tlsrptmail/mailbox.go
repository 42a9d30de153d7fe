package tlsrptmail

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
)

// Mbox calls f with every message of an mbox file, in order (mboxo and
// mboxrd: "From " lines separate messages, one '>' is removed from
// ">From " lines). A message larger than max (0: DefaultMaxMessage) is
// passed as nil raw bytes with an error wrapping ErrTooLarge, and the
// reading goes on with the next message. An error from f stops the
// reading and is returned.
func Mbox(r io.Reader, max int64, f func(index int, raw []byte, err error) error) error {
	if max <= 0 {
		max = DefaultMaxMessage
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		cur      bytes.Buffer
		index    = -1
		tooLarge bool
		started  bool
		blank    = true // the previous line was empty (or there was none)
	)
	flush := func() error {
		if !started {
			return nil
		}
		var err error
		if tooLarge {
			err = f(index, nil, fmt.Errorf("%w: message %d of the mbox is larger than %d bytes", ErrTooLarge, index, max))
		} else {
			err = f(index, bytes.Clone(cur.Bytes()), nil)
		}
		cur.Reset()
		tooLarge = false
		return err
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A very long line: keep it whole in the current message.
			rest := bytes.Clone(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				if int64(len(rest)) <= max {
					rest = append(rest, line...)
				}
			}
			line = rest
		}
		if len(line) > 0 {
			isSep := blank && bytes.HasPrefix(line, []byte("From "))
			if isSep || !started {
				if ferr := flush(); ferr != nil {
					return ferr
				}
				started = true
				index++
				if !isSep {
					// No separator at the start: a single message.
					writeLine(&cur, line, max, &tooLarge)
				}
			} else {
				writeLine(&cur, unescapeFrom(line), max, &tooLarge)
			}
			blank = len(bytes.TrimRight(line, "\r\n")) == 0
		}
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return fmt.Errorf("tlsrptmail: reading the mbox: %w", err)
		}
	}
}

func writeLine(b *bytes.Buffer, line []byte, max int64, tooLarge *bool) {
	if *tooLarge {
		return
	}
	if int64(b.Len()+len(line)) > max {
		*tooLarge = true
		b.Reset()
		return
	}
	b.Write(line)
}

// unescapeFrom removes one '>' from a ">From " (or ">>From ") line.
func unescapeFrom(line []byte) []byte {
	t := bytes.TrimLeft(line, ">")
	if len(t) < len(line) && bytes.HasPrefix(t, []byte("From ")) {
		return line[1:]
	}
	return line
}

// Maildir calls f with every message of a Maildir folder in fsys (the
// files in cur/ and new/, sorted by name; tmp/ holds messages still being
// delivered and is skipped). A file larger than max (0:
// DefaultMaxMessage) is passed as nil raw bytes with an error wrapping
// ErrTooLarge. An error from f stops the reading and is returned.
func Maildir(fsys fs.FS, max int64, f func(name string, raw []byte, err error) error) error {
	if max <= 0 {
		max = DefaultMaxMessage
	}
	found := false
	for _, sub := range []string{"cur", "new"} {
		entries, err := fs.ReadDir(fsys, sub)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("tlsrptmail: reading the Maildir: %w", err)
		}
		found = true
		slices.SortFunc(entries, func(a, b fs.DirEntry) int { return cmpString(a.Name(), b.Name()) })
		for _, e := range entries {
			if !e.Type().IsRegular() || e.Name()[0] == '.' {
				continue
			}
			name := path.Join(sub, e.Name())
			raw, err := readCapped(fsys, name, max)
			if ferr := f(name, raw, err); ferr != nil {
				return ferr
			}
		}
	}
	if !found {
		return fmt.Errorf("tlsrptmail: not a Maildir folder: it has neither cur/ nor new/")
	}
	return nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func readCapped(fsys fs.FS, name string, max int64) ([]byte, error) {
	fh, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	raw, err := io.ReadAll(io.LimitReader(fh, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > max {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrTooLarge, name, max)
	}
	return raw, nil
}

// Kinds of input, as [Detect] tells them.
const (
	KindReport  = "report"  // gzip, zip or JSON: a report body
	KindMbox    = "mbox"    // starts with an mbox "From " line
	KindMessage = "message" // a mail header
	KindUnknown = "unknown"
)

// Detect tells what the first bytes of a file are, by content: a report
// body, an mbox file or one mail message.
func Detect(head []byte) string {
	switch {
	case looksLikeReport(head):
		return KindReport
	case bytes.HasPrefix(head, []byte("From ")):
		return KindMbox
	}
	line := head
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return KindUnknown
	}
	for _, c := range line[:colon] {
		if c <= ' ' || c > '~' {
			return KindUnknown
		}
	}
	return KindMessage
}
