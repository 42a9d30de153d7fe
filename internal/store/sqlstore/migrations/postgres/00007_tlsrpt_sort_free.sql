-- Schema version 7 on PostgreSQL: first_row as in
-- ../sqlite/00007_tlsrpt_sort_free.sql (1 on a report's first day row, so
-- that the distinct reports of a window need no COUNT(DISTINCT)). The
-- SQLite indexes in GROUP BY order are left out: PostgreSQL aggregates
-- with a hash table, without sorting.

-- +goose Up
ALTER TABLE tlsrpt_days ADD COLUMN first_row INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tlsrpt_day_domains ADD COLUMN first_row INTEGER NOT NULL DEFAULT 0;
UPDATE tlsrpt_days SET first_row = 1 WHERE day = (SELECT MIN(x.day) FROM tlsrpt_days x
	WHERE x.report = tlsrpt_days.report AND x.domain = tlsrpt_days.domain AND x.policy_type = tlsrpt_days.policy_type);
UPDATE tlsrpt_day_domains SET first_row = 1 WHERE day = (SELECT MIN(x.day) FROM tlsrpt_day_domains x
	WHERE x.report = tlsrpt_day_domains.report AND x.domain = tlsrpt_day_domains.domain);

-- +goose Down
ALTER TABLE tlsrpt_day_domains DROP COLUMN first_row;
ALTER TABLE tlsrpt_days DROP COLUMN first_row;
