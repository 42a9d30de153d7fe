package store

import (
	"context"
	"time"
)

// DomainVerification is an account's proof that it controls a saved
// domain (docs/accounts.md, "Verifying a domain"): a TXT record holding
// Token published at the domain. It is kept per saved domain, so each
// account that saved a name has its own token and its own state, and it
// goes when the domain is removed.
type DomainVerification struct {
	DomainID DomainID
	UserID   UserID
	Name     string
	Token    string
	// CreatedAt is when the token was made.
	CreatedAt time.Time
	// VerifiedAt is when the record was first found; zero: not verified
	// (never, or lapsed).
	VerifiedAt time.Time
	// CheckedAt is the last lookup that gave an answer (found or absent);
	// lookups that failed temporarily leave it.
	CheckedAt time.Time
	// MissingSince is the first of the absent answers since the record
	// was last seen; zero while it is seen.
	MissingSince time.Time
}

// Verified reports whether the account has proven control of the domain.
func (v DomainVerification) Verified() bool { return !v.VerifiedAt.IsZero() }

// Verifications keeps the domain verifications.
type Verifications interface {
	// Verification returns the saved domain's verification; ErrNotFound
	// when none was asked for.
	Verification(ctx context.Context, id DomainID) (DomainVerification, error)
	// StartVerification returns the saved domain's verification, creating
	// it with token when there is none (a second call keeps the first
	// token). ErrNotFound when user has no such domain.
	StartVerification(ctx context.Context, user UserID, id DomainID, token string) (DomainVerification, error)
	// SaveVerification stores the outcome of a check: VerifiedAt,
	// CheckedAt and MissingSince of v. ErrNotFound when it is gone.
	SaveVerification(ctx context.Context, v DomainVerification) error
}
