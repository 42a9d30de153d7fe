-- Schema version 1: accounts, saved domains, scans and their history,
-- progress events, leases, alert channels, the outbox and share links.
--
-- Conventions shared with the PostgreSQL schema, so that one SQL text
-- serves both: times are INTEGER microseconds since the Unix epoch, UTC;
-- no booleans (a nullable time says when something became true); ids are
-- never reused (AUTOINCREMENT here, identity columns there); secrets that
-- act as credentials (session tokens, API tokens, one-time links) are
-- stored as their SHA-256.

-- +goose Up
CREATE TABLE users (
	id                INTEGER PRIMARY KEY AUTOINCREMENT,
	email             TEXT NOT NULL UNIQUE,
	password_phc      TEXT NOT NULL,
	created_at        INTEGER NOT NULL,
	email_verified_at INTEGER,
	disabled_at       INTEGER,
	last_login_at     INTEGER
);

CREATE TABLE sessions (
	token_hash BLOB PRIMARY KEY,
	user_id    INTEGER REFERENCES users(id) ON DELETE CASCADE,
	data       BLOB NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE api_tokens (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	prefix       TEXT NOT NULL,
	hash         BLOB NOT NULL UNIQUE,
	scopes       TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER,
	expires_at   INTEGER,
	revoked_at   INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE one_time_tokens (
	hash       BLOB PRIMARY KEY,
	purpose    TEXT NOT NULL,
	user_id    INTEGER REFERENCES users(id) ON DELETE CASCADE,
	email      TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	used_at    INTEGER
);
CREATE INDEX one_time_tokens_user ON one_time_tokens(user_id);
CREATE INDEX one_time_tokens_expiry ON one_time_tokens(expires_at);

CREATE TABLE domains (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	interval_us  INTEGER NOT NULL,
	next_scan_at INTEGER NOT NULL,
	muted_until  INTEGER,
	lease_owner  TEXT,
	lease_until  INTEGER,
	rescued_from TEXT,
	UNIQUE (user_id, name)
);
CREATE INDEX domains_due ON domains(next_scan_at);

CREATE TABLE scans (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id         INTEGER REFERENCES users(id) ON DELETE CASCADE,
	domain_id       INTEGER REFERENCES domains(id) ON DELETE CASCADE,
	name            TEXT NOT NULL,
	triggered_by    TEXT NOT NULL,
	state           TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	started_at      INTEGER,
	finished_at     INTEGER,
	expires_at      INTEGER,
	scanner_version TEXT NOT NULL DEFAULT '',
	catalog_version TEXT NOT NULL DEFAULT '',
	report_schema   INTEGER NOT NULL DEFAULT 0,
	grade           TEXT NOT NULL DEFAULT '',
	policy_status   TEXT NOT NULL DEFAULT '',
	errors          INTEGER NOT NULL DEFAULT 0,
	warnings        INTEGER NOT NULL DEFAULT 0,
	infos           INTEGER NOT NULL DEFAULT 0,
	error           TEXT NOT NULL DEFAULT '',
	report_size     INTEGER NOT NULL DEFAULT 0,
	stored_size     INTEGER NOT NULL DEFAULT 0,
	report_sha256   BLOB,
	pruned_at       INTEGER
);
CREATE INDEX scans_domain ON scans(domain_id, created_at, id);
CREATE INDEX scans_user ON scans(user_id);
CREATE INDEX scans_expiry ON scans(expires_at);
CREATE INDEX scans_state ON scans(state);

-- The report lives apart from the scan's row, so lists and the dashboard
-- read small rows and never walk a compressed document's overflow pages.
CREATE TABLE scan_reports (
	scan_id  INTEGER PRIMARY KEY REFERENCES scans(id) ON DELETE CASCADE,
	encoding TEXT NOT NULL,
	data     BLOB NOT NULL
);

CREATE TABLE scan_findings (
	scan_id    INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
	seq        INTEGER NOT NULL,
	finding_id TEXT NOT NULL,
	severity   TEXT NOT NULL,
	component  TEXT NOT NULL,
	subject    TEXT NOT NULL,
	message    TEXT NOT NULL,
	PRIMARY KEY (scan_id, seq)
);
CREATE INDEX scan_findings_finding ON scan_findings(finding_id);

CREATE TABLE scan_events (
	scan_id    INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
	seq        INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	kind       TEXT NOT NULL,
	data       BLOB NOT NULL,
	PRIMARY KEY (scan_id, seq)
);

CREATE TABLE shares (
	id         TEXT PRIMARY KEY,
	scan_id    INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
	user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE INDEX shares_scan ON shares(scan_id);
CREATE INDEX shares_user ON shares(user_id);

CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	owner      TEXT NOT NULL,
	expires_at INTEGER NOT NULL
);

CREATE TABLE channels (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	kind           TEXT NOT NULL,
	target         TEXT NOT NULL,
	secret         BLOB,
	unsubscribe_id TEXT NOT NULL UNIQUE,
	created_at     INTEGER NOT NULL,
	verified_at    INTEGER,
	disabled_at    INTEGER,
	UNIQUE (user_id, kind, target)
);

CREATE TABLE outbox (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	channel_id      INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
	domain_id       INTEGER REFERENCES domains(id) ON DELETE CASCADE,
	kind            TEXT NOT NULL,
	dedupe_key      TEXT,
	payload         BLOB NOT NULL,
	created_at      INTEGER NOT NULL,
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL,
	lease_owner     TEXT,
	lease_until     INTEGER,
	rescued_from    TEXT,
	delivered_at    INTEGER,
	abandoned_at    INTEGER,
	last_error      TEXT NOT NULL DEFAULT '',
	UNIQUE (channel_id, dedupe_key)
);
CREATE INDEX outbox_due ON outbox(next_attempt_at);
CREATE INDEX outbox_domain ON outbox(domain_id);

CREATE TABLE outbox_deliveries (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	message_id INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
	channel_id INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
	created_at INTEGER NOT NULL,
	error      TEXT NOT NULL DEFAULT '',
	detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_deliveries_channel ON outbox_deliveries(channel_id, created_at);
CREATE INDEX outbox_deliveries_message ON outbox_deliveries(message_id);

-- +goose Down
DROP TABLE outbox_deliveries;
DROP TABLE outbox;
DROP TABLE channels;
DROP TABLE leases;
DROP TABLE shares;
DROP TABLE scan_events;
DROP TABLE scan_findings;
DROP TABLE scan_reports;
DROP TABLE scans;
DROP TABLE domains;
DROP TABLE one_time_tokens;
DROP TABLE api_tokens;
DROP TABLE sessions;
DROP TABLE users;
