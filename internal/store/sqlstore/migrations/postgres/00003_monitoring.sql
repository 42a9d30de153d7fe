-- Schema version 3 on PostgreSQL: monitoring, as in
-- ../sqlite/00003_monitoring.sql.

-- +goose Up
ALTER TABLE domains ADD COLUMN alert_state BYTEA;
ALTER TABLE domains ADD COLUMN rescan_requested_at BIGINT;
ALTER TABLE channels ADD COLUMN digest_hour BIGINT;

-- +goose Down
ALTER TABLE channels DROP COLUMN digest_hour;
ALTER TABLE domains DROP COLUMN rescan_requested_at;
ALTER TABLE domains DROP COLUMN alert_state;
