package tlsrptmail

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzExtract feeds arbitrary messages to Extract: no panic, errors with a
// sentinel, every part either read or refused with a reason, and the
// limits held.
func FuzzExtract(f *testing.F) {
	rep := testReport(f, "reporter.test", "r1@reporter.test", "example.test", day, 90, 10)
	f.Add([]byte(reportMail("", gzipPart("application/tlsrpt+gzip", rep))))
	f.Add([]byte(reportMail("", jsonPart("application/tlsrpt", rep))))
	f.Add([]byte(strings.TrimSuffix(reportMail("", gzipPart("application/tlsrpt+gzip", rep)), "--BOUNDARY--\r\n")))
	f.Add([]byte("From: a@b\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: multipart/mixed; boundary=y\n\n--y\n\n{}\n--y--\n--x--\n"))
	f.Add([]byte("Subject: Report Domain: a.test Submitter: b.test Report-ID: <x@y>\nContent-Type: application/tlsrpt+json\nContent-Transfer-Encoding: base64\n\neyJhIjoxfQ\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		lim := &Limits{MaxParts: 16, MaxDepth: 4}
		m, err := Extract(bytes.NewReader(in), lim)
		if err != nil && !errors.Is(err, ErrNoReport) && !errors.Is(err, ErrNotMessage) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("error without a sentinel: %v", err)
		}
		if m == nil {
			return
		}
		if len(m.Reports) > 16 {
			t.Fatalf("%d report parts from %d allowed parts", len(m.Reports), 16)
		}
		for _, f := range m.Reports {
			if (f.Report == nil) == (f.Err == nil) {
				t.Fatalf("part %+v is neither read nor refused", f)
			}
			if f.Report != nil && len(f.Report.Policies) == 0 {
				t.Fatal("a report without policies")
			}
		}
		if (err == nil) != (len(m.Parsed()) > 0) {
			t.Fatalf("err %v with %d reports", err, len(m.Parsed()))
		}
	})
}

// FuzzMbox: no panic, no message over the limit, and the messages hold no
// byte that the input did not.
func FuzzMbox(f *testing.F) {
	f.Add([]byte("From a Thu\nSubject: x\n\nbody\n>From escaped\n\nFrom b Thu\nSubject: y\n\nbody2\n"))
	f.Add([]byte("Subject: only\n\nno separator\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		total := 0
		err := Mbox(bytes.NewReader(in), 256, func(i int, raw []byte, err error) error {
			if err != nil {
				if !errors.Is(err, ErrTooLarge) || raw != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				return nil
			}
			if len(raw) > 256 {
				t.Fatalf("message %d has %d bytes", i, len(raw))
			}
			total += len(raw)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if total > len(in) {
			t.Fatalf("%d bytes out of %d in", total, len(in))
		}
	})
}
