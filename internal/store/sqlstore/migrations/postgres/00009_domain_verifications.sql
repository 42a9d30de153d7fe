-- Schema version 9: domain verification by DNS (docs/accounts.md,
-- "Verifying a domain"). An account proves control of a saved domain by
-- publishing a TXT record with its token; the TLS-RPT reports of the name
-- are shown to verified accounts only. One row per saved domain (so per
-- account and name), deleted with it.

-- +goose Up
CREATE TABLE domain_verifications (
	domain_id     BIGINT PRIMARY KEY REFERENCES domains(id) ON DELETE CASCADE,
	user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name          TEXT NOT NULL,
	token         TEXT NOT NULL,
	created_at    BIGINT NOT NULL,
	verified_at   BIGINT,
	checked_at    BIGINT,
	missing_since BIGINT
);

-- +goose Down
DROP TABLE domain_verifications;
