-- Schema version 3: monitoring. A saved domain's alert state (package
-- alert, JSON; written with the scan result under the schedule lease) and
-- when a "rescan now" was asked for; a channel's daily digest hour (UTC;
-- NULL: alerts as they happen).

-- +goose Up
ALTER TABLE domains ADD COLUMN alert_state BLOB;
ALTER TABLE domains ADD COLUMN rescan_requested_at INTEGER;
ALTER TABLE channels ADD COLUMN digest_hour INTEGER;

-- +goose Down
ALTER TABLE channels DROP COLUMN digest_hour;
ALTER TABLE domains DROP COLUMN rescan_requested_at;
ALTER TABLE domains DROP COLUMN alert_state;
