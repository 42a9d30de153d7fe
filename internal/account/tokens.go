package account

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/mailtls/mailtls/internal/store"
)

// API tokens are "mtls_" and 43 characters: 32 random bytes in URL-safe
// base64. The store keeps their SHA-256 and the first characters as a
// visible prefix, so a leaked database gives no usable token and a user
// can tell tokens apart.
const (
	TokenPrefix    = "mtls_"
	tokenLen       = len(TokenPrefix) + 43
	visiblePrefix  = len(TokenPrefix) + 6
	MaxTokens      = 50 // live (not revoked) tokens per account
	MaxTokenName   = 64
	tokenAlphabet  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	defaultTokName = "API token"
)

// Scopes are the scopes a token can have, in display order.
var Scopes = []store.Scope{store.ScopeRead, store.ScopeScan, store.ScopeManage}

// ErrBadToken: a bearer token that is malformed, unknown, revoked or
// expired, or whose account is disabled (one error: RFC 6750 §3.1
// invalid_token).
var ErrBadToken = errors.New("account: invalid API token")

// TokenError is a token request that breaks a rule; Reason is shown.
type TokenError struct{ Reason string }

func (e *TokenError) Error() string { return "account: " + e.Reason }

// CreateToken makes an API token for the user; the token itself is
// returned once and never stored. Errors: *TokenError.
func (s *Service) CreateToken(ctx context.Context, user store.UserID, name string, scopes []store.Scope) (string, store.APIToken, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = defaultTokName
	}
	if len([]rune(name)) > MaxTokenName || strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return "", store.APIToken{}, &TokenError{fmt.Sprintf("a token name has at most %d printable characters", MaxTokenName)}
	}
	var clean []store.Scope
	for _, want := range Scopes {
		for _, sc := range scopes {
			if sc == want {
				clean = append(clean, want)
				break
			}
		}
	}
	if len(clean) == 0 || len(clean) != len(dedupe(scopes)) {
		return "", store.APIToken{}, &TokenError{"choose at least one scope: read, scan or manage"}
	}
	list, err := s.st.ListAPITokens(ctx, user)
	if err != nil {
		return "", store.APIToken{}, err
	}
	live := 0
	for _, t := range list {
		if t.RevokedAt.IsZero() {
			live++
		}
	}
	if live >= MaxTokens {
		return "", store.APIToken{}, &TokenError{fmt.Sprintf("an account has at most %d tokens; revoke one first", MaxTokens)}
	}
	secret, _, err := s.newSecret()
	if err != nil {
		return "", store.APIToken{}, err
	}
	tok := TokenPrefix + secret
	t, err := s.st.CreateAPIToken(ctx, store.NewAPIToken{UserID: user, Name: name, Prefix: tok[:visiblePrefix],
		Hash: sha256.Sum256([]byte(tok)), Scopes: clean})
	if err != nil {
		return "", store.APIToken{}, err
	}
	return tok, t, nil
}

func dedupe(s []store.Scope) []store.Scope {
	var out []store.Scope
	for _, x := range s {
		dup := false
		for _, y := range out {
			dup = dup || x == y
		}
		if !dup {
			out = append(out, x)
		}
	}
	return out
}

// wellFormed reports whether tok looks like one of our tokens, checked
// before any database work.
func wellFormed(tok string) bool {
	if len(tok) != tokenLen || !strings.HasPrefix(tok, TokenPrefix) {
		return false
	}
	for _, c := range tok[len(TokenPrefix):] {
		if !strings.ContainsRune(tokenAlphabet, c) {
			return false
		}
	}
	return true
}

// Authenticate finds the token of an Authorization: Bearer header and
// records its use. client is the caller's key for the limit on wrong
// tokens. Errors: ErrBadToken, *LimitError.
func (s *Service) Authenticate(ctx context.Context, client, tok string) (store.APIToken, store.User, error) {
	if d := s.lim.tokenClient.check(client); d > 0 {
		return store.APIToken{}, store.User{}, &LimitError{What: "token", RetryAfter: d}
	}
	fail := func() (store.APIToken, store.User, error) {
		s.lim.tokenClient.take(client)
		return store.APIToken{}, store.User{}, ErrBadToken
	}
	if !wellFormed(tok) {
		return fail()
	}
	t, err := s.st.UseAPIToken(ctx, sha256.Sum256([]byte(tok)))
	if errors.Is(err, store.ErrNotFound) {
		return fail()
	}
	if err != nil {
		return store.APIToken{}, store.User{}, err
	}
	u, err := s.st.GetUser(ctx, t.UserID)
	if errors.Is(err, store.ErrNotFound) || err == nil && !u.DisabledAt.IsZero() {
		return fail()
	}
	if err != nil {
		return store.APIToken{}, store.User{}, err
	}
	return t, u, nil
}

// ListTokens lists the user's tokens, revoked ones included.
func (s *Service) ListTokens(ctx context.Context, user store.UserID) ([]store.APIToken, error) {
	return s.st.ListAPITokens(ctx, user)
}

// RevokeToken revokes one of the user's tokens; store.ErrNotFound when the
// user has no such token.
func (s *Service) RevokeToken(ctx context.Context, user store.UserID, id store.TokenID) error {
	return s.st.RevokeAPIToken(ctx, user, id)
}
