-- Schema version 5: TLS-RPT day rows are the counted figures. Only a
-- report in state 'counted' has day rows (a report that comes to count,
-- promoted by a signed copy or released once its domain is configured,
-- gets them then; a counted report never stops counting), and the rows
-- name the reporting organisation. The summary of a window then sums
-- the day rows alone, in SQL, without looking up each report. Portable
-- SQL: the PostgreSQL migration is the same text.

-- +goose Up
ALTER TABLE tlsrpt_days ADD COLUMN organization TEXT NOT NULL DEFAULT '';
ALTER TABLE tlsrpt_day_domains ADD COLUMN organization TEXT NOT NULL DEFAULT '';
DELETE FROM tlsrpt_days WHERE report IN (SELECT id FROM tlsrpt_reports WHERE state <> 'counted');
DELETE FROM tlsrpt_day_failures WHERE report IN (SELECT id FROM tlsrpt_reports WHERE state <> 'counted');
DELETE FROM tlsrpt_day_domains WHERE report IN (SELECT id FROM tlsrpt_reports WHERE state <> 'counted');
UPDATE tlsrpt_days SET organization = (SELECT r.organization FROM tlsrpt_reports r WHERE r.id = tlsrpt_days.report);
UPDATE tlsrpt_day_domains SET organization = (SELECT r.organization FROM tlsrpt_reports r WHERE r.id = tlsrpt_day_domains.report);

-- +goose Down
-- The rows of reports that do not count are not restored: queries of
-- version 4 filter by the report's state and find none to leave out.
ALTER TABLE tlsrpt_day_domains DROP COLUMN organization;
ALTER TABLE tlsrpt_days DROP COLUMN organization;
