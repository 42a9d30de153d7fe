-- +goose Up
-- certmagic's storage (docs/scaling.md, "Certificates"): one row per key.
-- Keys are slash-separated paths; "directories" are implicit prefixes. The
-- C collation makes the order of keys the order of their bytes, so that
-- the keys under "p/" are exactly the range ["p/", "p0") ('0' follows '/')
-- and that range is an index scan.
CREATE TABLE certmagic_data (
	key      text COLLATE "C" PRIMARY KEY,
	value    bytea NOT NULL,
	modified timestamptz NOT NULL DEFAULT now()
);

-- A held lock is a row whose lease (expires, by the database's clock) its
-- holder extends while it works; owner is a random token per acquisition.
CREATE TABLE certmagic_locks (
	name    text COLLATE "C" PRIMARY KEY,
	owner   text NOT NULL,
	expires timestamptz NOT NULL
);

-- +goose Down
DROP TABLE certmagic_locks;
DROP TABLE certmagic_data;
