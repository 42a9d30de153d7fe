package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/account"
	mailer "github.com/mailtls/mailtls/internal/mail"
	"github.com/mailtls/mailtls/internal/store"
)

// mailbox keeps the mail the account service sends.
type mailbox struct {
	mu   sync.Mutex
	msgs []*mailer.Message
}

func (m *mailbox) Send(_ context.Context, msg *mailer.Message) error {
	if err := msg.Check(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	return nil
}

func (m *mailbox) to(addr string) []*mailer.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*mailer.Message
	for _, x := range m.msgs {
		if x.To == addr {
			out = append(out, x)
		}
	}
	return out
}

var mailLinkRE = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+(/[a-z/]+\?(?:token|invite)=[A-Za-z0-9_%-]+)`)

// link waits for the background mail and returns the path and query of
// the link in the last mail to addr.
func (h *harness) link(addr string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.accounts.Drain(ctx); err != nil {
		h.t.Fatal(err)
	}
	msgs := h.mail.to(addr)
	if len(msgs) == 0 {
		h.t.Fatalf("no mail to %s", addr)
	}
	m := mailLinkRE.FindStringSubmatch(msgs[len(msgs)-1].Text)
	if m == nil {
		h.t.Fatalf("no link in the mail to %s:\n%s", addr, msgs[len(msgs)-1].Text)
	}
	return m[1]
}

// agent is a browser: it keeps cookies and sends the headers a browser
// sends on a same-origin form post.
type agent struct {
	h   *harness
	jar *cookiejar.Jar
	c   *http.Client
}

func (h *harness) agent() *agent {
	jar, _ := cookiejar.New(nil)
	return &agent{h: h, jar: jar, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request; hdr are extra header pairs.
func (a *agent) do(method, path string, form url.Values, hdr ...string) response {
	a.h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, a.h.srv.URL+path, body)
	if err != nil {
		a.h.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", formType)
		req.Header.Set("Origin", a.h.srv.URL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp, b}
}

func (a *agent) get(path string) response { a.h.t.Helper(); return a.do("GET", path, nil) }

func (a *agent) post(path string, kv ...string) response {
	a.h.t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return a.do("POST", path, v)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from a logged-in page.
func (a *agent) csrf() string {
	a.h.t.Helper()
	r := a.get("/settings")
	m := csrfRE.FindSubmatch(r.body)
	if r.StatusCode != 200 || m == nil {
		a.h.t.Fatalf("settings: %d, no CSRF token\n%s", r.StatusCode, truncate(r.body))
	}
	return string(m[1])
}

// session returns the session cookie's value ("" without one).
func (a *agent) session() string {
	u, _ := url.Parse(a.h.srv.URL)
	for _, c := range a.jar.Cookies(u) {
		if c.Name == SessionCookiePlain {
			return c.Value
		}
	}
	return ""
}

const testPassword = "correct horse battery"

// signUp signs addr up through the pages and confirms the address.
func (h *harness) signUp(addr string) {
	h.t.Helper()
	a := h.agent()
	if r := a.post("/signup", "email", addr, "password", testPassword); r.StatusCode != 200 {
		h.t.Fatalf("sign-up: %d\n%s", r.StatusCode, truncate(r.body))
	}
	path := h.link(addr)
	tok := path[strings.Index(path, "token=")+len("token="):]
	if r := a.post("/verify", "token", mustUnescape(h.t, tok)); r.StatusCode != 200 {
		h.t.Fatalf("verify: %d\n%s", r.StatusCode, truncate(r.body))
	}
}

func mustUnescape(t *testing.T, s string) string {
	v, err := url.QueryUnescape(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// logIn logs a new agent in.
func (h *harness) logIn(addr, pw string) *agent {
	h.t.Helper()
	a := h.agent()
	r := a.post("/login", "email", addr, "password", pw, "next", "/settings")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/settings" {
		h.t.Fatalf("login: %d %s\n%s", r.StatusCode, r.Header.Get("Location"), truncate(r.body))
	}
	return a
}

// Sign-up, the verification link, login and logout through the pages, and
// the session cookie's attributes (OWASP Session Management: HttpOnly,
// SameSite=Lax, Path=/, no Domain; over TLS __Host- and Secure).
func TestAccountPages(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	a := h.agent()
	home := a.get("/")
	if !strings.Contains(string(home.body), `href="/login"`) || !strings.Contains(string(home.body), `href="/signup"`) {
		t.Error("the home page has no login and sign-up links")
	}
	if home.Header.Get("Set-Cookie") != "" {
		t.Error("a visit without an account set a cookie")
	}
	if r := a.post("/signup", "email", "Ann@Example.TEST", "password", "too short"); r.StatusCode != 400 || !strings.Contains(string(r.body), "at least 12 characters") {
		t.Errorf("short password: %d", r.StatusCode)
	}
	if r := a.post("/signup", "email", "ann@example.test", "password", testPassword); r.StatusCode != 200 || !strings.Contains(string(r.body), "Check your mail") {
		t.Fatalf("sign-up: %d\n%s", r.StatusCode, truncate(r.body))
	}
	path := h.link("ann@example.test")
	if !strings.HasPrefix(path, "/verify?token=") {
		t.Fatalf("link %s", path)
	}
	// Before the address is confirmed the login is refused.
	if r := a.post("/login", "email", "ann@example.test", "password", testPassword); r.StatusCode != 403 || !strings.Contains(string(r.body), "not confirmed") {
		t.Errorf("login before confirmation: %d", r.StatusCode)
	}
	// GET shows a button and uses nothing: a mail scanner fetching the link
	// twice does not spend it.
	for range 2 {
		r := a.get(path)
		if r.StatusCode != 200 || !strings.Contains(string(r.body), `action="/verify"`) {
			t.Fatalf("GET %s: %d", path, r.StatusCode)
		}
	}
	tok := mustUnescape(t, strings.TrimPrefix(path, "/verify?token="))
	if r := a.post("/verify", "token", tok); r.StatusCode != 200 || !strings.Contains(string(r.body), "Address confirmed") {
		t.Fatalf("POST /verify: %d\n%s", r.StatusCode, truncate(r.body))
	}
	if r := a.post("/verify", "token", tok); r.StatusCode != 400 || !strings.Contains(string(r.body), "used already") {
		t.Errorf("the link twice: %d", r.StatusCode)
	}

	// Session fixation (OWASP): an attacker logs in to an account of
	// their own and plants that session's cookie in the victim's browser;
	// the victim's login must give a new token, and the attacker's cookie
	// must not become the victim's session.
	h.signUp("mallory@example.test")
	attacker := h.logIn("mallory@example.test", testPassword)
	planted := attacker.session()
	u, _ := url.Parse(h.srv.URL)
	a.jar.SetCookies(u, []*http.Cookie{{Name: SessionCookiePlain, Value: planted, Path: "/"}})
	r := a.post("/login", "email", "ann@example.test", "password", testPassword, "next", "/domains")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/domains" {
		t.Fatalf("login: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	c := r.Cookies()
	if len(c) != 1 || c[0].Name != SessionCookiePlain || !c[0].HttpOnly || c[0].SameSite != http.SameSiteLaxMode || c[0].Path != "/" ||
		c[0].Domain != "" || c[0].Secure || c[0].MaxAge <= 0 {
		t.Errorf("session cookie %+v", c)
	}
	if s := a.session(); s == "" || s == planted {
		t.Errorf("session after login %q (planted %q)", s, planted)
	}
	if r := attacker.get("/settings"); strings.Contains(string(r.body), "ann@example.test") {
		t.Error("the planted session cookie became the victim's session")
	}
	set := a.get("/settings")
	if set.StatusCode != 200 || !strings.Contains(string(set.body), "ann@example.test") || set.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("settings: %d %q", set.StatusCode, set.Header.Get("Cache-Control"))
	}
	if !strings.Contains(string(a.get("/").body), `action="/logout"`) {
		t.Error("the home page of a logged-in user has no logout button")
	}
	// Logout ends the session in the store, not only in the browser.
	old := a.session()
	if r := a.post("/logout", "csrf", a.csrf()); r.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d", r.StatusCode)
	}
	if _, found, _ := h.db.FindSession(context.Background(), old); found {
		t.Error("the session is still in the store after logout")
	}
	b := h.agent()
	b.jar.SetCookies(u, []*http.Cookie{{Name: SessionCookiePlain, Value: old, Path: "/"}})
	if r := b.get("/settings"); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/login?next=%2Fsettings") {
		t.Errorf("the old cookie after logout: %d %s", r.StatusCode, r.Header.Get("Location"))
	}

	// Over TLS the cookie is __Host- and Secure.
	ht := newHarness(t, harnessOptions{accounts: true, tls: true})
	ht.signUp("bob@example.test")
	r = ht.agent().post("/login", "email", "bob@example.test", "password", testPassword)
	c = r.Cookies()
	if len(c) != 1 || c[0].Name != SessionCookieTLS || !c[0].Secure || !c[0].HttpOnly || c[0].Path != "/" || c[0].Domain != "" {
		t.Errorf("TLS session cookie %+v", c)
	}
}

// No page tells whether an address has an account: sign-up, reset and a
// failed login answer byte for byte the same for a known and an unknown
// address (OWASP Authentication Cheat Sheet).
func TestAccountEnumeration(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	h.signUp("known@example.test")
	type answer struct {
		status int
		body   string
	}
	// The form shows the address typed back; it is the only difference
	// allowed.
	ask := func(path string, kv ...string) answer {
		r := h.agent().post(path, kv...)
		return answer{r.StatusCode, strings.ReplaceAll(string(r.body), kv[1], "ADDRESS")}
	}
	for _, c := range []struct {
		path      string
		known     []string
		unknown   []string
		wantState int
	}{
		{"/signup", []string{"email", "known@example.test", "password", testPassword}, []string{"email", "new@example.test", "password", testPassword}, 200},
		{"/reset", []string{"email", "known@example.test"}, []string{"email", "nobody@example.test"}, 200},
		{"/login", []string{"email", "known@example.test", "password", "wrong password!"}, []string{"email", "nobody@example.test", "password", "wrong password!"}, 401},
	} {
		k, u := ask(c.path, c.known...), ask(c.path, c.unknown...)
		if k != u || k.status != c.wantState {
			t.Errorf("%s: known %d, unknown %d; bodies equal: %v", c.path, k.status, u.status, k.body == u.body)
		}
	}
}

// Every form that changes a logged-in account needs the session's CSRF
// token, and a cross-site post is refused even with it.
func TestAccountCSRF(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	h.signUp("ann@example.test")
	a := h.logIn("ann@example.test", testPassword)
	tok := a.csrf()
	forms := [][]string{
		{"/settings/tokens", "name", "x", "scope", "read"},
		{"/settings/password", "current", testPassword, "password", "another long password"},
		{"/settings/logout-everywhere"},
		{"/settings/delete", "password", testPassword, "confirm", "delete"},
		{"/domains", "domain", "example.test"},
		{"/logout"},
	}
	for _, f := range forms {
		for _, bad := range []string{"", "wrong", tok + "x"} {
			kv := append([]string{}, f[1:]...)
			if bad != "" {
				kv = append(kv, "csrf", bad)
			}
			if r := a.post(f[0], kv...); r.StatusCode != http.StatusForbidden {
				t.Errorf("%s with CSRF token %q: %d, want 403", f[0], bad, r.StatusCode)
			}
		}
		// The right token from another site (Sec-Fetch-Site: cross-site).
		v := url.Values{"csrf": {tok}}
		for i := 1; i+1 < len(f); i += 2 {
			v.Add(f[i], f[i+1])
		}
		if r := a.do("POST", f[0], v, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"); r.StatusCode != http.StatusForbidden {
			t.Errorf("%s cross-site: %d, want 403", f[0], r.StatusCode)
		}
	}
	// Nothing of it happened: the account, its password and its session
	// are as they were.
	if r := a.get("/settings"); r.StatusCode != 200 || strings.Contains(string(r.body), "<table class=\"tokens\"") {
		t.Errorf("settings after refused posts: %d", r.StatusCode)
	}
	// Login and sign-up forms from another site are refused too (login CSRF).
	b := h.agent()
	v := url.Values{"email": {"ann@example.test"}, "password": {testPassword}}
	if r := b.do("POST", "/login", v, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"); r.StatusCode != http.StatusForbidden || b.session() != "" {
		t.Errorf("cross-site login: %d", r.StatusCode)
	}
}

// API tokens: created on the settings page and shown once, accepted as
// Authorization: Bearer, never as the session cookie; revoked, they stop
// working; scopes are checked.
func TestAccountTokens(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	h.signUp("ann@example.test")
	a := h.logIn("ann@example.test", testPassword)
	r := a.post("/settings/tokens", "csrf", a.csrf(), "name", "deploy <script>", "scope", "read", "scope", "scan")
	m := regexp.MustCompile(`value="(mtls_[A-Za-z0-9_-]{43})"`).FindSubmatch(r.body)
	if r.StatusCode != 200 || m == nil || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create token: %d\n%s", r.StatusCode, truncate(r.body))
	}
	tok := string(m[1])
	if strings.Contains(string(r.body), "<script>") {
		t.Error("the token name is not escaped")
	}
	if again := a.get("/settings"); strings.Contains(string(again.body), tok) || !strings.Contains(string(again.body), tok[:11]) {
		t.Error("the settings page shows the whole token again, or not its prefix")
	}
	// Stored as a hash: the token is nowhere in the database files.
	for _, f := range []string{h.dbPath, h.dbPath + "-wal"} {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), tok) || strings.Contains(string(b), tok[11:]) {
			t.Errorf("%s holds the token", f)
		}
	}
	me := h.do("GET", "/api/v1/me", "", "", "Authorization", "Bearer "+tok)
	if me.StatusCode != 200 || me.json(t)["email"] != "ann@example.test" {
		t.Fatalf("GET /api/v1/me: %d %s", me.StatusCode, me.body)
	}
	// The session cookie is no API credential.
	if r := a.get("/api/v1/me"); r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("API with the session cookie: %d", r.StatusCode)
	}
	for _, bad := range []string{"", "Bearer", "Bearer " + tok[:len(tok)-1] + "x", "Basic " + tok, "Bearer " + strings.Repeat("a", 300)} {
		if r := h.do("GET", "/api/v1/me", "", "", "Authorization", bad); r.StatusCode != 401 {
			t.Errorf("Authorization %q: %d", bad, r.StatusCode)
		}
	}
	// Scopes.
	req := httptest.NewRequest("GET", "/api/v1/domains", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if id, err := h.web.APIUser(req, store.ScopeScan); err != nil || id == 0 {
		t.Errorf("scan scope: %v", err)
	}
	if _, err := h.web.APIUser(req, store.ScopeManage); !errors.Is(err, ErrScope) {
		t.Errorf("manage scope: %v, want ErrScope", err)
	}
	// Revoked on the settings page: refused.
	list, _ := h.accounts.ListTokens(context.Background(), 1)
	if len(list) != 1 {
		t.Fatalf("%d tokens", len(list))
	}
	if r := a.post("/settings/tokens/"+itoa(int64(list[0].ID))+"/revoke", "csrf", a.csrf()); r.StatusCode != http.StatusSeeOther {
		t.Errorf("revoke: %d", r.StatusCode)
	}
	if r := h.do("GET", "/api/v1/me", "", "", "Authorization", "Bearer "+tok); r.StatusCode != 401 {
		t.Errorf("revoked token: %d", r.StatusCode)
	}
	// Another account cannot revoke it (its id is not theirs).
	h.signUp("bob@example.test")
	b := h.logIn("bob@example.test", testPassword)
	if r := b.post("/settings/tokens/"+itoa(int64(list[0].ID))+"/revoke", "csrf", b.csrf()); r.StatusCode != 404 {
		t.Errorf("revoking another account's token: %d", r.StatusCode)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A password change and "log out everywhere" renew this browser's session
// and end every other one; a reset ends them all.
func TestAccountSessions(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	h.signUp("ann@example.test")
	a := h.logIn("ann@example.test", testPassword)
	b := h.logIn("ann@example.test", testPassword)
	before := a.session()
	r := a.post("/settings/password", "csrf", a.csrf(), "current", testPassword, "password", "a brand new password")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password change: %d\n%s", r.StatusCode, truncate(r.body))
	}
	if a.session() == before {
		t.Error("the session token was not renewed by the password change")
	}
	if r := a.get("/settings"); r.StatusCode != 200 || !strings.Contains(string(r.body), "One other session was logged out") {
		t.Errorf("this browser after the change: %d", r.StatusCode)
	}
	if r := b.get("/settings"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("the other browser after the change: %d, want a redirect to the login", r.StatusCode)
	}
	if r := a.post("/settings/password", "csrf", a.csrf(), "current", "wrong password!", "password", "yet another password"); r.StatusCode != 400 {
		t.Errorf("wrong current password: %d", r.StatusCode)
	}

	c := h.logIn("ann@example.test", "a brand new password")
	before = a.session()
	if r := a.post("/settings/logout-everywhere", "csrf", a.csrf()); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout everywhere: %d", r.StatusCode)
	}
	if a.session() == before || a.get("/settings").StatusCode != 200 {
		t.Error("this browser was not kept with a new token")
	}
	if c.get("/settings").StatusCode != http.StatusSeeOther {
		t.Error("another browser survived 'log out everywhere'")
	}

	// Reset: the link's GET spends nothing; the POST sets the password and
	// ends every session, this browser's too.
	d := h.agent()
	if r := d.post("/reset", "email", "ann@example.test"); r.StatusCode != 200 {
		t.Fatalf("reset request: %d", r.StatusCode)
	}
	path := h.link("ann@example.test")
	if !strings.HasPrefix(path, "/reset/confirm?token=") || d.get(path).StatusCode != 200 {
		t.Fatalf("reset link %s", path)
	}
	tok := mustUnescape(t, strings.TrimPrefix(path, "/reset/confirm?token="))
	if r := d.post("/reset/confirm", "token", tok, "password", "short"); r.StatusCode != 400 {
		t.Errorf("short password: %d", r.StatusCode)
	}
	if r := d.post("/reset/confirm", "token", tok, "password", "the reset password"); r.StatusCode != 200 {
		t.Fatalf("reset: %d\n%s", r.StatusCode, truncate(r.body))
	}
	if a.get("/settings").StatusCode != http.StatusSeeOther {
		t.Error("a session survived the reset")
	}
	if r := d.post("/reset/confirm", "token", tok, "password", "the reset password 2"); r.StatusCode != 400 {
		t.Errorf("the reset link twice: %d", r.StatusCode)
	}
	h.logIn("ann@example.test", "the reset password")

	// A session of an account disabled behind its back (the store alone;
	// mailtls user disable also deletes the sessions) is refused.
	f := h.logIn("ann@example.test", "the reset password")
	if err := h.db.SetDisabled(context.Background(), 1, true); err != nil {
		t.Fatal(err)
	}
	if r := f.get("/settings"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("a disabled account's session: %d", r.StatusCode)
	}
	h.db.SetDisabled(context.Background(), 1, false)

	// Idle timeout: the store's clock moves past it and the session is gone.
	e := h.logIn("ann@example.test", "the reset password")
	h.clock.Add(DefaultSessionIdleTimeout + time.Minute)
	if r := e.get("/settings"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("after the idle timeout: %d", r.StatusCode)
	}
}

// Login throttling shows on the page as 429 with Retry-After.
func TestAccountThrottle(t *testing.T) {
	lim := account.DefaultLimits
	lim.LoginFailuresPerAccount = account.Limit{Every: time.Hour, Burst: 3}
	h := newHarness(t, harnessOptions{accounts: true, limits: &lim})
	h.signUp("ann@example.test")
	a := h.agent()
	for range 3 {
		a.post("/login", "email", "ann@example.test", "password", "wrong password!")
	}
	r := a.post("/login", "email", "ann@example.test", "password", testPassword)
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" || a.session() != "" {
		t.Errorf("after 3 failures: %d Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
}

// Inputs are capped: an oversized form is refused, and the login's next
// never leads to another site.
func TestAccountInputs(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	a := h.agent()
	if r := a.post("/login", "email", "a@example.test", "password", strings.Repeat("x", 8<<10)); r.StatusCode != 400 {
		t.Errorf("8 KiB form: %d", r.StatusCode)
	}
	h.signUp("ann@example.test")
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "/%0d%0aSet-Cookie:x", ""} {
		b := h.agent()
		r := b.post("/login", "email", "ann@example.test", "password", testPassword, "next", next)
		loc := r.Header.Get("Location")
		if r.StatusCode != http.StatusSeeOther || (loc != "/settings" && loc != next) || strings.HasPrefix(loc, "//") || strings.Contains(loc, "://") {
			t.Errorf("next %q: redirect to %q", next, loc)
		}
	}
}

// Deleting the account deletes every row it owns; the browser is logged out.
func TestAccountDelete(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	h.signUp("ann@example.test")
	a := h.logIn("ann@example.test", testPassword)
	a.post("/domains", "csrf", a.csrf(), "domain", "example.test")
	tokPage := a.post("/settings/tokens", "csrf", a.csrf(), "name", "x", "scope", "read")
	tok := string(regexp.MustCompile(`value="(mtls_[^"]+)"`).FindSubmatch(tokPage.body)[1])
	other := h.logIn("ann@example.test", testPassword)
	if r := a.post("/settings/delete", "csrf", a.csrf(), "password", testPassword, "confirm", "nope"); r.StatusCode != 400 {
		t.Errorf("without the confirmation: %d", r.StatusCode)
	}
	if r := a.post("/settings/delete", "csrf", a.csrf(), "password", "wrong password!", "confirm", "delete"); r.StatusCode != 400 {
		t.Errorf("wrong password: %d", r.StatusCode)
	}
	if r := a.post("/settings/delete", "csrf", a.csrf(), "password", testPassword, "confirm", "delete"); r.StatusCode != 200 || !strings.Contains(string(r.body), "Account deleted") {
		t.Fatalf("delete: %d", r.StatusCode)
	}
	ctx := context.Background()
	if _, err := h.db.GetUserByEmail(ctx, "ann@example.test"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user after deletion: %v", err)
	}
	if d, _ := h.db.ListDomains(ctx, 1, "", 10); len(d) != 0 {
		t.Errorf("domains after deletion: %v", d)
	}
	if a.session() != "" || other.get("/settings").StatusCode != http.StatusSeeOther {
		t.Error("a session survived the deletion")
	}
	if r := h.do("GET", "/api/v1/me", "", "", "Authorization", "Bearer "+tok); r.StatusCode != 401 {
		t.Errorf("token after deletion: %d", r.StatusCode)
	}
}

// "Save and monitor" on a result page: a login link for a visitor, a form
// for a logged-in user; the domain appears on the domains page with its
// first scan due, and can be removed.
func TestSaveDomain(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	world{t, h.lab}.grade("saved.test", "A")
	id := h.submit("saved.test", false)
	anon := h.page(id)
	if !strings.Contains(anon, `href="/login?next=/scan/`+id+`"`) {
		t.Error("the result page has no login link to save the domain")
	}
	h.signUp("ann@example.test")
	a := h.logIn("ann@example.test", testPassword)
	page := string(a.get("/scan/" + id).body)
	if !strings.Contains(page, `action="/domains"`) || !strings.Contains(page, `name="domain" value="saved.test"`) {
		t.Fatal("the result page has no save form for a logged-in user")
	}
	r := a.post("/domains", "csrf", a.csrf(), "domain", "saved.test")
	ds, _ := h.db.ListDomains(context.Background(), 1, "", 10)
	if len(ds) != 1 || ds[0].NextScanAt.After(h.clock.Now()) {
		t.Fatalf("stored domains %+v: want one, due now", ds)
	}
	domainPage := "/domains/" + itoa(int64(ds[0].ID))
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != domainPage+"?done=saved" {
		t.Fatalf("save: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if p := string(a.get(domainPage + "?done=saved").body); !strings.Contains(p, "The domain is saved") || !strings.Contains(p, `action="`+domainPage+`/delete"`) {
		t.Errorf("domain page after saving:\n%s", truncate([]byte(p)))
	}
	if list := string(a.get("/domains").body); !strings.Contains(list, "saved.test") {
		t.Errorf("dashboard:\n%s", truncate([]byte(list)))
	}
	if r := a.post("/domains", "csrf", a.csrf(), "domain", "SAVED.test."); r.Header.Get("Location") != domainPage+"?done=exists" {
		t.Errorf("saving twice: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if r := a.post("/domains", "csrf", a.csrf(), "domain", "not a domain!"); r.StatusCode != 400 {
		t.Errorf("invalid domain: %d", r.StatusCode)
	}
	// Another account cannot remove it.
	h.signUp("bob@example.test")
	b := h.logIn("bob@example.test", testPassword)
	if r := b.post("/domains/"+itoa(int64(ds[0].ID))+"/delete", "csrf", b.csrf()); r.StatusCode != 404 {
		t.Errorf("removing another account's domain: %d", r.StatusCode)
	}
	// The monitoring pages' forms need the CSRF token too.
	if r := a.post(domainPage+"/rescan", "csrf", "wrong"); r.StatusCode != http.StatusForbidden {
		t.Errorf("rescan with a wrong CSRF token: %d", r.StatusCode)
	}
	if r := a.post(domainPage+"/delete", "csrf", a.csrf()); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/domains?done=removed" {
		t.Errorf("remove: %d", r.StatusCode)
	}
	if !strings.Contains(string(a.get("/domains?done=removed").body), "were removed") {
		t.Error("no notice after the removal")
	}
	if ds, _ := h.db.ListDomains(context.Background(), 1, "", 10); len(ds) != 0 {
		t.Errorf("after removal: %+v", ds)
	}
}

// Registration modes on the sign-up page.
func TestAccountRegistrationModes(t *testing.T) {
	closed := newHarness(t, harnessOptions{accounts: true, registration: account.Closed})
	if r := closed.agent().post("/signup", "email", "a@example.test", "password", testPassword); r.StatusCode != 403 {
		t.Errorf("closed: %d", r.StatusCode)
	}
	inv := newHarness(t, harnessOptions{accounts: true, registration: account.Invite})
	if r := inv.agent().post("/signup", "email", "a@example.test", "password", testPassword); r.StatusCode != 403 {
		t.Errorf("invite without an invitation: %d", r.StatusCode)
	}
	link, err := inv.accounts.InviteLink(context.Background(), "guest@example.test")
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimPrefix(link, inv.srv.URL)
	a := inv.agent()
	if r := a.get(path); r.StatusCode != 200 || !strings.Contains(string(r.body), `name="invite"`) {
		t.Fatalf("invitation page: %d", r.StatusCode)
	}
	tok := mustUnescape(t, strings.TrimPrefix(path, "/signup?invite="))
	if r := a.post("/signup", "invite", tok, "password", testPassword); r.StatusCode != 200 {
		t.Fatalf("sign-up with the invitation: %d\n%s", r.StatusCode, truncate(r.body))
	}
	if !strings.HasPrefix(inv.link("guest@example.test"), "/verify?token=") {
		t.Error("no verification mail to the invited address")
	}
}

// A session ends at its absolute lifetime even while it is used (scs
// counts it on the real clock from the login).
func TestAccountSessionLifetime(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true, lifetime: 1500 * time.Millisecond})
	h.signUp("ann@example.test")
	a := h.logIn("ann@example.test", testPassword)
	if r := a.get("/settings"); r.StatusCode != 200 {
		t.Fatalf("right after the login: %d", r.StatusCode)
	}
	time.Sleep(2 * time.Second)
	if r := a.get("/settings"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("after the lifetime: %d, want a redirect to the login", r.StatusCode)
	}
}

// FuzzLocalPath: the login's redirect target is always a path on this
// site, whatever next says.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/settings", "//evil.example", "/\\evil.example", "https://evil.example/", "/%2F%2Fevil", "/a?b=c", "\t/x", "/x\r\nLocation: //evil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		p := localPath(next)
		u, err := url.Parse(p)
		if err != nil || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") ||
			u.Scheme != "" || u.Host != "" || strings.ContainsAny(p, "\r\n\t\\") {
			t.Fatalf("localPath(%q) = %q", next, p)
		}
	})
}
