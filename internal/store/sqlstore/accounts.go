package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

const userCols = "id, email, password_phc, created_at, email_verified_at, disabled_at, last_login_at"

func scanUser(row interface{ Scan(...any) error }) (store.User, error) {
	var u store.User
	err := row.Scan(&u.ID, &u.Email, &u.PasswordPHC, at(&u.CreatedAt), at(&u.EmailVerifiedAt), at(&u.DisabledAt), at(&u.LastLoginAt))
	return u, err
}

// CreateUser implements store.Users.
func (db *DB) CreateUser(ctx context.Context, email, phc string) (store.User, error) {
	email = store.NormalizeEmail(email)
	if email == "" {
		return store.User{}, errors.New("sqlstore: empty e-mail address")
	}
	row := db.w.QueryRowContext(ctx, "INSERT INTO users (email, password_phc, created_at) VALUES ($1, $2, $3) RETURNING "+userCols,
		email, phc, tv(db.clock()))
	u, err := scanUser(row)
	return u, db.wrap(err)
}

// GetUser implements store.Users.
func (db *DB) GetUser(ctx context.Context, id store.UserID) (store.User, error) {
	u, err := scanUser(db.r.QueryRowContext(ctx, "SELECT "+userCols+" FROM users WHERE id = $1", id))
	return u, db.wrap(err)
}

// GetUserByEmail implements store.Users.
func (db *DB) GetUserByEmail(ctx context.Context, email string) (store.User, error) {
	u, err := scanUser(db.r.QueryRowContext(ctx, "SELECT "+userCols+" FROM users WHERE email = $1", store.NormalizeEmail(email)))
	return u, db.wrap(err)
}

// ListUsers implements store.Users.
func (db *DB) ListUsers(ctx context.Context, after store.UserID, limit int) ([]store.User, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT "+userCols+" FROM users WHERE id > $1 ORDER BY id LIMIT $2", after, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanUser)
}

func (db *DB) updateUser(ctx context.Context, id store.UserID, set string, args ...any) error {
	args = append([]any{id}, args...)
	res, err := db.w.ExecContext(ctx, "UPDATE users SET "+set+" WHERE id = $1", args...)
	return db.wrap(affected(res, err, store.ErrNotFound))
}

// SetPassword implements store.Users.
func (db *DB) SetPassword(ctx context.Context, id store.UserID, phc string) error {
	return db.updateUser(ctx, id, "password_phc = $2", phc)
}

// SetEmail implements store.Users.
func (db *DB) SetEmail(ctx context.Context, id store.UserID, email string) error {
	return db.updateUser(ctx, id, "email = $2", store.NormalizeEmail(email))
}

// MarkEmailVerified implements store.Users.
func (db *DB) MarkEmailVerified(ctx context.Context, id store.UserID) error {
	return db.updateUser(ctx, id, "email_verified_at = $2", tv(db.clock()))
}

// SetDisabled implements store.Users.
func (db *DB) SetDisabled(ctx context.Context, id store.UserID, disabled bool) error {
	var v any
	if disabled {
		v = tv(db.clock())
	}
	return db.updateUser(ctx, id, "disabled_at = $2", v)
}

// RecordLogin implements store.Users.
func (db *DB) RecordLogin(ctx context.Context, id store.UserID) error {
	return db.updateUser(ctx, id, "last_login_at = $2", tv(db.clock()))
}

// DeleteUser implements store.Users; foreign keys cascade to every row the
// user owns.
func (db *DB) DeleteUser(ctx context.Context, id store.UserID) error {
	res, err := db.w.ExecContext(ctx, "DELETE FROM users WHERE id = $1", id)
	return db.wrap(affected(res, err, store.ErrNotFound))
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// CommitSession implements store.Sessions.
func (db *DB) CommitSession(ctx context.Context, token string, user store.UserID, data []byte, expiry time.Time) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO sessions (token_hash, user_id, data, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (token_hash) DO UPDATE SET user_id = excluded.user_id, data = excluded.data, expires_at = excluded.expires_at`,
		tokenHash(token), nid(user), data, tv(expiry))
	return db.wrap(err)
}

// FindSession implements store.Sessions.
func (db *DB) FindSession(ctx context.Context, token string) ([]byte, bool, error) {
	var data []byte
	err := db.r.QueryRowContext(ctx, "SELECT data FROM sessions WHERE token_hash = $1 AND expires_at > $2",
		tokenHash(token), tv(db.clock())).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return data, true, nil
}

// DeleteSession implements store.Sessions.
func (db *DB) DeleteSession(ctx context.Context, token string) error {
	_, err := db.w.ExecContext(ctx, "DELETE FROM sessions WHERE token_hash = $1", tokenHash(token))
	return err
}

// DeleteUserSessions implements store.Sessions.
func (db *DB) DeleteUserSessions(ctx context.Context, user store.UserID, except string) (int, error) {
	q, args := "DELETE FROM sessions WHERE user_id = $1", []any{user}
	if except != "" {
		q, args = q+" AND token_hash <> $2", append(args, tokenHash(except))
	}
	res, err := db.w.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

const tokenCols = "id, user_id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at"

func scanToken(row interface{ Scan(...any) error }) (store.APIToken, error) {
	var t store.APIToken
	var scopes string
	err := row.Scan(&t.ID, &t.UserID, &t.Name, &t.Prefix, &scopes, at(&t.CreatedAt), at(&t.LastUsedAt), at(&t.ExpiresAt), at(&t.RevokedAt))
	for _, s := range strings.Fields(scopes) {
		t.Scopes = append(t.Scopes, store.Scope(s))
	}
	return t, err
}

// CreateAPIToken implements store.Tokens.
func (db *DB) CreateAPIToken(ctx context.Context, n store.NewAPIToken) (store.APIToken, error) {
	scopes := make([]string, len(n.Scopes))
	for i, s := range n.Scopes {
		scopes[i] = string(s)
	}
	row := db.w.QueryRowContext(ctx, `INSERT INTO api_tokens (user_id, name, prefix, hash, scopes, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+tokenCols,
		n.UserID, n.Name, n.Prefix, n.Hash[:], strings.Join(scopes, " "), tv(db.clock()), tv(n.ExpiresAt))
	t, err := scanToken(row)
	return t, db.wrap(err)
}

// UseAPIToken implements store.Tokens. The last-used time is written at
// most once a minute, so busy API clients do not turn reads into writes.
func (db *DB) UseAPIToken(ctx context.Context, hash [32]byte) (store.APIToken, error) {
	now := db.clock()
	row := db.w.QueryRowContext(ctx, `UPDATE api_tokens
		SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $3 THEN $2 ELSE last_used_at END
		WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)
		AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL)
		RETURNING `+tokenCols, hash[:], tv(now), tv(now.Add(-time.Minute)))
	t, err := scanToken(row)
	return t, db.wrap(err)
}

// ListAPITokens implements store.Tokens.
func (db *DB) ListAPITokens(ctx context.Context, user store.UserID) ([]store.APIToken, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT "+tokenCols+" FROM api_tokens WHERE user_id = $1 ORDER BY id", user)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanToken)
}

// RevokeAPIToken implements store.Tokens.
func (db *DB) RevokeAPIToken(ctx context.Context, user store.UserID, id store.TokenID) error {
	res, err := db.w.ExecContext(ctx, "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND user_id = $2",
		id, user, tv(db.clock()))
	return db.wrap(affected(res, err, store.ErrNotFound))
}

// CreateOneTimeToken implements store.OneTimeTokens.
func (db *DB) CreateOneTimeToken(ctx context.Context, p store.Purpose, hash [32]byte, user store.UserID, email string, ttl time.Duration) error {
	now := db.clock()
	_, err := db.w.ExecContext(ctx, `INSERT INTO one_time_tokens (hash, purpose, user_id, email, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, hash[:], string(p), nid(user), store.NormalizeEmail(email), tv(now), tv(now.Add(ttl)))
	return db.wrap(err)
}

// ConsumeOneTimeToken implements store.OneTimeTokens: one UPDATE marks
// the token used only if it is unused and unexpired, so two concurrent
// clicks cannot both succeed.
func (db *DB) ConsumeOneTimeToken(ctx context.Context, p store.Purpose, hash [32]byte) (store.OneTimeToken, error) {
	now := db.clock()
	var t store.OneTimeToken
	var purpose string
	err := db.w.QueryRowContext(ctx, `UPDATE one_time_tokens SET used_at = $3
		WHERE hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3
		RETURNING purpose, user_id, email, created_at, expires_at, used_at`, hash[:], string(p), tv(now)).
		Scan(&purpose, nidc(&t.UserID), &t.Email, at(&t.CreatedAt), at(&t.ExpiresAt), at(&t.UsedAt))
	t.Purpose = store.Purpose(purpose)
	if !errors.Is(err, sql.ErrNoRows) {
		return t, err
	}
	// Say why: used, expired or unknown.
	var used, expires time.Time
	err = db.r.QueryRowContext(ctx, "SELECT used_at, expires_at FROM one_time_tokens WHERE hash = $1 AND purpose = $2",
		hash[:], string(p)).Scan(at(&used), at(&expires))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.OneTimeToken{}, store.ErrNotFound
	case err != nil:
		return store.OneTimeToken{}, err
	case !used.IsZero():
		return store.OneTimeToken{}, store.ErrUsed
	default:
		return store.OneTimeToken{}, store.ErrExpired
	}
}

// DeleteOneTimeTokens implements store.OneTimeTokens.
func (db *DB) DeleteOneTimeTokens(ctx context.Context, user store.UserID, p store.Purpose) error {
	_, err := db.w.ExecContext(ctx, "DELETE FROM one_time_tokens WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL", user, string(p))
	return err
}

// collect scans every row with f.
func collect[T any](rows *sql.Rows, f func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := f(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
