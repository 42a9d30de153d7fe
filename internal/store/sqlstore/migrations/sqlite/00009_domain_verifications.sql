-- Schema version 9: domain verification by DNS (docs/accounts.md,
-- "Verifying a domain"). An account proves control of a saved domain by
-- publishing a TXT record with its token; the TLS-RPT reports of the name
-- are shown to verified accounts only. One row per saved domain (so per
-- account and name), deleted with it.

-- +goose Up
CREATE TABLE domain_verifications (
	domain_id     INTEGER PRIMARY KEY REFERENCES domains(id) ON DELETE CASCADE,
	user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name          TEXT NOT NULL,
	token         TEXT NOT NULL,
	created_at    INTEGER NOT NULL,
	verified_at   INTEGER,
	checked_at    INTEGER,
	missing_since INTEGER
);

-- +goose Down
DROP TABLE domain_verifications;
