-- Schema version 7: sums of TLS-RPT day rows over long windows without a
-- sort. SQLite groups by sorting unless an index gives the rows in the
-- GROUP BY's order, and counts distinct values with another temporary
-- B-tree; over a year of 20 reporters (7,300 rows per table) that was
-- about 1.5 µs a row, reading the rows in index order about 0.15 µs.
--
-- first_row is 1 on the first day row of a report (per domain and policy
-- type in tlsrpt_days, per domain in tlsrpt_day_domains). A report's days
-- are consecutive, so the distinct reports of a window [from, to) are its
-- rows with first_row = 1 or day = from: no COUNT(DISTINCT).
--
-- The indexes put the rows in the order of each sum's GROUP BY. Those by
-- policy type, organisation or failure kind lead with the domain only
-- (the day is a filter, read but not sought): TLSRPTSums uses them for
-- long windows and the day range of the primary keys for short ones.

-- +goose Up
ALTER TABLE tlsrpt_days ADD COLUMN first_row INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tlsrpt_day_domains ADD COLUMN first_row INTEGER NOT NULL DEFAULT 0;
UPDATE tlsrpt_days SET first_row = 1 WHERE day = (SELECT MIN(x.day) FROM tlsrpt_days x
	WHERE x.report = tlsrpt_days.report AND x.domain = tlsrpt_days.domain AND x.policy_type = tlsrpt_days.policy_type);
UPDATE tlsrpt_day_domains SET first_row = 1 WHERE day = (SELECT MIN(x.day) FROM tlsrpt_day_domains x
	WHERE x.report = tlsrpt_day_domains.report AND x.domain = tlsrpt_day_domains.domain);
CREATE INDEX tlsrpt_days_by_day ON tlsrpt_days(domain, day, policy_type, successful, failed, details_failed);
CREATE INDEX tlsrpt_days_by_org ON tlsrpt_days(domain, policy_type, organization, day, first_row, successful, failed);
CREATE INDEX tlsrpt_day_domains_by_org ON tlsrpt_day_domains(domain, organization, day, first_row, sessions, failed);
CREATE INDEX tlsrpt_day_failures_by_kind ON tlsrpt_day_failures(domain, policy_type, result_type, mx, sending_ip, day, count);

-- +goose Down
DROP INDEX tlsrpt_day_failures_by_kind;
DROP INDEX tlsrpt_day_domains_by_org;
DROP INDEX tlsrpt_days_by_org;
DROP INDEX tlsrpt_days_by_day;
ALTER TABLE tlsrpt_day_domains DROP COLUMN first_row;
ALTER TABLE tlsrpt_days DROP COLUMN first_row;
