package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/store"
)

// The account pages. Every form that changes something of a logged-in
// account carries the session's CSRF token (a synchronizer token, OWASP
// CSRF Prevention Cheat Sheet), checked in constant time, on top of the
// cross-origin check (Sec-Fetch-Site / Origin) every POST passes. The
// forms of visitors without a session (sign-up, login, reset) rely on the
// cross-origin check alone, so that a visit creates no session row.
//
// Links from mails (verification, reset) show a button first: a GET never
// uses a link up, since mail scanners fetch links before the reader does.
func (s *Server) routesAccounts(mux *http.ServeMux) {
	mux.HandleFunc("GET /signup", s.signupPage)
	mux.HandleFunc("POST /signup", s.signupSubmit)
	mux.HandleFunc("GET /verify", s.verifyPage)
	mux.HandleFunc("POST /verify", s.verifySubmit)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginSubmit)
	mux.HandleFunc("POST /logout", s.requireLogin(s.csrf(s.logout)))
	mux.HandleFunc("GET /reset", s.resetPage)
	mux.HandleFunc("POST /reset", s.resetSubmit)
	mux.HandleFunc("GET /reset/confirm", s.resetConfirmPage)
	mux.HandleFunc("POST /reset/confirm", s.resetConfirmSubmit)
	mux.HandleFunc("GET /settings", s.requireLogin(s.settingsPage))
	mux.HandleFunc("POST /settings/password", s.requireLogin(s.csrf(s.changePassword)))
	mux.HandleFunc("POST /settings/logout-everywhere", s.requireLogin(s.csrf(s.logoutEverywhere)))
	mux.HandleFunc("POST /settings/tokens", s.requireLogin(s.csrf(s.createToken)))
	mux.HandleFunc("POST /settings/tokens/{id}/revoke", s.requireLogin(s.csrf(s.revokeToken)))
	mux.HandleFunc("POST /settings/delete", s.requireLogin(s.csrf(s.deleteAccount)))
	mux.HandleFunc("POST /domains", s.requireLogin(s.csrf(s.saveDomain)))
	mux.HandleFunc("POST /domains/{id}/delete", s.requireLogin(s.csrf(s.removeDomain)))
}

// Form field caps (bytes), on top of the body cap (maxFormBytes).
const (
	maxEmailField    = account.MaxEmailLen
	maxPasswordField = 4 * account.MaxPasswordLen // UTF-8
	maxTokenField    = 100
)

// readForm parses a POST form of at most maxFormBytes; false when it is
// too large or malformed (a 400 page was written).
func (s *Server) readForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read: it is too large or malformed.")
		return false
	}
	return true
}

// field returns a form value cut to at most n bytes (a longer value is
// refused by the rules that follow, never silently shortened into a valid
// one: a cut value is marked by a trailing NUL that no rule accepts).
func field(r *http.Request, name string, n int) string {
	v := r.PostForm.Get(name)
	if len(v) > n {
		return v[:n] + "\x00"
	}
	return v
}

// csrf checks the session's CSRF token on a form post (constant time).
func (s *Server) csrf(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.checkCSRF(w, r) {
			h(w, r)
		}
	}
}

// checkCSRF reads the form and compares its csrf field with the session's
// token; on a mismatch it answers 403 and returns false.
func (s *Server) checkCSRF(w http.ResponseWriter, r *http.Request) bool {
	if !s.readForm(w, r) {
		return false
	}
	want := s.sessions.GetString(r.Context(), sessionCSRF)
	got := r.PostForm.Get("csrf")
	if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		s.errorPage(w, r, http.StatusForbidden, "Form expired",
			"This form is from an older page or another site. Go back, reload the page and try again.")
		return false
	}
	return true
}

// noStore marks a response that holds account data or a secret.
func noStore(w http.ResponseWriter) { w.Header().Set("Cache-Control", "no-store") }

// retryAfter sets Retry-After from a limit error and returns the page's
// message.
func retryAfter(w http.ResponseWriter, le *account.LimitError) string {
	secs := int((le.RetryAfter + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return fmt.Sprintf("Too many attempts. Try again in %s.", plural(int64(secs), "second"))
}

// formError maps an account error to a status and a message for the
// form; ok is false for an unexpected error (logged, 500).
func (s *Server) formError(w http.ResponseWriter, err error) (int, string) {
	var pe *account.PasswordError
	var le *account.LimitError
	var te *account.TokenError
	switch {
	case errors.As(err, &pe):
		return http.StatusBadRequest, sentence(pe.Reason) + "."
	case errors.As(err, &te):
		return http.StatusBadRequest, sentence(te.Reason) + "."
	case errors.As(err, &le):
		return http.StatusTooManyRequests, retryAfter(w, le)
	case errors.Is(err, account.ErrInvalidEmail):
		return http.StatusBadRequest, "That is not an e-mail address."
	case errors.Is(err, account.ErrBadLogin):
		return http.StatusUnauthorized, "Wrong e-mail address or password."
	case errors.Is(err, account.ErrBusy):
		w.Header().Set("Retry-After", "60")
		return http.StatusServiceUnavailable, "The server is busy. Try again in a minute."
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "The server is busy. Try again in a minute."
	}
	s.Log.Error("account request failed", "error", err)
	return http.StatusInternalServerError, "Something went wrong on our side. Try again later."
}

// views

type authView struct {
	page
	Email   string
	Invite  string
	Next    string
	Token   string // a link's token (verify, reset)
	Error   string
	Notice  string
	Closed  bool
	NeedInv bool
}

type messageView struct {
	page
	Message string
	Link    string
	LinkTo  string
}

func (s *Server) message(w http.ResponseWriter, r *http.Request, status int, title, msg, linkText, link string) {
	noStore(w)
	s.render(w, r, status, "message", &messageView{page: page{Title: title}, Message: msg, Link: linkText, LinkTo: link})
}

// sign-up

func (s *Server) signupPage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	inv := r.URL.Query().Get("invite")
	if len(inv) > maxTokenField {
		inv = ""
	}
	reg := s.Accounts.Registration()
	s.render(w, r, http.StatusOK, "signup", &authView{page: page{Title: "Sign up"}, Invite: inv,
		Closed: reg == account.Closed, NeedInv: reg == account.Invite && inv == ""})
}

func (s *Server) signupSubmit(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r) {
		return
	}
	noStore(w)
	email, inv := field(r, "email", maxEmailField), field(r, "invite", maxTokenField)
	err := s.Accounts.SignUp(r.Context(), s.client(r), email, field(r, "password", maxPasswordField), inv)
	if err == nil {
		s.message(w, r, http.StatusOK, "Check your mail",
			"We sent a mail to the address you gave. Open the link in it to finish signing up; it works for 24 hours. If no mail arrives within a few minutes, look in the spam folder, or sign up again.",
			"", "")
		return
	}
	v := &authView{page: page{Title: "Sign up"}, Email: email, Invite: inv}
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, account.ErrRegistrationClosed):
		v.Closed = true
		status = http.StatusForbidden
	case errors.Is(err, account.ErrInviteRequired):
		v.NeedInv = true
		status = http.StatusForbidden
	case errors.Is(err, account.ErrLinkUnknown), errors.Is(err, account.ErrLinkExpired), errors.Is(err, account.ErrLinkUsed):
		v.Error = "This invitation cannot be used: " + linkWords(err) + " Ask for a new one."
	default:
		status, v.Error = s.formError(w, err)
	}
	s.render(w, r, status, "signup", v)
}

// linkWords says why a link cannot be used.
func linkWords(err error) string {
	switch {
	case errors.Is(err, account.ErrLinkExpired):
		return "it has expired."
	case errors.Is(err, account.ErrLinkUsed):
		return "it was used already."
	}
	return "it is not a link we sent, or it was replaced by a newer one."
}

// verification

func (s *Server) verifyPage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	tok := r.URL.Query().Get("token")
	if len(tok) > maxTokenField {
		tok = ""
	}
	s.render(w, r, http.StatusOK, "verify", &authView{page: page{Title: "Confirm your e-mail address"}, Token: tok})
}

func (s *Server) verifySubmit(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r) {
		return
	}
	_, err := s.Accounts.Verify(r.Context(), field(r, "token", maxTokenField))
	switch {
	case err == nil:
		s.message(w, r, http.StatusOK, "Address confirmed", "Your e-mail address is confirmed and your account is ready.", "Log in", "/login")
	case errors.Is(err, account.ErrLinkUnknown), errors.Is(err, account.ErrLinkExpired), errors.Is(err, account.ErrLinkUsed):
		s.message(w, r, http.StatusBadRequest, "Link not usable", "This confirmation link cannot be used: "+linkWords(err)+
			" Log in with your address and password to get a new one.", "Log in", "/login")
	default:
		status, msg := s.formError(w, err)
		s.message(w, r, status, "Not confirmed", msg, "", "")
	}
}

// login and logout

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	if CurrentUser(r) != nil {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "login", &authView{page: page{Title: "Log in"}, Next: localPath(r.URL.Query().Get("next"))})
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r) {
		return
	}
	noStore(w)
	email, next := field(r, "email", maxEmailField), localPath(field(r, "next", 2048))
	u, err := s.Accounts.Login(r.Context(), s.client(r), email, field(r, "password", maxPasswordField))
	if err == nil {
		if err := s.logIn(r.Context(), u); err != nil {
			s.Log.Error("starting a session", "error", err)
			s.errorPage(w, r, http.StatusInternalServerError, "Internal error", "You could not be logged in. Try again.")
			return
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	v := &authView{page: page{Title: "Log in"}, Email: email, Next: next}
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, account.ErrNotVerified):
		status = http.StatusForbidden
		v.Error = "Your e-mail address is not confirmed yet. We sent a new link to it; open it, then log in."
	case errors.Is(err, account.ErrDisabled):
		status = http.StatusForbidden
		v.Error = "This account is disabled. Ask the administrator of this server."
	default:
		status, v.Error = s.formError(w, err)
	}
	s.render(w, r, status, "login", v)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.sessions.Destroy(r.Context()); err != nil {
		s.Log.Error("ending a session", "error", err)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// password reset

func (s *Server) resetPage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	s.render(w, r, http.StatusOK, "reset", &authView{page: page{Title: "Reset your password"}})
}

func (s *Server) resetSubmit(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r) {
		return
	}
	email := field(r, "email", maxEmailField)
	err := s.Accounts.RequestReset(r.Context(), s.client(r), email)
	if err == nil {
		s.message(w, r, http.StatusOK, "Check your mail",
			"If an account has this address, we sent a link to it to choose a new password. The link works once, for one hour.", "", "")
		return
	}
	status, msg := s.formError(w, err)
	noStore(w)
	s.render(w, r, status, "reset", &authView{page: page{Title: "Reset your password"}, Email: email, Error: msg})
}

func (s *Server) resetConfirmPage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	tok := r.URL.Query().Get("token")
	if len(tok) > maxTokenField {
		tok = ""
	}
	s.render(w, r, http.StatusOK, "resetconfirm", &authView{page: page{Title: "Choose a new password"}, Token: tok})
}

func (s *Server) resetConfirmSubmit(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r) {
		return
	}
	tok := field(r, "token", maxTokenField)
	u, err := s.Accounts.Reset(r.Context(), tok, field(r, "password", maxPasswordField))
	switch {
	case err == nil:
		// Whoever knew the old password is logged out everywhere, this
		// browser included: the new password logs in afresh.
		if _, err := s.Store.DeleteUserSessions(r.Context(), u.ID, ""); err != nil {
			s.Log.Error("ending sessions after a reset", "error", err)
		}
		if err := s.sessions.Destroy(r.Context()); err != nil {
			s.Log.Error("ending a session", "error", err)
		}
		s.message(w, r, http.StatusOK, "Password changed", "Your new password is set, and every session of your account was logged out.", "Log in", "/login")
	case errors.Is(err, account.ErrLinkUnknown), errors.Is(err, account.ErrLinkExpired), errors.Is(err, account.ErrLinkUsed):
		s.message(w, r, http.StatusBadRequest, "Link not usable", "This reset link cannot be used: "+linkWords(err)+" Ask for a new one.", "Reset your password", "/reset")
	default:
		status, msg := s.formError(w, err)
		noStore(w)
		s.render(w, r, status, "resetconfirm", &authView{page: page{Title: "Choose a new password"}, Token: tok, Error: msg})
	}
}

// settings

type tokenRow struct {
	store.APIToken
	Scopes string
}

type settingsView struct {
	page
	User     store.User
	Tokens   []tokenRow
	NewToken string // shown once, right after creation
	Scopes   []store.Scope
	Notice   string
	// Error and ErrorIn (the form it belongs to: password, tokens,
	// delete).
	Error   string
	ErrorIn string
}

func (s *Server) settings(w http.ResponseWriter, r *http.Request, status int, v *settingsView) {
	noStore(w)
	u := CurrentUser(r)
	v.page = page{Title: "Account settings"}
	v.User, v.Scopes = *u, account.Scopes
	list, err := s.Accounts.ListTokens(r.Context(), u.ID)
	if err != nil {
		s.Log.Error("listing tokens", "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Internal error", "Your settings could not be read. Try again.")
		return
	}
	for _, t := range list {
		if !t.RevokedAt.IsZero() {
			continue
		}
		var sc []string
		for _, x := range t.Scopes {
			sc = append(sc, string(x))
		}
		v.Tokens = append(v.Tokens, tokenRow{APIToken: t, Scopes: strings.Join(sc, ", ")})
	}
	if v.Notice == "" {
		v.Notice = s.sessions.PopString(r.Context(), sessionFlash)
	}
	s.render(w, r, status, "settings", v)
}

func (s *Server) settingsPage(w http.ResponseWriter, r *http.Request) {
	s.settings(w, r, http.StatusOK, &settingsView{})
}

// flash redirects to path with a notice shown once.
func (s *Server) flash(w http.ResponseWriter, r *http.Request, path, notice string) {
	s.sessions.Put(r.Context(), sessionFlash, notice)
	http.Redirect(w, r, path, http.StatusSeeOther)
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) {
	u := CurrentUser(r)
	err := s.Accounts.ChangePassword(r.Context(), u.ID, field(r, "current", maxPasswordField), field(r, "password", maxPasswordField))
	if err != nil {
		status, msg := s.formError(w, err)
		if errors.Is(err, account.ErrBadLogin) {
			status, msg = http.StatusBadRequest, "Your current password is not right."
		}
		s.settings(w, r, status, &settingsView{Error: msg, ErrorIn: "password"})
		return
	}
	n, err := s.renewAndEndOthers(r.Context(), u.ID)
	if err != nil {
		s.Log.Error("ending sessions after a password change", "error", err)
	}
	s.flash(w, r, "/settings", fmt.Sprintf("Your password was changed. %s logged out.", sessionsWord(n)))
}

// renewAndEndOthers gives this browser a new session token and ends the
// user's other sessions (OWASP: renew the session on a privilege change).
func (s *Server) renewAndEndOthers(ctx context.Context, id store.UserID) (int, error) {
	if err := s.sessions.RenewToken(ctx); err != nil {
		return 0, err
	}
	s.sessions.Put(ctx, sessionCSRF, newCSRF())
	// RenewToken deleted this browser's old row, and the new one is stored
	// when the response is written: every row of the user left now belongs
	// to another browser.
	return s.Store.DeleteUserSessions(ctx, id, "")
}

func sessionsWord(n int) string {
	switch n {
	case 0:
		return "No other session was"
	case 1:
		return "One other session was"
	}
	return fmt.Sprintf("%d other sessions were", n)
}

func (s *Server) logoutEverywhere(w http.ResponseWriter, r *http.Request) {
	n, err := s.renewAndEndOthers(r.Context(), CurrentUser(r).ID)
	if err != nil {
		s.Log.Error("logging out everywhere", "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Internal error", "The other sessions could not be ended. Try again.")
		return
	}
	s.flash(w, r, "/settings", sessionsWord(n)+" logged out.")
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	u := CurrentUser(r)
	var scopes []store.Scope
	for i, sc := range r.PostForm["scope"] {
		if i >= len(account.Scopes) {
			break
		}
		scopes = append(scopes, store.Scope(sc))
	}
	tok, _, err := s.Accounts.CreateToken(r.Context(), u.ID, field(r, "name", 4*account.MaxTokenName), scopes)
	if err != nil {
		status, msg := s.formError(w, err)
		s.settings(w, r, status, &settingsView{Error: msg, ErrorIn: "tokens"})
		return
	}
	// Shown in this response only; never stored or put in the session.
	s.settings(w, r, http.StatusOK, &settingsView{NewToken: tok, Notice: "Your new API token is below. Copy it now: it is not shown again."})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err == nil {
		err = s.Accounts.RevokeToken(r.Context(), CurrentUser(r).ID, store.TokenID(id))
	}
	switch {
	case err == nil:
		s.flash(w, r, "/settings", "The token was revoked.")
	case errors.Is(err, store.ErrNotFound) || id <= 0:
		s.errorPage(w, r, http.StatusNotFound, "Token not found", "You have no such token.")
	default:
		status, msg := s.formError(w, err)
		s.errorPage(w, r, status, "Token not revoked", msg)
	}
}

func (s *Server) deleteAccount(w http.ResponseWriter, r *http.Request) {
	u := CurrentUser(r)
	if field(r, "confirm", 16) != "delete" {
		s.settings(w, r, http.StatusBadRequest, &settingsView{Error: `Type "delete" to confirm.`, ErrorIn: "delete"})
		return
	}
	if err := s.Accounts.DeleteAccount(r.Context(), u.ID, field(r, "password", maxPasswordField)); err != nil {
		status, msg := s.formError(w, err)
		if errors.Is(err, account.ErrBadLogin) {
			status, msg = http.StatusBadRequest, "Your password is not right."
		}
		s.settings(w, r, status, &settingsView{Error: msg, ErrorIn: "delete"})
		return
	}
	if err := s.sessions.Destroy(r.Context()); err != nil {
		s.Log.Error("ending a session", "error", err)
	}
	s.message(w, r, http.StatusOK, "Account deleted", "Your account, its saved domains, their history, alert channels and API tokens are deleted.", "Back to the checker", "/")
}

// saved domains (the pages that show them are monitor_pages.go)

// MaxDomains bounds the domains one account saves.
const MaxDomains = 1000

// saveDomain saves a domain to the account ("Save and monitor" on a result
// page). Its first monitored scan is due at once; later ones follow its
// slot of the day (store.NextScan).
func (s *Server) saveDomain(w http.ResponseWriter, r *http.Request) {
	u := CurrentUser(r)
	name, _, err := domain.Parse(field(r, "domain", domain.MaxInputLength))
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Not saved", "That is not a domain that can be saved.")
		return
	}
	list, err := s.Store.ListDomains(r.Context(), u.ID, "", MaxDomains)
	if err != nil {
		s.Log.Error("listing domains", "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Internal error", "The domain could not be saved. Try again.")
		return
	}
	if len(list) >= MaxDomains {
		s.errorPage(w, r, http.StatusBadRequest, "Not saved", fmt.Sprintf("An account keeps at most %d domains; remove one first.", MaxDomains))
		return
	}
	d, err := s.Store.AddDomain(r.Context(), store.NewDomain{UserID: u.ID, Name: name, NextScanAt: s.now()})
	done := "saved"
	if errors.Is(err, store.ErrConflict) {
		d, err = s.Store.FindDomain(r.Context(), u.ID, name)
		done = "exists"
	}
	if err != nil {
		s.Log.Error("saving a domain", "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Internal error", "The domain could not be saved. Try again.")
		return
	}
	if s.Monitor != nil && s.Monitor.Poke != nil {
		s.Monitor.Poke() // the first scan is due now
	}
	http.Redirect(w, r, "/domains/"+strconv.FormatInt(int64(d.ID), 10)+"?done="+done, http.StatusSeeOther)
}

func (s *Server) removeDomain(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err == nil {
		err = s.Store.DeleteDomain(r.Context(), CurrentUser(r).ID, store.DomainID(id))
	}
	switch {
	case err == nil:
		http.Redirect(w, r, "/domains?done=removed", http.StatusSeeOther)
	case errors.Is(err, store.ErrNotFound) || id <= 0:
		s.errorPage(w, r, http.StatusNotFound, "Domain not found", "You have no such saved domain.")
	default:
		s.Log.Error("removing a domain", "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Internal error", "The domain could not be removed. Try again.")
	}
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// loginURL is the login page that comes back to path.
func loginURL(path string) string { return "/login?next=" + url.QueryEscape(path) }
