-- Schema version 8: the state of the policy host (the host role), shared
-- by every host instance on the store (issue 15): per domain, the SHA-256
-- of the policy body served and its id (RFC 8461 §3.1), and for a
-- follow_mx domain the last known MX set and its mx patterns
-- (space-separated; NULL while none is known). Before, each instance kept
-- them in its host.storage folder (ids.json, follow-mx.json).

-- +goose Up
CREATE TABLE host_policies (
	domain        TEXT PRIMARY KEY,
	body_hash     TEXT NOT NULL DEFAULT '',
	policy_id     TEXT NOT NULL DEFAULT '',
	mx_hosts      TEXT,
	mx_patterns   TEXT,
	mx_checked_at INTEGER,
	updated_at    INTEGER NOT NULL
);

-- +goose Down
DROP TABLE host_policies;
