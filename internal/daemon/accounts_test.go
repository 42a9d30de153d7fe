package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
)

// TestWebAccounts: `mailtls serve` with a web role and a mail relay (the
// lab's submission sink, STARTTLS and AUTH): a sign-up's confirmation
// mail goes through the relay with the configured From, its link points
// at web.public_url (never at the request's Host), and the confirmed
// account logs in. Stopping the server sends what was promised first.
func TestWebAccounts(t *testing.T) {
	e := newEnv(t)
	// The relay is slow for the second mail (the reset), so that it is
	// still on its way when the stop begins.
	var rcpts atomic.Int32
	sink := lab.NewMailSink(t, lab.MailSinkOptions{Users: map[string]string{"mailtls": "relay secret"}, Reject: func(string) error {
		if rcpts.Add(1) == 2 {
			time.Sleep(time.Second)
		}
		return nil
	}}, e.l.CA)
	e.writeWebConfig(fmt.Sprintf(`  public_url: http://check.example.test
  accounts:
    registration: open
mail:
  relay: %q
  tls: starttls
  username: mailtls
  password: "relay secret"
  from: "mailtls <noreply@check.example.test>"
`, sink.Addr()))
	e.start(Options{WebNet: e.l.Net(), WebRoots: e.l.CA.Pool(), MailRoots: e.l.CA.Pool()})
	base := "http://" + e.addrs["web"][0]
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, v url.Values, host string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if host != "" {
			req.Host = host
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	// The Host header names another site: links must not follow it.
	if resp, body := post("/signup", url.Values{"email": {"ann@example.test"}, "password": {"correct horse battery"}}, "evil.example"); resp.StatusCode != 200 {
		t.Fatalf("sign-up: %d\n%s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := sink.Wait(ctx, 0, lab.To("ann@example.test"))
	if err != nil {
		t.Fatalf("no confirmation mail through the relay: %v\n%s", err, e.logs)
	}
	if !m.TLS || m.User != "mailtls" || !strings.Contains(m.Header.Get("From"), "noreply@check.example.test") {
		t.Errorf("mail over TLS %v, AUTH %q, From %q", m.TLS, m.User, m.Header.Get("From"))
	}
	link := regexp.MustCompile(`(\S+)/verify\?token=([A-Za-z0-9_-]+)`).FindStringSubmatch(m.Body)
	if link == nil || link[1] != "http://check.example.test" || strings.Contains(m.Body, "evil.example") {
		t.Fatalf("link in the mail:\n%s", m.Body)
	}
	if resp, body := post("/verify", url.Values{"token": {link[2]}}, ""); resp.StatusCode != 200 || !strings.Contains(body, "Address confirmed") {
		t.Fatalf("verify: %d", resp.StatusCode)
	}
	resp, _ := post("/login", url.Values{"email": {"ann@example.test"}, "password": {"correct horse battery"}}, "")
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].Name != "mailtls_session" {
		t.Fatalf("login: %d %v", resp.StatusCode, resp.Cookies())
	}
	r, err := c.Get(base + "/settings")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(b), "ann@example.test") {
		t.Errorf("settings: %d", r.StatusCode)
	}
	// The saved domains' dashboard is served to the session's user.
	r, err = c.Get(base + "/domains")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(b), "<h1>Your domains</h1>") {
		t.Errorf("dashboard: %d", r.StatusCode)
	}
	// The address and the link are in no log line.
	if strings.Contains(e.logs.String(), "ann@example.test") || strings.Contains(e.logs.String(), link[2]) {
		t.Errorf("the log holds the address or the link:\n%s", e.logs)
	}
	// A reset requested right before the stop is mailed before the stop
	// returns.
	post("/reset", url.Values{"email": {"ann@example.test"}}, "")
	if err := e.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if n := len(sink.Messages()); n != 2 {
		t.Errorf("%d mails when the stop returned; want the confirmation and the reset", n)
	}
}
