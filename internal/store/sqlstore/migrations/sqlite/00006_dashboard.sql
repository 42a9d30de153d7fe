-- Schema version 6: the dashboard's summary of each saved domain, written
-- with the scan or the alert state that changes it, so that the dashboard
-- of an account reads one row per domain instead of searching every
-- domain's history (issue 11: 1,000 domains in under 100 ms).
--
-- last_scan_id and prev_scan_id are the domain's latest two scans in state
-- 'done' (by created_at, then id). They are not foreign keys: retention
-- deletes old scans, and a deleted scan was older than every scan kept, so
-- the dashboard's LEFT JOIN finds exactly what a search of the remaining
-- history would (ids are never reused). open_errors and open_warnings count
-- the open problems of alert_state; NULL for a state stored before this
-- version, until the domain's next monitoring scan.

-- +goose Up
ALTER TABLE domains ADD COLUMN last_scan_id INTEGER;
ALTER TABLE domains ADD COLUMN prev_scan_id INTEGER;
ALTER TABLE domains ADD COLUMN open_errors INTEGER;
ALTER TABLE domains ADD COLUMN open_warnings INTEGER;
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
