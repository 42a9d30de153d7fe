package tlsrptintake

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

func post(t testing.TB, u, ctype string, body []byte, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// RFC 8460 §5.4: reports POSTed as application/tlsrpt+gzip or +json, the
// kind told by content; 2xx only once stored.
func TestHTTPS(t *testing.T) {
	w := newWorld(t)
	u := httpsServer(t, &HTTPHandler{Intake: w.in})
	r := report("google.com", "2026-05-04T00:00:00Z_example.test", "example.test", day, 90, tlsrpt.FailureDetail{ResultType: tlsrpt.CertificateExpired, ReceivingMXHostname: "mx1.example.test", FailedSessions: 3})
	js := jsonOf(t, r)

	// gzip as application/tlsrpt+gzip: 201, and the report is stored
	// with its organisation, report-id and UTC range.
	if code, _ := post(t, u, "application/tlsrpt+gzip", gz(js)); code != http.StatusCreated {
		t.Fatalf("gzip post: %d", code)
	}
	s := only(t, w.db, "google.com", r.ReportID)
	if s.State != store.ReportCounted || !s.Report.Start.Equal(day) || s.Report.End.Location() != time.UTC || s.Receipts[0].Channel != ChannelHTTPS ||
		s.Receipts[0].ClientIP != "127.0.0.1" || s.Receipts[0].DKIM != DKIMNotApplicable || s.Report.Policies[0].Failed != 3 {
		t.Fatalf("stored %+v %+v", s, s.Receipts)
	}
	// The same report uncompressed, mislabelled, and with Content-Encoding:
	// one report; 200 for a copy.
	for _, c := range []struct {
		ctype string
		body  []byte
		hdr   []string
	}{
		{"application/tlsrpt+json", js, nil},
		{"application/tlsrpt+json", gz(js), nil},  // gzip labelled json
		{"application/tlsrpt+gzip", js, nil},      // json labelled gzip
		{"application/octet-stream", gz(js), nil}, // told by content
		{"application/json", gz(js), []string{"Content-Encoding", "gzip"}},
	} {
		if code, _ := post(t, u, c.ctype, c.body, c.hdr...); code != http.StatusOK {
			t.Errorf("%s copy: %d, want 200", c.ctype, code)
		}
	}
	if s := only(t, w.db, "google.com", r.ReportID); len(s.Receipts) != 6 {
		t.Errorf("%d receipts", len(s.Receipts))
	}

	for _, c := range []struct {
		name   string
		method string
		body   []byte
		hdr    []string
		code   int
	}{
		{"not a report", http.MethodPost, []byte("hello"), nil, http.StatusBadRequest},
		{"broken JSON", http.MethodPost, []byte(`{"organization-name": `), nil, http.StatusBadRequest},
		{"a JSON object without policies", http.MethodPost, []byte(`{"organization-name":"x","report-id":"1","date-range":{"start-datetime":"2026-05-04T00:00:00Z","end-datetime":"2026-05-04T23:59:59Z"}}`), nil, http.StatusBadRequest},
		{"GET", http.MethodGet, nil, nil, http.StatusMethodNotAllowed},
		{"brotli", http.MethodPost, js, []string{"Content-Encoding", "br"}, http.StatusUnsupportedMediaType},
	} {
		req, _ := http.NewRequest(c.method, u, bytes.NewReader(c.body))
		for i := 0; i+1 < len(c.hdr); i += 2 {
			req.Header.Set(c.hdr[i], c.hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || strings.Contains(string(b), "hello") {
			t.Errorf("%s: %d %q, want %d", c.name, resp.StatusCode, b, c.code)
		}
	}
	if n, _, _ := w.db.ListTLSRPTReports(ctx(t), store.TLSRPTQuery{}); len(n) != 1 {
		t.Errorf("%d reports stored after the refusals", len(n))
	}
}

// a 1 MB gzip that expands past the cap is refused within a second;
// a body above the compressed cap is refused before it is read to its
// end; the server stays up.
func TestHTTPSCaps(t *testing.T) {
	w := newWorld(t)
	u := httpsServer(t, &HTTPHandler{Intake: w.in, MaxBody: 2 << 20})

	// A gzip bomb of 1 MB: members of 10 MiB of zeros each (about 10 KB
	// compressed) repeated, a gigabyte once expanded.
	bomb := gzipBomb(1 << 20)
	start := time.Now()
	code, _ := post(t, u, "application/tlsrpt+gzip", bomb)
	if took := time.Since(start); code != http.StatusRequestEntityTooLarge || took > 5*time.Second {
		t.Errorf("bomb of %d bytes: %d after %s", len(bomb), code, took)
	}

	// Content-Length above the cap: 413 before the body is sent.
	host := strings.TrimPrefix(u, "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Length: %d\r\n\r\n", 50<<20)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("announced 50 MiB: %v %v", resp, err)
	}

	// Chunked, without a length, past the cap: 413 after MaxBody bytes.
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte{'x'}, 64<<10)
		for {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
	}()
	req, _ := http.NewRequest(http.MethodPost, u, pr)
	resp, err = http.DefaultClient.Do(req)
	pw.CloseWithError(errors.New("done"))
	if err != nil && !isReset(err) {
		t.Fatal(err)
	}
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("endless body: %d", resp.StatusCode)
		}
	}

	// JSON nested deeper than the limit: refused, not a stack overflow.
	deep := `{"organization-name":` + strings.Repeat(`[`, 100000) + strings.Repeat(`]`, 100000) + `}`
	if code, _ := post(t, u, "application/tlsrpt+json", gz([]byte(deep))); code != http.StatusBadRequest {
		t.Errorf("deep JSON: %d", code)
	}
	// 100,000 failure details: stored within bounds (the details kept are
	// capped, their sum is whole).
	var many strings.Builder
	many.WriteString(`{"organization-name":"many.test","report-id":"many","contact-info":"a@many.test","date-range":{"start-datetime":"2026-05-04T00:00:00Z","end-datetime":"2026-05-04T23:59:59Z"},"policies":[{"policy":{"policy-type":"sts","policy-domain":"example.test","policy-string":["version: STSv1","mode: testing","mx: mx1.example.test","max_age: 1"]},"summary":{"total-successful-session-count":1,"total-failure-session-count":100000},"failure-details":[`)
	for i := range 100000 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `{"result-type":"certificate-expired","sending-mta-ip":"192.0.2.%d","receiving-mx-hostname":"mx1.example.test","failed-session-count":1}`, i%250)
	}
	many.WriteString(`]}]}`)
	start = time.Now()
	if code, _ := post(t, u, "application/tlsrpt+gzip", gz([]byte(many.String()))); code != http.StatusCreated {
		t.Fatalf("100,000 failure details: %d", code)
	}
	st := only(t, w.db, "many.test", "many")
	if p := st.Report.Policies[0]; p.DetailsFailed != 100000 || len(p.Failures) != tlsrpt.DefaultMaxFailureDetails || !st.Report.HasNote(tlsrpt.NoteDetailsDropped) {
		t.Errorf("100,000 details: %d summed, %d kept", p.DetailsFailed, len(p.Failures))
	}
	t.Logf("100,000 failure details taken in %s", time.Since(start))

	// Still up.
	if code, _ := post(t, u, "application/tlsrpt+json", jsonOf(t, report("google.com", "after", "example.test", day, 1))); code != http.StatusCreated {
		t.Errorf("after the hostile posts: %d", code)
	}
}

func isReset(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue)
}

// Posts beyond the per-address rate are told to retry; storing failures
// answer 503 so that the sender retries (RFC 8460 §5.5).
func TestHTTPSRateAndStoreFailure(t *testing.T) {
	w := newWorld(t)
	u := httpsServer(t, &HTTPHandler{Intake: w.in, PerMinute: 1, Burst: 2})
	codes := []int{}
	for i := range 4 {
		code, _ := post(t, u, "application/tlsrpt+json", jsonOf(t, report("google.com", fmt.Sprint("r", i), "example.test", day, 1)))
		codes = append(codes, code)
	}
	if fmt.Sprint(codes) != "[201 201 429 429]" {
		t.Errorf("codes %v", codes)
	}

	broken := &Intake{Store: failingStore{}}
	u = httpsServer(t, &HTTPHandler{Intake: broken})
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(jsonOf(t, report("google.com", "x", "example.test", day, 1))))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("store failure: %d", resp.StatusCode)
	}
}

type failingStore struct{ store.TLSRPT }

func (failingStore) AddTLSRPTReport(context.Context, store.NewTLSRPTReport) (store.StoredTLSRPT, store.ReportOutcome, error) {
	return store.StoredTLSRPT{}, "", errors.New("disk full")
}
