package store

import (
	"context"
	"strings"
	"time"
)

// UserID identifies a user.
type UserID int64

// User is an account. The password is kept only as a PHC string
// ($argon2id$v=19$m=…,t=…,p=…$salt$hash); the store never sees a password.
type User struct {
	ID              UserID
	Email           string // lower case (NormalizeEmail)
	PasswordPHC     string
	CreatedAt       time.Time
	EmailVerifiedAt time.Time // zero until the address is verified
	DisabledAt      time.Time // zero unless disabled (`mailtls user disable`)
	LastLoginAt     time.Time
}

// NormalizeEmail is the form an address is stored and looked up in: trimmed
// and lower case, so one mailbox has one account whatever its spelling.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// Users are the accounts.
type Users interface {
	// CreateUser adds an account; ErrConflict when the address has one.
	CreateUser(ctx context.Context, email, passwordPHC string) (User, error)
	GetUser(ctx context.Context, id UserID) (User, error)
	// GetUserByEmail looks the address up in its normalised form.
	GetUserByEmail(ctx context.Context, email string) (User, error)
	// ListUsers pages through the accounts in id order, after the given id.
	ListUsers(ctx context.Context, after UserID, limit int) ([]User, error)
	// SetPassword stores a new PHC string (a changed password, or a rehash
	// with new parameters at login).
	SetPassword(ctx context.Context, id UserID, passwordPHC string) error
	// SetEmail changes the address (after verification of the new one);
	// ErrConflict when another account has it.
	SetEmail(ctx context.Context, id UserID, email string) error
	MarkEmailVerified(ctx context.Context, id UserID) error
	// SetDisabled disables or re-enables an account. A disabled account's
	// API tokens are refused.
	SetDisabled(ctx context.Context, id UserID, disabled bool) error
	RecordLogin(ctx context.Context, id UserID) error
	// DeleteUser deletes the account and every row it owns.
	DeleteUser(ctx context.Context, id UserID) error
}

// Sessions are server-side web sessions. The methods match what
// github.com/alexedwards/scs/v2 needs from a store (see SCSStore); the
// token is stored only as its SHA-256, so a copy of the database does not
// give away live sessions.
type Sessions interface {
	// CommitSession inserts or replaces the session; user (0: none) ties
	// it to an account for "log out everywhere" and account deletion.
	CommitSession(ctx context.Context, token string, user UserID, data []byte, expiry time.Time) error
	// FindSession returns the data; found is false for an unknown or
	// expired token (not an error).
	FindSession(ctx context.Context, token string) (data []byte, found bool, err error)
	// DeleteSession is a no-op for an unknown token.
	DeleteSession(ctx context.Context, token string) error
	// DeleteUserSessions ends every session of the user except the one
	// with token except ("" ends all), and says how many it ended.
	DeleteUserSessions(ctx context.Context, user UserID, except string) (int, error)
}

// Scope is what an API token may do.
type Scope string

// Scopes.
const (
	ScopeRead   Scope = "read"   // list domains, scans, diffs
	ScopeScan   Scope = "scan"   // trigger scans
	ScopeManage Scope = "manage" // add and remove domains, channels, shares
)

// TokenID identifies an API token.
type TokenID int64

// APIToken is an API token as stored: its visible prefix and the SHA-256
// of the whole token, never the token itself.
type APIToken struct {
	ID         TokenID
	UserID     UserID
	Name       string
	Prefix     string // shown in lists so the user recognises the token
	Scopes     []Scope
	CreatedAt  time.Time
	LastUsedAt time.Time // zero until used; updated at most once a minute
	ExpiresAt  time.Time // zero: no expiry
	RevokedAt  time.Time
}

// Has reports whether the token carries scope s.
func (t APIToken) Has(s Scope) bool {
	for _, x := range t.Scopes {
		if x == s {
			return true
		}
	}
	return false
}

// NewAPIToken is a token to create.
type NewAPIToken struct {
	UserID    UserID
	Name      string
	Prefix    string
	Hash      [32]byte // SHA-256 of the whole token
	Scopes    []Scope
	ExpiresAt time.Time // zero: no expiry
}

// Tokens are API tokens.
type Tokens interface {
	// CreateAPIToken stores a token; ErrConflict for a known hash.
	CreateAPIToken(ctx context.Context, t NewAPIToken) (APIToken, error)
	// UseAPIToken finds the token by hash and records its use. ErrNotFound
	// when the token is unknown, revoked or expired, or its user disabled.
	UseAPIToken(ctx context.Context, hash [32]byte) (APIToken, error)
	ListAPITokens(ctx context.Context, user UserID) ([]APIToken, error)
	// RevokeAPIToken revokes one of the user's tokens; ErrNotFound when the
	// user has no such token.
	RevokeAPIToken(ctx context.Context, user UserID, id TokenID) error
}

// Purpose is what a one-time token is for.
type Purpose string

// Purposes.
const (
	PurposeVerifyEmail   Purpose = "verify-email"
	PurposeResetPassword Purpose = "reset-password"
	PurposeInvite        Purpose = "invite" // registration by invitation; no user yet
	// PurposeConfirmAddress confirms an address other than the account's
	// own as a destination of its alerts.
	PurposeConfirmAddress Purpose = "confirm-address"
)

// OneTimeToken is a single-use link's token (e-mail verification, password
// reset, invitation), stored as its SHA-256.
type OneTimeToken struct {
	Purpose   Purpose
	UserID    UserID // 0 for an invitation
	Email     string // the address the link was sent to
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time
}

// OneTimeTokens are single-use, expiring links.
type OneTimeTokens interface {
	// CreateOneTimeToken stores a token valid for ttl.
	CreateOneTimeToken(ctx context.Context, purpose Purpose, hash [32]byte, user UserID, email string, ttl time.Duration) error
	// ConsumeOneTimeToken uses the token once: the first call succeeds,
	// every later one returns ErrUsed; an expired token returns ErrExpired,
	// an unknown one (or one of another purpose) ErrNotFound.
	ConsumeOneTimeToken(ctx context.Context, purpose Purpose, hash [32]byte) (OneTimeToken, error)
	// DeleteOneTimeTokens removes the user's unused tokens of a purpose
	// (a changed password voids outstanding reset links).
	DeleteOneTimeTokens(ctx context.Context, user UserID, purpose Purpose) error
}
