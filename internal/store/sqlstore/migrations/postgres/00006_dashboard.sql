-- Schema version 6 on PostgreSQL: the dashboard's summary of each saved
-- domain, as in ../sqlite/00006_dashboard.sql.

-- +goose Up
ALTER TABLE domains ADD COLUMN last_scan_id BIGINT;
ALTER TABLE domains ADD COLUMN prev_scan_id BIGINT;
ALTER TABLE domains ADD COLUMN open_errors BIGINT;
ALTER TABLE domains ADD COLUMN open_warnings BIGINT;
UPDATE domains SET
	last_scan_id = (SELECT s.id FROM scans s WHERE s.domain_id = domains.id AND s.state = 'done'
		ORDER BY s.created_at DESC, s.id DESC LIMIT 1),
	prev_scan_id = (SELECT s.id FROM scans s WHERE s.domain_id = domains.id AND s.state = 'done'
		ORDER BY s.created_at DESC, s.id DESC LIMIT 1 OFFSET 1);

-- +goose Down
ALTER TABLE domains DROP COLUMN open_warnings;
ALTER TABLE domains DROP COLUMN open_errors;
ALTER TABLE domains DROP COLUMN prev_scan_id;
ALTER TABLE domains DROP COLUMN last_scan_id;
