package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/mailtls/mailtls/internal/store"
)

const verificationCols = "domain_id, user_id, name, token, created_at, verified_at, checked_at, missing_since"

func scanVerification(row interface{ Scan(...any) error }) (store.DomainVerification, error) {
	var v store.DomainVerification
	err := row.Scan(&v.DomainID, &v.UserID, &v.Name, &v.Token, at(&v.CreatedAt), at(&v.VerifiedAt), at(&v.CheckedAt), at(&v.MissingSince))
	return v, err
}

// Verification implements store.Verifications.
func (db *DB) Verification(ctx context.Context, id store.DomainID) (store.DomainVerification, error) {
	v, err := scanVerification(db.r.QueryRowContext(ctx, "SELECT "+verificationCols+" FROM domain_verifications WHERE domain_id = $1", id))
	return v, db.wrap(err)
}

// StartVerification implements store.Verifications.
func (db *DB) StartVerification(ctx context.Context, user store.UserID, id store.DomainID, token string) (store.DomainVerification, error) {
	if token == "" {
		return store.DomainVerification{}, errors.New("sqlstore: empty verification token")
	}
	var v store.DomainVerification
	err := db.tx(ctx, func(tx *sql.Tx) error {
		// Only the account's own domain; the insert keeps a token made
		// before (two clicks, two instances) rather than replacing it.
		_, err := tx.ExecContext(ctx, `INSERT INTO domain_verifications (domain_id, user_id, name, token, created_at)
			SELECT id, user_id, name, $3, $4 FROM domains WHERE id = $1 AND user_id = $2
			ON CONFLICT (domain_id) DO NOTHING`, id, user, token, tv(db.clock()))
		if err != nil {
			return err
		}
		v, err = scanVerification(tx.QueryRowContext(ctx, "SELECT "+verificationCols+" FROM domain_verifications WHERE domain_id = $1 AND user_id = $2", id, user))
		return err
	})
	return v, db.wrap(err)
}

// SaveVerification implements store.Verifications.
func (db *DB) SaveVerification(ctx context.Context, v store.DomainVerification) error {
	res, err := db.w.ExecContext(ctx, "UPDATE domain_verifications SET verified_at = $2, checked_at = $3, missing_since = $4 WHERE domain_id = $1",
		v.DomainID, tv(v.VerifiedAt), tv(v.CheckedAt), tv(v.MissingSince))
	return db.wrap(affected(res, err, store.ErrNotFound))
}
