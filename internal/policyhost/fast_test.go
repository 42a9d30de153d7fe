package policyhost

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
)

func testutilCount(r *running, result string) float64 {
	var m dto.Metric
	r.srv.Metrics.Requests.WithLabelValues(result).Write(&m)
	return m.GetCounter().GetValue()
}

func dialPolicyHost(t *testing.T, l *lab.Lab, r *running, sni string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := tls.Dial("tcp", r.https, &tls.Config{ServerName: sni, RootCAs: l.CA.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp, string(body)
}

const policyA = "version: STSv1\r\nmode: enforce\r\nmx: mx1.a.test\r\nmx: *.mail.a.test\r\nmax_age: 604800\r\n"

// TestFastPath: pipelined requests, HEAD, Connection: close, on the fast
// path, with the headers net/http would send.
func TestFastPath(t *testing.T) {
	l := lab.New(t)
	r := start(t, l, hostConfig(t, l, "", "a.test", "b.test"))
	c, br := dialPolicyHost(t, l, r, "mta-sts.a.test")
	get := "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\nUser-Agent: x\r\n\r\n"
	io.WriteString(c, get+strings.Replace(get, "GET", "HEAD", 1)+strings.Replace(get, "Host: mta-sts.a.test", "host: MTA-STS.A.TEST:443", 1))
	for i, method := range []string{"GET", "HEAD", "GET"} {
		resp, body := readResponse(t, br, method)
		want := policyA
		if method == "HEAD" {
			want = ""
		}
		if resp.StatusCode != 200 || body != want || resp.ContentLength != int64(len(policyA)) {
			t.Errorf("%d %s: %d %q (length %d)", i, method, resp.StatusCode, body, resp.ContentLength)
		}
		h := resp.Header
		if h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("Cache-Control") != "max-age=60" ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Date") == "" || resp.Close {
			t.Errorf("%d %s: headers %v", i, method, h)
		}
	}
	io.WriteString(c, strings.Replace(get, "User-Agent: x", "Connection: close", 1))
	if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != policyA || !resp.Close {
		t.Errorf("Connection: close: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close the server must close, got %v", err)
	}
	if got := testutilCount(r, "policy"); got != 4 {
		t.Errorf("policy requests counted %v, want 4", got)
	}
}

// TestFastPathHandsOver: whatever is not a plain policy request gets
// net/http's answer, on the same connection, which keeps working.
func TestFastPathHandsOver(t *testing.T) {
	l := lab.New(t)
	r := start(t, l, hostConfig(t, l, "", "a.test", "b.test"))
	get := "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\n\r\n"
	tests := []struct {
		name, req string
		want      int
		body      string
	}{
		{"other path", "GET / HTTP/1.1\r\nHost: mta-sts.a.test\r\n\r\n", 404, ""},
		{"query", "GET /.well-known/mta-sts.txt?x HTTP/1.1\r\nHost: mta-sts.a.test\r\n\r\n", 200, policyA},
		{"HTTP/1.0 keep-alive", "GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: mta-sts.a.test\r\nConnection: keep-alive\r\n\r\n", 200, policyA},
		{"POST with a body", "POST /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\nContent-Length: 3\r\n\r\nabc", 405, ""},
		{"GET with a body", "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\nContent-Length: 3\r\n\r\nabc", 200, policyA},
		{"chunked body", "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, policyA},
		{"another site's host", "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.b.test\r\n\r\n", 421, ""},
		{"unknown host", "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: evil.test\r\n\r\n", 404, ""},
		{"two hosts", "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\nHost: mta-sts.a.test\r\n\r\n", 400, ""},
		{"no host", "GET /.well-known/mta-sts.txt HTTP/1.1\r\n\r\n", 400, ""},
		{"bad header name", "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\nBad Name: x\r\n\r\n", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, br := dialPolicyHost(t, l, r, "mta-sts.a.test")
			// A fast request first, then the one handed over, then one more.
			io.WriteString(c, get)
			if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != policyA {
				t.Fatalf("first request: %d %q", resp.StatusCode, body)
			}
			io.WriteString(c, tt.req)
			resp, body := readResponse(t, br, "GET")
			// net/http's own 400 has a text body.
			if resp.StatusCode != tt.want || (tt.want != 400 && body != tt.body) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.want, tt.body)
			}
			if resp.Close {
				return
			}
			io.WriteString(c, get)
			if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != policyA {
				t.Errorf("after the handover: %d %q", resp.StatusCode, body)
			}
		})
	}
	t.Run("head split over two writes", func(t *testing.T) {
		c, br := dialPolicyHost(t, l, r, "mta-sts.a.test")
		io.WriteString(c, get[:20])
		time.Sleep(50 * time.Millisecond)
		io.WriteString(c, get[20:])
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != policyA {
			t.Errorf("%d %q", resp.StatusCode, body)
		}
	})
}

// TestShutdownEndsIdleConnections: an idle keep-alive connection of the
// fast path does not hold Shutdown up.
func TestShutdownEndsIdleConnections(t *testing.T) {
	l := lab.New(t)
	r := start(t, l, hostConfig(t, l, "", "a.test"))
	c, br := dialPolicyHost(t, l, r, "mta-sts.a.test")
	io.WriteString(c, "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\n\r\n")
	readResponse(t, br, "GET")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	if err := r.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("Shutdown took %v with one idle connection", d)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the idle connection is still open")
	}
}

func TestParseFast(t *testing.T) {
	ok := []string{
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /.well-known/mta-sts.txt HTTP/1.1\r\nhost:h:443\r\nAccept: */*\r\nConnection: keep-alive, close\r\n\r\n",
	}
	for _, s := range ok {
		if _, good := parseFast([]byte(s)); !good {
			t.Errorf("refused %q", s)
		}
	}
	bad := []string{
		"GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: h\r\n\r\n",
		"GET /.well-known/mta-sts.txt  HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: h:x\r\n\r\n",
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: \r\n\r\n",
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n",
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
		"PUT /.well-known/mta-sts.txt HTTP/1.1\r\nHost: h\r\n\r\n",
	}
	for _, s := range bad {
		if _, good := parseFast([]byte(s)); good {
			t.Errorf("accepted %q", s)
		}
	}
}

// FuzzParseFast: whatever the fast path accepts, net/http reads the same
// way — same method, path, host and keep-alive — so answering it without
// net/http never changes what a client gets (and nothing it accepts
// smuggles a second request or a body).
func FuzzParseFast(f *testing.F) {
	for _, s := range []string{
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /.well-known/mta-sts.txt HTTP/1.1\r\nhost:mta-sts.a.test:443\r\nAccept: */*\r\nConnection: keep-alive, close\r\n\r\n",
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
		"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		end := bytes.Index(head, []byte("\r\n\r\n"))
		if end < 0 {
			return
		}
		head = head[:end+4]
		r, ok := parseFast(head)
		if !ok || bytes.ContainsAny(r.host, "[]") {
			// An IP-literal host never names a site: handed to net/http.
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("fast path accepted what net/http refuses (%v): %q", err, head)
		}
		method := "GET"
		if r.head {
			method = "HEAD"
		}
		host := req.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if req.Method != method || req.URL.Path != fetch.Path || req.RequestURI != fetch.Path || !strings.EqualFold(host, string(r.host)) ||
			req.Close != r.close || req.ContentLength != 0 || len(req.TransferEncoding) > 0 || req.ProtoMinor != 1 {
			t.Fatalf("fast path and net/http disagree on %q: fast %+v, net/http %s %s host %q close %v length %d", head, r, req.Method, req.RequestURI, req.Host, req.Close, req.ContentLength)
		}
	})
}
