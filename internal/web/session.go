package web

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"

	"github.com/mailtls/mailtls/internal/store"
)

// Session cookies (OWASP Session Management Cheat Sheet). Over TLS the
// name carries the __Host- prefix, which browsers accept only with
// Secure, Path=/ and no Domain, so no other host (a sibling subdomain)
// can set or shadow it (RFC 6265bis §4.1.3.2). __Host- requires Secure,
// and a Secure cookie is not for plain HTTP, so a server reached over
// plain HTTP — a checker on http://127.0.0.1:8080, where nothing crosses
// a network — uses the plain name without Secure.
const (
	SessionCookieTLS   = "__Host-mailtls_session"
	SessionCookiePlain = "mailtls_session"
)

// Session defaults (web.accounts in the configuration).
const (
	DefaultSessionIdleTimeout = 12 * time.Hour
	DefaultSessionLifetime    = 7 * 24 * time.Hour
)

// Session keys: the user id, the CSRF token of the account forms, and a
// notice shown once after a redirect.
const (
	sessionUser  = "uid"
	sessionCSRF  = "csrf"
	sessionFlash = "flash"
)

// newCSRF returns a random CSRF token (32 bytes, URL-safe base64).
func newCSRF() string { return rand.Text() + rand.Text() }

// newSessions makes the session manager: sessions in the store (only the
// token's SHA-256 is kept there), tied to their user for "log out
// everywhere" and account deletion.
func (s *Server) newSessions() *scs.SessionManager {
	sm := scs.New()
	// scs.New starts an in-memory store with a cleanup goroutine of its
	// own; ours replaces it, so stop that goroutine (one per web role
	// started, reloads included, would otherwise stay).
	if m, ok := sm.Store.(*memstore.MemStore); ok {
		m.StopCleanup()
	}
	sm.Store = store.SCSStore{Sessions: s.Store, UserOf: sessionUserOf(sm.Codec)}
	sm.IdleTimeout = s.SessionIdleTimeout
	if sm.IdleTimeout <= 0 {
		sm.IdleTimeout = DefaultSessionIdleTimeout
	}
	sm.Lifetime = s.SessionLifetime
	if sm.Lifetime <= 0 {
		sm.Lifetime = DefaultSessionLifetime
	}
	sm.Cookie.Name = SessionCookiePlain
	sm.Cookie.Secure = false
	if s.TLS {
		sm.Cookie.Name = SessionCookieTLS
		sm.Cookie.Secure = true
	}
	sm.Cookie.HttpOnly = true
	sm.Cookie.SameSite = http.SameSiteLaxMode
	sm.Cookie.Path = "/"
	sm.Cookie.Domain = ""
	sm.Cookie.Persist = true
	sm.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) {
		s.Log.Error("session store", "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Internal error", "Your session could not be read or saved. Please try again.")
	}
	return sm
}

// sessionUserOf reads the user id from encoded session data (the store
// adapter cannot use the manager's getters while scs commits).
func sessionUserOf(codec scs.Codec) func([]byte) store.UserID {
	return func(b []byte) store.UserID {
		_, values, err := codec.Decode(b)
		if err != nil {
			return 0
		}
		id, _ := values[sessionUser].(int64)
		return store.UserID(id)
	}
}

type userKey struct{}

// CurrentUser returns the user logged in on a page request (a session
// cookie), or nil. It is set by the page middleware; API requests never
// have one (they authenticate with tokens: APIToken).
func CurrentUser(r *http.Request) *store.User {
	u, _ := r.Context().Value(userKey{}).(*store.User)
	return u
}

// withUser loads the session's user. A session whose user was deleted or
// disabled since is ended.
func (s *Server) withUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if id := s.sessions.GetInt64(ctx, sessionUser); id != 0 {
			u, err := s.Store.GetUser(ctx, store.UserID(id))
			switch {
			case err == nil && u.DisabledAt.IsZero():
				r = r.WithContext(context.WithValue(ctx, userKey{}, &u))
			case err == nil || errors.Is(err, store.ErrNotFound):
				s.sessions.Destroy(ctx)
			default:
				s.Log.Error("looking up a session's user", "error", err)
				s.errorPage(w, r, http.StatusInternalServerError, "Internal error", "Your account could not be read. Please try again.")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// requireLogin sends a visitor who is not logged in to the login page,
// which brings them back here afterwards.
func (s *Server) requireLogin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if CurrentUser(r) == nil {
			next := r.URL.Path
			if r.Method != http.MethodGet {
				// A form posted after the session ended: never come back
				// to the post (pages send no Referer to come back to).
				next = ""
			} else if r.URL.RawQuery != "" {
				next += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, loginURL(localPath(next)), http.StatusSeeOther)
			return
		}
		h(w, r)
	}
}

// logIn starts a logged-in session: a new token (so a token planted
// before the login is worth nothing: session fixation, OWASP), the user
// id, a new CSRF token, and a fresh lifetime.
func (s *Server) logIn(ctx context.Context, u store.User) error {
	if err := s.sessions.RenewToken(ctx); err != nil {
		return err
	}
	s.sessions.Put(ctx, sessionUser, int64(u.ID))
	s.sessions.Put(ctx, sessionCSRF, newCSRF())
	return nil
}

// localPath returns next if it is a path on this site ("/…", not "//…"
// nor "/\…", which browsers treat as another host), else "/settings": a
// login never redirects elsewhere (open redirect).
func localPath(next string) string {
	if next == "" || len(next) > 2048 || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n\t\\") {
		return "/settings"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/settings"
	}
	return next
}

// withSessions loads the session and its user for every request but the
// API's: /api/ authenticates with bearer tokens only and never reads the
// session cookie (a page's cookie must not authorise API calls), and
// static files need none.
func (s *Server) withSessions(next http.Handler) http.Handler {
	pages := s.sessions.LoadAndSave(s.withUser(next))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/static/") {
			next.ServeHTTP(w, r)
			return
		}
		pages.ServeHTTP(w, r)
	})
}

// crossOriginRefused answers a cross-site form post (or one from an
// origin the server does not know).
func (s *Server) crossOriginRefused(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		apiError(w, http.StatusForbidden, "cross_origin", "cross-origin requests are refused")
		return
	}
	s.errorPage(w, r, http.StatusForbidden, "Request refused",
		"This form was sent from another site, which is not allowed. Open this site directly and send the form from here.")
}
