package account

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mailer "github.com/mailtls/mailtls/internal/mail"
	"github.com/mailtls/mailtls/internal/password"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// outbox records the mails the service sends.
type outbox struct {
	mu   sync.Mutex
	msgs []*mailer.Message
}

func (o *outbox) Send(_ context.Context, m *mailer.Message) error {
	if err := m.Check(); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs = append(o.msgs, m)
	return nil
}

func (o *outbox) to(addr string) []*mailer.Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*mailer.Message
	for _, m := range o.msgs {
		if m.To == addr {
			out = append(out, m)
		}
	}
	return out
}

type env struct {
	t     *testing.T
	svc   *Service
	db    *sqlstore.DB
	clock *clock
	mail  *outbox
}

// fast are cheap Argon2id parameters for tests that do not test hashing.
var fast = password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func newEnv(t *testing.T, reg string, limits *Limits) *env {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"), sqlstore.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	o := &outbox{}
	svc := New(Config{Store: db, Mail: o, Hasher: &password.Hasher{Params: fast}, BaseURL: "https://check.example.test/",
		Registration: reg, Now: c.Now, Limits: limits})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Error(err)
		}
		db.Close()
	})
	return &env{t: t, svc: svc, db: db, clock: c, mail: o}
}

func (e *env) drain() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.svc.Drain(ctx); err != nil {
		e.t.Fatal(err)
	}
}

var linkRE = regexp.MustCompile(`https://check\.example\.test(/[a-z/]+)\?(?:token|invite)=([A-Za-z0-9_-]+)`)

// lastLink returns the path and token of the link in the last mail to addr.
func (e *env) lastLink(addr string) (string, string) {
	e.t.Helper()
	e.drain()
	msgs := e.mail.to(addr)
	if len(msgs) == 0 {
		e.t.Fatalf("no mail to %s", addr)
	}
	m := linkRE.FindStringSubmatch(msgs[len(msgs)-1].Text)
	if m == nil {
		e.t.Fatalf("no link in the mail to %s:\n%s", addr, msgs[len(msgs)-1].Text)
	}
	return m[1], m[2]
}

const pw = "correct horse battery"

// signUp signs an address up and verifies it.
func (e *env) signUp(addr string) store.User {
	e.t.Helper()
	ctx := context.Background()
	if err := e.svc.SignUp(ctx, "192.0.2.1", addr, pw, ""); err != nil {
		e.t.Fatal(err)
	}
	path, tok := e.lastLink(addr)
	if path != "/verify" {
		e.t.Fatalf("link to %s", path)
	}
	u, err := e.svc.Verify(ctx, tok)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func TestSignUpVerifyLogin(t *testing.T) {
	e := newEnv(t, Open, nil)
	ctx := context.Background()
	if err := e.svc.SignUp(ctx, "192.0.2.1", " Ann@Example.TEST ", pw, ""); err != nil {
		t.Fatal(err)
	}
	path, tok := e.lastLink("ann@example.test")
	if path != "/verify" {
		t.Fatalf("link to %s", path)
	}
	// Before verification the password is right but the login refused,
	// and a new link is sent.
	if _, err := e.svc.Login(ctx, "192.0.2.1", "ann@example.test", pw); !errors.Is(err, ErrNotVerified) {
		t.Fatalf("login before verification: %v", err)
	}
	e.drain()
	if n := len(e.mail.to("ann@example.test")); n != 2 {
		t.Errorf("%d mails, want the first link and a new one", n)
	}
	u, err := e.svc.Verify(ctx, tok)
	if err != nil || u.EmailVerifiedAt.IsZero() || u.Email != "ann@example.test" {
		t.Fatalf("verify: %+v %v", u, err)
	}
	if _, err := e.svc.Verify(ctx, tok); !errors.Is(err, ErrLinkUsed) {
		t.Errorf("second use of the link: %v", err)
	}
	if _, err := e.svc.Verify(ctx, "nonsense"); !errors.Is(err, ErrLinkUnknown) {
		t.Errorf("unknown link: %v", err)
	}
	got, err := e.svc.Login(ctx, "192.0.2.1", "ANN@example.test", pw)
	if err != nil || got.ID != u.ID || got.LastLoginAt.IsZero() && false {
		t.Fatalf("login: %+v %v", got, err)
	}
	if u2, _ := e.db.GetUser(ctx, u.ID); u2.LastLoginAt.IsZero() {
		t.Error("the login time was not recorded")
	}
	if _, err := e.svc.Login(ctx, "192.0.2.1", "ann@example.test", pw+"x"); !errors.Is(err, ErrBadLogin) {
		t.Errorf("wrong password: %v", err)
	}
	// A verification link expires (24 h).
	e.svc.SignUp(ctx, "192.0.2.1", "bob@example.test", pw, "")
	_, tok = e.lastLink("bob@example.test")
	e.clock.Add(VerifyTTL + time.Second)
	if _, err := e.svc.Verify(ctx, tok); !errors.Is(err, ErrLinkExpired) {
		t.Errorf("expired link: %v", err)
	}
}

// No answer tells whether an address has an account, and the work done
// before answering is the same (OWASP Authentication Cheat Sheet): sign-up
// and reset requests answer alike and do the rest in the background; a
// login for an unknown address costs one Argon2id computation, as a wrong
// password does.
func TestEnumerationSafe(t *testing.T) {
	e := newEnv(t, Open, nil)
	ctx := context.Background()
	e.signUp("known@example.test")
	h := e.svc.Hasher()

	// Login: the same error and the same number of hashes.
	cost := func(email, password string) (error, int64) {
		before := h.Count()
		_, err := e.svc.Login(ctx, "192.0.2.7", email, password)
		return err, h.Count() - before
	}
	errKnown, nKnown := cost("known@example.test", "wrong password!")
	errUnknown, nUnknown := cost("unknown@example.test", "wrong password!")
	if !errors.Is(errKnown, ErrBadLogin) || errKnown != errUnknown {
		t.Errorf("known %v, unknown %v: want the same ErrBadLogin", errKnown, errUnknown)
	}
	if nKnown != 1 || nUnknown != 1 {
		t.Errorf("hashes: known %d, unknown %d; want 1 each", nKnown, nUnknown)
	}

	// Sign-up: the same answer and one hash either way; the existing
	// account's owner gets a notice, the new address a link.
	before := h.Count()
	errA := e.svc.SignUp(ctx, "192.0.2.8", "known@example.test", pw, "")
	nA := h.Count() - before
	before = h.Count()
	errB := e.svc.SignUp(ctx, "192.0.2.9", "fresh@example.test", pw, "")
	nB := h.Count() - before
	if errA != nil || errB != nil || nA != 1 || nB != 1 {
		t.Errorf("sign-up: %v/%d hashes and %v/%d hashes", errA, nA, errB, nB)
	}
	e.drain()
	known := e.mail.to("known@example.test")
	if last := known[len(known)-1]; !strings.Contains(last.Subject, "already have") || strings.Contains(last.Text, "token=") {
		t.Errorf("the owner's notice: %s\n%s", last.Subject, last.Text)
	}
	if _, tok := e.lastLink("fresh@example.test"); tok == "" {
		t.Error("no link for the new address")
	}
	// The existing account is unchanged: the old password still works.
	if _, err := e.svc.Login(ctx, "192.0.2.8", "known@example.test", pw); err != nil {
		t.Errorf("existing account after a second sign-up: %v", err)
	}

	// Reset request: the same answer; only a known address gets a mail.
	n := len(e.mail.msgs)
	if err := e.svc.RequestReset(ctx, "192.0.2.10", "nobody@example.test"); err != nil {
		t.Errorf("unknown address: %v", err)
	}
	if err := e.svc.RequestReset(ctx, "192.0.2.10", "known@example.test"); err != nil {
		t.Errorf("known address: %v", err)
	}
	e.drain()
	if len(e.mail.to("nobody@example.test")) != 0 || len(e.mail.msgs) != n+1 {
		t.Errorf("mails: %d new, to nobody: %d", len(e.mail.msgs)-n, len(e.mail.to("nobody@example.test")))
	}
}

// A reset link works once, for one hour (issue 11); using it sets the
// password, voids other reset links and verifies the address.
func TestResetSingleUseAndExpiry(t *testing.T) {
	e := newEnv(t, Open, nil)
	ctx := context.Background()
	// An unverified account can reset: the link proves the mailbox.
	e.svc.SignUp(ctx, "192.0.2.1", "ann@example.test", pw, "")
	e.drain()
	e.svc.RequestReset(ctx, "192.0.2.1", "ann@example.test")
	_, first := e.lastLink("ann@example.test")
	e.svc.RequestReset(ctx, "192.0.2.1", "ann@example.test")
	path, second := e.lastLink("ann@example.test")
	if path != "/reset/confirm" || first == second {
		t.Fatalf("links %s %s %s", path, first, second)
	}
	if _, err := e.svc.Reset(ctx, second, "short"); err == nil {
		t.Fatal("a short password was accepted")
	}
	// The weak password did not use the link up.
	u, err := e.svc.Reset(ctx, second, "a brand new password")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Reset(ctx, second, "yet another password"); !errors.Is(err, ErrLinkUsed) {
		t.Errorf("second use: %v", err)
	}
	if _, err := e.svc.Reset(ctx, first, "yet another password"); !errors.Is(err, ErrLinkUnknown) {
		t.Errorf("the older link after the reset: %v (want it voided)", err)
	}
	if _, err := e.svc.Login(ctx, "192.0.2.1", "ann@example.test", pw); !errors.Is(err, ErrBadLogin) {
		t.Errorf("old password: %v", err)
	}
	if got, err := e.svc.Login(ctx, "192.0.2.1", "ann@example.test", "a brand new password"); err != nil || got.ID != u.ID {
		t.Errorf("new password: %v (the reset should also verify the address)", err)
	}
	e.drain()
	msgs := e.mail.to("ann@example.test")
	if last := msgs[len(msgs)-1]; !strings.Contains(last.Subject, "was changed") {
		t.Errorf("no notice of the change: %q", last.Subject)
	}
	// Expiry: 59 minutes is fine, 61 is not. (An hour first, so that the
	// address may get mail again.)
	e.clock.Add(time.Hour)
	e.svc.RequestReset(ctx, "192.0.2.1", "ann@example.test")
	_, tok := e.lastLink("ann@example.test")
	e.clock.Add(61 * time.Minute)
	if _, err := e.svc.Reset(ctx, tok, "another new password"); !errors.Is(err, ErrLinkExpired) {
		t.Errorf("after 61 minutes: %v", err)
	}
	e.clock.Add(time.Hour)
	e.svc.RequestReset(ctx, "192.0.2.1", "ann@example.test")
	_, tok = e.lastLink("ann@example.test")
	e.clock.Add(59 * time.Minute)
	if _, err := e.svc.Reset(ctx, tok, "another new password"); err != nil {
		t.Errorf("after 59 minutes: %v", err)
	}
	// A verification link cannot be used as a reset link.
	e.svc.SignUp(ctx, "192.0.2.1", "bob@example.test", pw, "")
	_, vtok := e.lastLink("bob@example.test")
	if _, err := e.svc.Reset(ctx, vtok, "another new password"); !errors.Is(err, ErrLinkUnknown) {
		t.Errorf("verification link used for a reset: %v", err)
	}
}

// A hash made with older parameters is replaced at the next login with one
// of the current parameters (RFC 9106 §4).
func TestRehashOnLogin(t *testing.T) {
	e := newEnv(t, Open, nil)
	ctx := context.Background()
	old := &password.Hasher{Params: password.Params{Memory: 32, Time: 3, Threads: 1, SaltLen: 16, KeyLen: 32}}
	phc, _ := old.Hash(ctx, pw)
	u, _ := e.db.CreateUser(ctx, "old@example.test", phc)
	e.db.MarkEmailVerified(ctx, u.ID)
	if _, err := e.svc.Login(ctx, "192.0.2.1", "old@example.test", "wrong password x"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if u2, _ := e.db.GetUser(ctx, u.ID); u2.PasswordPHC != phc {
		t.Error("a failed login rehashed")
	}
	if _, err := e.svc.Login(ctx, "192.0.2.1", "old@example.test", pw); err != nil {
		t.Fatal(err)
	}
	u2, _ := e.db.GetUser(ctx, u.ID)
	got, err := password.Parse(u2.PasswordPHC)
	if err != nil || got.Params != fast {
		t.Fatalf("after login the hash has %+v (%v), want %+v", got.Params, err, fast)
	}
	if _, err := e.svc.Login(ctx, "192.0.2.1", "old@example.test", pw); err != nil {
		t.Errorf("login with the new hash: %v", err)
	}
}

// Rate limits: per account (failed logins, counted for any submitted
// address), per client, and per address for mails.
func TestRateLimits(t *testing.T) {
	e := newEnv(t, Open, nil)
	ctx := context.Background()
	e.signUp("ann@example.test")
	e.signUp("bob@example.test")
	l := DefaultLimits
	// Failed logins from many clients against one account.
	for i := range l.LoginFailuresPerAccount.Burst {
		client := "198.51.100." + string(rune('a'+i))
		if _, err := e.svc.Login(ctx, client, "ann@example.test", "wrong password!"); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	var le *LimitError
	if _, err := e.svc.Login(ctx, "203.0.113.1", "ann@example.test", pw); !errors.As(err, &le) || le.RetryAfter <= 0 {
		t.Fatalf("after %d failures even the right password: %v, want a limit", l.LoginFailuresPerAccount.Burst, err)
	}
	// Another account is not affected; an unknown address is limited the
	// same way (the limit tells nothing about existence).
	if _, err := e.svc.Login(ctx, "203.0.113.1", "bob@example.test", pw); err != nil {
		t.Errorf("another account: %v", err)
	}
	for range l.LoginFailuresPerAccount.Burst {
		e.svc.Login(ctx, "203.0.113.2", "ghost@example.test", "wrong password!")
	}
	if _, err := e.svc.Login(ctx, "203.0.113.2", "ghost@example.test", "wrong password!"); !errors.As(err, &le) {
		t.Errorf("unknown address after the burst: %v", err)
	}
	// The bucket refills: one more try a minute later.
	e.clock.Add(l.LoginFailuresPerAccount.Every)
	if _, err := e.svc.Login(ctx, "203.0.113.3", "ann@example.test", pw); err != nil {
		t.Errorf("after the wait: %v", err)
	}

	// Per client: every attempt counts.
	e.clock.Add(time.Hour)
	for i := range l.LoginPerClient.Burst {
		if _, err := e.svc.Login(ctx, "192.0.2.99", "bob@example.test", pw); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if _, err := e.svc.Login(ctx, "192.0.2.99", "bob@example.test", pw); !errors.As(err, &le) {
		t.Errorf("client over its burst: %v", err)
	}
	if _, err := e.svc.Login(ctx, "192.0.2.100", "bob@example.test", pw); err != nil {
		t.Errorf("another client: %v", err)
	}

	// Reset requests per client.
	for range l.ResetPerClient.Burst {
		if err := e.svc.RequestReset(ctx, "192.0.2.50", "nobody@example.test"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.RequestReset(ctx, "192.0.2.50", "nobody@example.test"); !errors.As(err, &le) {
		t.Errorf("reset over the burst: %v", err)
	}

	// Mails per address: reset requests from many clients send at most
	// the burst, then none until the bucket refills.
	e.clock.Add(24 * time.Hour)
	before := len(e.mail.to("bob@example.test"))
	for i := range 10 {
		e.svc.RequestReset(ctx, "192.0.2."+string(rune('A'+i)), "bob@example.test")
	}
	e.drain()
	if n := len(e.mail.to("bob@example.test")) - before; n != l.MailPerAddress.Burst {
		t.Errorf("%d reset mails to one address, want %d", n, l.MailPerAddress.Burst)
	}

	// Sign-ups per client.
	for i := range l.SignupPerClient.Burst {
		if err := e.svc.SignUp(ctx, "192.0.2.77", "new"+string(rune('a'+i))+"@example.test", pw, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.SignUp(ctx, "192.0.2.77", "newz@example.test", pw, ""); !errors.As(err, &le) {
		t.Errorf("sign-up over the burst: %v", err)
	}
}

func TestRegistrationModes(t *testing.T) {
	ctx := context.Background()
	closed := newEnv(t, Closed, nil)
	if err := closed.svc.SignUp(ctx, "192.0.2.1", "ann@example.test", pw, ""); !errors.Is(err, ErrRegistrationClosed) {
		t.Errorf("closed: %v", err)
	}
	// mailtls user add still works, and the account is verified.
	u, err := closed.svc.AddUser(ctx, "Admin@Example.test", pw)
	if err != nil || u.EmailVerifiedAt.IsZero() || u.Email != "admin@example.test" {
		t.Fatalf("add user: %+v %v", u, err)
	}
	if _, err := closed.svc.Login(ctx, "192.0.2.1", "admin@example.test", pw); err != nil {
		t.Errorf("login of an added user: %v", err)
	}
	if _, err := closed.svc.AddUser(ctx, "admin@example.test", pw); !errors.Is(err, store.ErrConflict) {
		t.Errorf("adding twice: %v", err)
	}

	inv := newEnv(t, Invite, nil)
	if err := inv.svc.SignUp(ctx, "192.0.2.1", "ann@example.test", pw, ""); !errors.Is(err, ErrInviteRequired) {
		t.Errorf("invite mode without an invitation: %v", err)
	}
	link, err := inv.svc.InviteLink(ctx, "guest@example.test")
	if err != nil || !strings.HasPrefix(link, "https://check.example.test/signup?invite=") {
		t.Fatalf("invite link %q %v", link, err)
	}
	tok := strings.TrimPrefix(link, "https://check.example.test/signup?invite=")
	if err := inv.svc.SignUp(ctx, "192.0.2.1", "", "short", tok); err == nil {
		t.Fatal("weak password accepted")
	}
	// The form's address is ignored: the invitation's is used.
	if err := inv.svc.SignUp(ctx, "192.0.2.1", "other@example.test", pw, tok); err != nil {
		t.Fatalf("sign-up with the invitation (after a weak password): %v", err)
	}
	if _, vtok := inv.lastLink("guest@example.test"); vtok == "" {
		t.Fatal("no verification link for the invited address")
	}
	if len(inv.mail.to("other@example.test")) != 0 {
		t.Error("mail went to the address typed in the form")
	}
	if err := inv.svc.SignUp(ctx, "192.0.2.1", "", pw, tok); !errors.Is(err, ErrLinkUsed) {
		t.Errorf("the invitation twice: %v", err)
	}
	if err := inv.svc.SignUp(ctx, "192.0.2.1", "", pw, "forged"); !errors.Is(err, ErrLinkUnknown) {
		t.Errorf("a forged invitation: %v", err)
	}
}

func TestChangePasswordAndDelete(t *testing.T) {
	e := newEnv(t, Open, nil)
	ctx := context.Background()
	u := e.signUp("ann@example.test")
	if err := e.svc.ChangePassword(ctx, u.ID, "not my password", "a new long password"); !errors.Is(err, ErrBadLogin) {
		t.Errorf("wrong current password: %v", err)
	}
	var pe *PasswordError
	if err := e.svc.ChangePassword(ctx, u.ID, pw, "short"); !errors.As(err, &pe) {
		t.Errorf("short new password: %v", err)
	}
	if err := e.svc.ChangePassword(ctx, u.ID, pw, "ann@example.test"); !errors.As(err, &pe) {
		t.Errorf("the address as password: %v", err)
	}
	if err := e.svc.ChangePassword(ctx, u.ID, pw, "a new long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, "192.0.2.1", "ann@example.test", "a new long password"); err != nil {
		t.Errorf("new password: %v", err)
	}
	tok, _, err := e.svc.CreateToken(ctx, u.ID, "ci", []store.Scope{store.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	e.db.CommitSession(ctx, "session-token", u.ID, []byte("x"), e.clock.Now().Add(time.Hour))
	if err := e.svc.DeleteAccount(ctx, u.ID, "wrong password!"); !errors.Is(err, ErrBadLogin) {
		t.Errorf("delete with a wrong password: %v", err)
	}
	if err := e.svc.DeleteAccount(ctx, u.ID, "a new long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.GetUser(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user after deletion: %v", err)
	}
	if _, found, _ := e.db.FindSession(ctx, "session-token"); found {
		t.Error("a session survived the deletion")
	}
	if _, _, err := e.svc.Authenticate(ctx, "192.0.2.1", tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("a token survived the deletion: %v", err)
	}
	// The address can sign up again.
	e.clock.Add(time.Hour)
	e.signUp("ann@example.test")
}

func TestTokens(t *testing.T) {
	e := newEnv(t, Open, nil)
	ctx := context.Background()
	u := e.signUp("ann@example.test")
	tok, rec, err := e.svc.CreateToken(ctx, u.ID, "  deploy bot ", []store.Scope{store.ScopeScan, store.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^mtls_[A-Za-z0-9_-]{43}$`).MatchString(tok) || rec.Prefix != tok[:11] || rec.Name != "deploy bot" {
		t.Errorf("token %q, record %+v", tok, rec)
	}
	if len(rec.Scopes) != 2 || rec.Scopes[0] != store.ScopeRead || rec.Scopes[1] != store.ScopeScan {
		t.Errorf("scopes %v, want read scan in order", rec.Scopes)
	}
	got, user, err := e.svc.Authenticate(ctx, "192.0.2.1", tok)
	if err != nil || got.ID != rec.ID || user.ID != u.ID || got.LastUsedAt.IsZero() {
		t.Fatalf("authenticate: %+v %+v %v", got, user, err)
	}
	for name, scopes := range map[string][]store.Scope{"none": nil, "unknown": {"admin"}, "unknown and read": {"read", "admin"}} {
		var te *TokenError
		if _, _, err := e.svc.CreateToken(ctx, u.ID, "x", scopes); !errors.As(err, &te) {
			t.Errorf("scopes %s: %v", name, err)
		}
	}
	var te *TokenError
	if _, _, err := e.svc.CreateToken(ctx, u.ID, strings.Repeat("n", 65), []store.Scope{store.ScopeRead}); !errors.As(err, &te) {
		t.Errorf("long name: %v", err)
	}
	if _, _, err := e.svc.CreateToken(ctx, u.ID, "a\nb", []store.Scope{store.ScopeRead}); !errors.As(err, &te) {
		t.Errorf("name with a line break: %v", err)
	}
	// Wrong, malformed and revoked tokens are one error.
	for _, bad := range []string{"", "mtls_", tok[:len(tok)-1] + "A", strings.ToUpper(tok), tok + "x", "Bearer " + tok} {
		if bad == tok {
			continue
		}
		if _, _, err := e.svc.Authenticate(ctx, "192.0.2.2", bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if err := e.svc.RevokeToken(ctx, u.ID+1, rec.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoking another user's token: %v", err)
	}
	if err := e.svc.RevokeToken(ctx, u.ID, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Authenticate(ctx, "192.0.2.3", tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("revoked: %v", err)
	}
	// A disabled account's tokens stop working.
	tok2, _, _ := e.svc.CreateToken(ctx, u.ID, "", []store.Scope{store.ScopeManage})
	e.svc.SetDisabled(ctx, "ann@example.test", true)
	if _, _, err := e.svc.Authenticate(ctx, "192.0.2.3", tok2); !errors.Is(err, ErrBadToken) {
		t.Errorf("disabled account: %v", err)
	}
	e.svc.SetDisabled(ctx, "ann@example.test", false)
	if _, _, err := e.svc.Authenticate(ctx, "192.0.2.3", tok2); err != nil {
		t.Errorf("enabled again: %v", err)
	}
	// Guessing tokens is rate-limited per client.
	var le *LimitError
	for range DefaultLimits.TokenFailuresPerClient.Burst {
		e.svc.Authenticate(ctx, "192.0.2.66", "mtls_guess")
	}
	if _, _, err := e.svc.Authenticate(ctx, "192.0.2.66", tok2); !errors.As(err, &le) {
		t.Errorf("after many wrong tokens: %v", err)
	}
	// At most MaxTokens live tokens.
	for i := 0; ; i++ {
		_, _, err := e.svc.CreateToken(ctx, u.ID, "n", []store.Scope{store.ScopeRead})
		if err != nil {
			if !errors.As(err, &te) || i != MaxTokens-1 {
				t.Errorf("token %d: %v", i, err)
			}
			break
		}
	}
}

func TestCheckEmailAndPassword(t *testing.T) {
	for in, want := range map[string]string{
		"ann@example.com": "ann@example.com", " Ann@Example.COM ": "ann@example.com", "a.b+tag@sub.example.test": "a.b+tag@sub.example.test",
	} {
		if got, err := CheckEmail(in); err != nil || got != want {
			t.Errorf("CheckEmail(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "ann", "@example.com", "ann@", "Ann <ann@example.com>", "a@example.com, b@example.com",
		"ann@example.com\r\nBcc: x@example.com", "ann@[192.0.2.1]", strings.Repeat("a", 250) + "@example.com", "a@b@c"} {
		if got, err := CheckEmail(bad); !errors.Is(err, ErrInvalidEmail) {
			t.Errorf("CheckEmail(%q) = %q, %v", bad, got, err)
		}
	}
	var pe *PasswordError
	for _, bad := range []string{"", "eleven char", strings.Repeat("x", MaxPasswordLen+1), "ann@example.com", "\xff\xfe invalid utf-8"} {
		if err := CheckPassword(bad, "ann@example.com"); !errors.As(err, &pe) {
			t.Errorf("CheckPassword(%q): %v", bad, err)
		}
	}
	// Twelve characters, any characters: no composition rules (NIST SP
	// 800-63B §5.1.1.2).
	for _, ok := range []string{"twelve chars", "ääääääääääää", strings.Repeat("x", MaxPasswordLen)} {
		if err := CheckPassword(ok, "ann@example.com"); err != nil {
			t.Errorf("CheckPassword(%q): %v", ok, err)
		}
	}
}

// Close finishes queued mail; after it, requests are refused as busy.
func TestCloseDrains(t *testing.T) {
	e := newEnv(t, Open, nil)
	ctx := context.Background()
	for i := range 5 {
		e.svc.SignUp(ctx, "192.0.2."+string(rune('a'+i)), "u"+string(rune('a'+i))+"@example.test", pw, "")
	}
	if err := e.svc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.mail.msgs) != 5 {
		t.Errorf("%d mails sent before the close returned, want 5", len(e.mail.msgs))
	}
	if err := e.svc.SignUp(ctx, "192.0.2.200", "late@example.test", pw, ""); !errors.Is(err, ErrBusy) {
		t.Errorf("after close: %v", err)
	}
}

// FuzzCheckEmail: an accepted address is one plain address, normalised
// (a second check gives it back unchanged), with nothing that could end a
// header line or add a recipient.
func FuzzCheckEmail(f *testing.F) {
	for _, s := range []string{"ann@example.com", " Ann@Example.COM ", "a@b@c", "Ann <ann@example.com>", "a@example.com\r\nBcc: x@y", "\"a b\"@example.com", "a@[192.0.2.1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := CheckEmail(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if again, err := CheckEmail(e); err != nil || again != e {
			t.Fatalf("%q → %q → %q, %v", s, e, again, err)
		}
		if len(e) > MaxEmailLen || strings.ContainsAny(e, "\r\n,;<> \t") || strings.Count(e, "@") != 1 {
			t.Fatalf("accepted %q", e)
		}
	})
}
