// Package account is what accounts of the web role do, apart from HTTP:
// sign-up with e-mail verification, login, password change and reset,
// deletion, invitations, and API tokens. The web pages, the JSON API and
// `mailtls user` call it; it keeps everything in a store.Store and sends
// its mail through a mail.Sender.
//
// No answer tells whether an address has an account (OWASP Authentication
// Cheat Sheet, "Authentication and Error Messages"): sign-up and reset
// requests answer the same either way and do the address-dependent part —
// the lookup, the insert, the mail — in the background, after the answer;
// a login for an unknown address costs one Argon2id computation, as a
// wrong password does (password.Hasher.Dummy). Logins, reset requests and
// sign-ups are rate-limited per client address and per submitted address,
// known or not, and every mail to one address is rate-limited too, so the
// forms cannot be used to flood someone's mailbox.
package account

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	mailer "github.com/mailtls/mailtls/internal/mail"
	"github.com/mailtls/mailtls/internal/password"
	"github.com/mailtls/mailtls/internal/store"
)

// Registration modes.
const (
	Open   = "open"
	Invite = "invite"
	Closed = "closed"
)

// Lifetimes of the links sent by mail.
const (
	VerifyTTL = 24 * time.Hour
	ResetTTL  = time.Hour // single use, one hour (issue 11)
	InviteTTL = 7 * 24 * time.Hour
)

// Password rules (OWASP ASVS 4.0 V2.1.1, V2.1.2; NIST SP 800-63B §5.1.1.2):
// a length range and nothing else — no composition rules, no forced
// changes.
const (
	MinPasswordLen = 12  // characters
	MaxPasswordLen = 256 // characters
	MaxEmailLen    = 254 // RFC 5321 §4.5.3.1.3 path limit less the brackets
)

// Errors the pages and the API branch on.
var (
	ErrInvalidEmail = errors.New("account: not an e-mail address")
	// ErrBadLogin: the address and password do not match an account (the
	// same error for an unknown address and a wrong password).
	ErrBadLogin = errors.New("account: wrong e-mail address or password")
	// ErrNotVerified: the password is right, but the address is not
	// verified yet; a new link was sent.
	ErrNotVerified = errors.New("account: e-mail address not verified")
	// ErrDisabled: the password is right, but the account is disabled.
	ErrDisabled = errors.New("account: account disabled")
	// ErrRegistrationClosed and ErrInviteRequired: sign-up is not open.
	ErrRegistrationClosed = errors.New("account: registration is closed")
	ErrInviteRequired     = errors.New("account: registration needs an invitation")
	// ErrBusy: the background queue is full; try again shortly.
	ErrBusy = errors.New("account: busy")
	// Link errors: a verification, reset or invitation link that cannot be
	// used.
	ErrLinkUnknown = errors.New("account: unknown link")
	ErrLinkExpired = errors.New("account: link expired")
	ErrLinkUsed    = errors.New("account: link already used")
)

// PasswordError is a password that breaks a rule; Reason is shown.
type PasswordError struct{ Reason string }

func (e *PasswordError) Error() string { return "account: " + e.Reason }

// LimitError is a rate limit; RetryAfter says when to try again.
type LimitError struct {
	What       string // "login", "reset", "signup", "token"
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("account: too many %s attempts; retry in %s", e.What, e.RetryAfter.Round(time.Second))
}

// Config configures a Service.
type Config struct {
	Store  store.Store
	Mail   mailer.Sender
	Hasher *password.Hasher // nil: OWASP parameters
	// BaseURL is the origin links in mails point at (web.public_url, or
	// the listener's URL); never taken from a request's Host header,
	// which a client chooses (password reset poisoning).
	BaseURL      string
	Registration string // Open (default), Invite or Closed
	Now          func() time.Time
	Rand         io.Reader // tokens; nil: crypto/rand
	Log          *slog.Logger
	// QueueSize bounds the background work waiting (default 256).
	QueueSize int
	// Limits override DefaultLimits (tests).
	Limits *Limits
}

// Service is the account logic. Make it with New; Close it.
type Service struct {
	st     store.Store
	mail   mailer.Sender
	hasher *password.Hasher
	base   string
	reg    string
	now    func() time.Time
	rand   io.Reader
	log    *slog.Logger
	lim    *limits

	jobs    chan job
	pending sync.WaitGroup // queued and running jobs
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
	mu      sync.Mutex // guards closed and the sends on jobs
	closed  bool
}

type job struct {
	name string
	run  func(ctx context.Context) error
}

// New makes a Service and starts its background worker.
func New(c Config) *Service {
	s := &Service{st: c.Store, mail: c.Mail, hasher: c.Hasher, base: strings.TrimSuffix(c.BaseURL, "/"), reg: c.Registration,
		now: c.Now, rand: c.Rand, log: c.Log, stop: make(chan struct{}), done: make(chan struct{})}
	if s.hasher == nil {
		s.hasher = &password.Hasher{}
	}
	if s.reg == "" {
		s.reg = Open
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.mail == nil {
		s.mail = mailer.Log{Logger: s.log}
	}
	l := DefaultLimits
	if c.Limits != nil {
		l = *c.Limits
	}
	s.lim = newLimits(l, s.now)
	n := c.QueueSize
	if n <= 0 {
		n = 256
	}
	s.jobs = make(chan job, n)
	go s.worker()
	return s
}

// Registration is the registration mode.
func (s *Service) Registration() string { return s.reg }

// Hasher is the password hasher.
func (s *Service) Hasher() *password.Hasher { return s.hasher }

// Close stops taking work, finishes what is queued until ctx ends, and
// stops the worker.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	drained := make(chan struct{})
	go func() { s.pending.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = fmt.Errorf("account: %d background jobs left unfinished: %w", len(s.jobs), ctx.Err())
	}
	s.closing.Do(func() { close(s.stop) })
	<-s.done
	return err
}

// Drain waits until the background queue is empty (tests: the mail of a
// request has been sent, or was never going to be).
func (s *Service) Drain(ctx context.Context) error {
	drained := make(chan struct{})
	go func() { s.pending.Wait(); close(drained) }()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue hands work to the background worker; ErrBusy when the queue is
// full or the service is closing.
func (s *Service) enqueue(name string, run func(ctx context.Context) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrBusy
	}
	s.pending.Add(1)
	select {
	case s.jobs <- job{name: name, run: run}:
		return nil
	default:
		s.pending.Done()
		s.log.Warn("account: background queue full; a request was refused", "job", name)
		return ErrBusy
	}
}

// jobTimeout bounds one background job (a lookup, an insert and a mail).
const jobTimeout = time.Minute

func (s *Service) worker() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case j := <-s.jobs:
			s.runJob(j)
		}
	}
}

func (s *Service) runJob(j job) {
	defer s.pending.Done()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("account: panic in a background job", "job", j.name, "panic", p)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()
	if err := j.run(ctx); err != nil {
		// Never log an address or a link: the error says what failed.
		s.log.Warn("account: background job failed", "job", j.name, "error", err)
	}
}

// CheckEmail normalises an address (trimmed, lower case) and checks that
// it is one plain address (no display name, no list).
func CheckEmail(email string) (string, error) {
	e := store.NormalizeEmail(email)
	if e == "" || len(e) > MaxEmailLen || strings.ContainsAny(e, "\r\n<>,; \t\"") {
		return "", ErrInvalidEmail
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" {
		return "", ErrInvalidEmail
	}
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || strings.HasPrefix(domain, "[") {
		return "", ErrInvalidEmail
	}
	return e, nil
}

// CheckPassword applies the password rules.
func CheckPassword(pw, email string) error {
	if !utf8.ValidString(pw) {
		return &PasswordError{"the password is not valid text"}
	}
	n := utf8.RuneCountInString(pw)
	switch {
	case n < MinPasswordLen:
		return &PasswordError{fmt.Sprintf("the password must have at least %d characters", MinPasswordLen)}
	case n > MaxPasswordLen:
		return &PasswordError{fmt.Sprintf("the password may have at most %d characters", MaxPasswordLen)}
	case email != "" && strings.EqualFold(strings.TrimSpace(pw), email):
		return &PasswordError{"the password must not be your e-mail address"}
	}
	return nil
}

// newSecret returns a random URL-safe token of 32 bytes and its SHA-256.
func (s *Service) newSecret() (string, [32]byte, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", [32]byte{}, fmt.Errorf("account: random: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	return tok, sha256.Sum256([]byte(tok)), nil
}

// linkError maps the store's one-time token errors.
func linkError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrLinkUnknown
	case errors.Is(err, store.ErrExpired):
		return ErrLinkExpired
	case errors.Is(err, store.ErrUsed):
		return ErrLinkUsed
	}
	return err
}

// consume uses a link's token once.
func (s *Service) consume(ctx context.Context, p store.Purpose, token string) (store.OneTimeToken, error) {
	if token == "" || len(token) > 100 {
		return store.OneTimeToken{}, ErrLinkUnknown
	}
	t, err := s.st.ConsumeOneTimeToken(ctx, p, sha256.Sum256([]byte(token)))
	return t, linkError(err)
}
