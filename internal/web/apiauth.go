package web

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/store"
)

// maxAuthorization bounds the Authorization header read (a token is 48
// characters).
const maxAuthorization = 256

// APIUser authenticates an API request by its Authorization: Bearer token
// (RFC 6750 §2.1) and checks that the token has scope. It never looks at a
// session cookie: a page's cookie does not authorise API calls. Errors:
// ErrUnauthenticated (no token, or a wrong, revoked or expired one, or one
// of a disabled account: 401), ErrScope (403), or an error with a
// RetryAfter() time.Duration method (too many wrong tokens from the
// client: 429).
func (s *Server) APIUser(r *http.Request, scope store.Scope) (store.UserID, error) {
	t, u, err := s.bearer(r)
	if err != nil {
		return 0, err
	}
	if !t.Has(scope) {
		return 0, ErrScope
	}
	return u.ID, nil
}

// bearer finds the token of the request's Authorization header.
func (s *Server) bearer(r *http.Request) (store.APIToken, store.User, error) {
	if s.Accounts == nil {
		return store.APIToken{}, store.User{}, ErrUnauthenticated
	}
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" || len(h) > maxAuthorization || !ok || !strings.EqualFold(scheme, "Bearer") {
		return store.APIToken{}, store.User{}, ErrUnauthenticated
	}
	t, u, err := s.Accounts.Authenticate(r.Context(), s.client(r), strings.TrimSpace(tok))
	var le *account.LimitError
	switch {
	case errors.As(err, &le):
		return t, u, tooMany{le}
	case errors.Is(err, account.ErrBadToken):
		return t, u, ErrUnauthenticated
	}
	return t, u, err
}

// PageUser is the logged-in user of a page request (the session cookie;
// see withUser), for the pages of saved domains.
func (s *Server) PageUser(r *http.Request) (store.UserID, bool) {
	if u := CurrentUser(r); u != nil {
		return u.ID, true
	}
	return 0, false
}

// tooMany is a rate limit of APIUser.
type tooMany struct{ *account.LimitError }

func (e tooMany) RetryAfter() time.Duration { return e.LimitError.RetryAfter }
func (e tooMany) Unwrap() error             { return e.LimitError }

// meResource is GET /api/v1/me: whose token this is.
type meResource struct {
	Email  string        `json:"email"`
	Token  tokenResource `json:"token"`
	Scopes []store.Scope `json:"scopes"`
}

type tokenResource struct {
	Name   string `json:"name"`
	Prefix string `json:"prefix"`
}

// apiMe tells the holder of a token which account and scopes it has (any
// scope will do).
func (s *Server) apiMe(w http.ResponseWriter, r *http.Request) {
	t, u, err := s.bearer(r)
	if err != nil {
		authError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, meResource{Email: u.Email, Token: tokenResource{Name: t.Name, Prefix: t.Prefix}, Scopes: t.Scopes})
}
