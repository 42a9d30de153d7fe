-- Schema version 2: TLS-RPT reports (RFC 8460), deduplicated by
-- (organization, report-id) across channels, with every arrival's
-- provenance and one row per policy for queries by domain.

-- +goose Up
CREATE TABLE tlsrpt_reports (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	organization    TEXT NOT NULL,
	report_id       TEXT NOT NULL,
	content_sha256  BLOB NOT NULL,
	state           TEXT NOT NULL,
	reason          TEXT NOT NULL DEFAULT '',
	start_at        INTEGER NOT NULL,
	end_at          INTEGER NOT NULL,
	parsed_encoding TEXT NOT NULL,
	raw_encoding    TEXT NOT NULL DEFAULT '',
	raw_size        INTEGER NOT NULL DEFAULT 0,
	raw_pruned_at   INTEGER,
	created_at      INTEGER NOT NULL,
	-- Blobs last: SQLite reads the columns before them without walking
	-- their overflow pages.
	parsed          BLOB NOT NULL,
	raw             BLOB,
	UNIQUE (organization, report_id, content_sha256)
);
-- One counted report per key; conflicts and ignored copies sit beside it.
CREATE UNIQUE INDEX tlsrpt_reports_counted ON tlsrpt_reports(organization, report_id) WHERE state = 'counted';
CREATE INDEX tlsrpt_reports_range ON tlsrpt_reports(start_at, end_at);

CREATE TABLE tlsrpt_policies (
	report      INTEGER NOT NULL REFERENCES tlsrpt_reports(id) ON DELETE CASCADE,
	seq         INTEGER NOT NULL,
	policy_type TEXT NOT NULL,
	domain      TEXT NOT NULL,
	successful  INTEGER NOT NULL,
	failed      INTEGER NOT NULL,
	PRIMARY KEY (report, seq)
);
CREATE INDEX tlsrpt_policies_domain ON tlsrpt_policies(domain, report);

CREATE TABLE tlsrpt_receipts (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	report      INTEGER NOT NULL REFERENCES tlsrpt_reports(id) ON DELETE CASCADE,
	received_at INTEGER NOT NULL,
	channel     TEXT NOT NULL,
	client_ip   TEXT NOT NULL DEFAULT '',
	dkim        TEXT NOT NULL DEFAULT '',
	dkim_domain TEXT NOT NULL DEFAULT '',
	file_name   TEXT NOT NULL DEFAULT '',
	message_id  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX tlsrpt_receipts_report ON tlsrpt_receipts(report);

-- +goose Down
DROP TABLE tlsrpt_receipts;
DROP TABLE tlsrpt_policies;
DROP TABLE tlsrpt_reports;
