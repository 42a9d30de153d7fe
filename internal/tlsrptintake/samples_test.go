package tlsrptintake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptmail"
)

// numbers are the figures of a report, policy by policy.
func numbers(r *tlsrpt.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s..%s", r.OrganizationName, r.ReportID, r.Start.UTC().Format("2006-01-02T15:04:05"), r.End.UTC().Format("2006-01-02T15:04:05"))
	for _, p := range r.Policies {
		fmt.Fprintf(&b, "; %s %s mx=%v ok=%d failed=%d details=%d/%d", p.Type, p.Domain, p.MXPatterns, p.Successful, p.Failed, p.DetailsFailed, len(p.Failures))
	}
	return b.String()
}

// content is a report without the parser's notes (which differ between
// an .eml and its .json): what the store deduplicates on.
func content(t *testing.T, r *tlsrpt.Report) string {
	c := *r
	c.Notes = nil
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSamplesThroughChannels ingests every file of ../shared/tlsrpt-samples
// through the channels it fits — .eml through the SMTP listener, an IMAP
// mailbox and the file import, .json and .json.gz through HTTPS POST and
// the file import —
// and checks that the stored report has the numbers the file holds, and
// that files holding the same report are one stored report with a receipt
// per arrival (a conflict only where the content differs).
func TestSamplesThroughChannels(t *testing.T) {
	dir := lab.Shared(t, "tlsrpt-samples")
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	w := newWorld(t)
	w.in.Configured = nil // every domain: the samples are about many
	addr, tc, _ := smtpWorld(t, w, SMTPConfig{MessagesPerMinute: -1})
	u := httpsServer(t, &HTTPHandler{Intake: w.in, PerMinute: -1})
	mbox := lab.NewIMAP(t, lab.IMAPOptions{})
	mails := 0

	type arrival struct {
		file    string
		content string
		numbers string
	}
	byKey := map[[2]string][]arrival{}
	receipts := map[[2]string]int{}
	n := 0
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasSuffix(name, ".md") {
			continue
		}
		n++
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// What the file holds, read directly with the parser.
		var want *tlsrpt.Report
		mail := tlsrptmail.Detect(raw) != tlsrptmail.KindReport
		if mail {
			m, err := tlsrptmail.Extract(bytes.NewReader(raw), nil)
			if err != nil || len(m.Parsed()) != 1 {
				t.Fatalf("%s: %v", name, err)
			}
			want = m.Parsed()[0]
		} else {
			if want, err = tlsrpt.Parse(bytes.NewReader(raw), &tlsrpt.Options{Hints: tlsrpt.Hints{FileName: name}}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		k := [2]string{want.OrganizationName, want.ReportID}
		t.Run(name, func(t *testing.T) {
			if mail {
				if err := send(t, addr, tc, "tlsrpt@example.test", string(raw)); err != nil {
					t.Fatalf("SMTP: %v", err)
				}
				rs, err := w.in.Mail(ctx(t), raw, Source{Channel: ChannelFile, FileName: name, AdminImport: true, AcceptUnverified: true})
				if err != nil || len(rs) != 1 {
					t.Fatalf("file import: %v %+v", err, rs)
				}
				mbox.Deliver(t, "INBOX", string(raw)) // pulled below, all in one round
				mails++
				receipts[k]++
			} else {
				req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(raw))
				req.Header.Set("Content-Type", "application/tlsrpt+gzip")
				req.Header.Set("Content-Disposition", `attachment; filename="`+name+`"`)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
					t.Fatalf("HTTPS POST: %d", resp.StatusCode)
				}
				if _, err := w.in.Body(ctx(t), raw, Source{Channel: ChannelFile, FileName: name, AdminImport: true}); err != nil {
					t.Fatalf("file import: %v", err)
				}
			}
			receipts[k] += 2
		})
		byKey[k] = append(byKey[k], arrival{name, content(t, want), numbers(want)})
	}
	if n < 50 {
		t.Fatalf("only %d sample files", n)
	}
	if st, err := puller(mbox, w, false, "").Round(ctx(t)); err != nil || st.Found != mails || st.Processed != mails {
		t.Fatalf("IMAP round over %d sample mails: %+v %v", mails, st, err)
	}

	all, _, err := w.db.ListTLSRPTReports(ctx(t), store.TLSRPTQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[[2]string][]store.StoredTLSRPT{}
	for _, s := range all {
		k := [2]string{s.Report.OrganizationName, s.Report.ReportID}
		stored[k] = append(stored[k], s)
	}
	for k, arrivals := range byKey {
		contents := map[string]arrival{}
		for _, a := range arrivals {
			contents[a.content] = a
		}
		ss := stored[k]
		if len(ss) != len(contents) {
			t.Errorf("%v: %d stored reports for %d distinct contents in %v", k, len(ss), len(contents), arrivals)
			continue
		}
		got := 0
		for _, s := range ss {
			a, ok := contents[content(t, s.Report)]
			if !ok {
				t.Errorf("%v: stored content matches no file", k)
				continue
			}
			if numbers(s.Report) != a.numbers {
				t.Errorf("%s: stored %s, the file holds %s", a.file, numbers(s.Report), a.numbers)
			}
			got += len(s.Receipts)
		}
		if got != receipts[k] {
			t.Errorf("%v: %d receipts, want %d", k, got, receipts[k])
		}
		// One counts; a second content under the same key is a visible
		// conflict (neztore's edited copy).
		states := map[store.ReportState]int{}
		for _, s := range ss {
			states[s.State]++
		}
		if len(ss) > 1 {
			t.Logf("%v: %d contents, states %v", k, len(ss), states)
		}
		if states[store.ReportCounted] != 1 || states[store.ReportConflict] != len(ss)-1 {
			t.Errorf("%v: states %v", k, states)
		}
	}
}
