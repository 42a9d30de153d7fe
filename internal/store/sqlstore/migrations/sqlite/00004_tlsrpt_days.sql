-- Schema version 4: each TLS-RPT report's figures per domain, UTC day and
-- policy type (internal/tlsrptagg.ReportRows), so that the summary and the
-- readiness verdict of a window sum small rows instead of decoding every
-- report. Rows belong to their report: a conflict, an ignored or a held
-- report has rows too, and queries count only reports in state 'counted'.
-- Reports stored by versions 2 and 3 get their rows when the store opens. And
-- the record of readiness overrides.

-- +goose Up
CREATE TABLE tlsrpt_days (
	report         INTEGER NOT NULL REFERENCES tlsrpt_reports(id) ON DELETE CASCADE,
	domain         TEXT NOT NULL,
	day            INTEGER NOT NULL, -- UTC midnight
	policy_type    TEXT NOT NULL,
	successful     INTEGER NOT NULL,
	failed         INTEGER NOT NULL,
	details_failed INTEGER NOT NULL,
	mx_sets        TEXT NOT NULL DEFAULT '', -- the sts MX sets, one per line
	-- Keyed as the summary reads them: a domain's days are one range of
	-- the table, not an index walk with a lookup per row.
	PRIMARY KEY (domain, day, report, policy_type)
) WITHOUT ROWID;
CREATE INDEX tlsrpt_days_report ON tlsrpt_days(report);

CREATE TABLE tlsrpt_day_failures (
	report       INTEGER NOT NULL REFERENCES tlsrpt_reports(id) ON DELETE CASCADE,
	domain       TEXT NOT NULL,
	day          INTEGER NOT NULL,
	policy_type  TEXT NOT NULL,
	result_type  TEXT NOT NULL,
	mx           TEXT NOT NULL,
	sending_ip   TEXT NOT NULL DEFAULT '',
	receiving_ip TEXT NOT NULL DEFAULT '',
	reason       TEXT NOT NULL DEFAULT '',
	count        INTEGER NOT NULL
);
-- Covering: the summary reads a domain's failures from the index alone.
CREATE INDEX tlsrpt_day_failures_domain ON tlsrpt_day_failures(domain, day, report, policy_type, result_type, mx, sending_ip, receiving_ip, reason, count);
CREATE INDEX tlsrpt_day_failures_report ON tlsrpt_day_failures(report);

-- The per-domain figure: sessions counted once whatever the policy type.
CREATE TABLE tlsrpt_day_domains (
	report   INTEGER NOT NULL REFERENCES tlsrpt_reports(id) ON DELETE CASCADE,
	domain   TEXT NOT NULL,
	day      INTEGER NOT NULL,
	sessions INTEGER NOT NULL,
	failed   INTEGER NOT NULL,
	PRIMARY KEY (domain, day, report)
) WITHOUT ROWID;
CREATE INDEX tlsrpt_day_domains_report ON tlsrpt_day_domains(report);

-- `mailtls policy promote --force` on a domain whose readiness verdict
-- was not "ready": who overrode what, kept for the record.
CREATE TABLE tlsrpt_overrides (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	domain    TEXT NOT NULL,
	policy_id TEXT NOT NULL DEFAULT '',
	status    TEXT NOT NULL,
	reasons   TEXT NOT NULL DEFAULT '', -- one per line
	at        INTEGER NOT NULL
);
CREATE INDEX tlsrpt_overrides_domain ON tlsrpt_overrides(domain, at);

-- The index by state speeds up lists of held and ignored reports.
CREATE INDEX tlsrpt_reports_state ON tlsrpt_reports(state, start_at);
-- What the summary needs of each report, without reading the report's
-- row (its blobs make the table's pages sparse).
CREATE INDEX tlsrpt_reports_refs ON tlsrpt_reports(id, state, organization, report_id, start_at);

-- +goose Down
DROP INDEX tlsrpt_reports_refs;
DROP INDEX tlsrpt_reports_state;
DROP TABLE tlsrpt_overrides;
DROP TABLE tlsrpt_day_domains;
DROP TABLE tlsrpt_day_failures;
DROP TABLE tlsrpt_days;
