package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// tables lists the application's tables in creation order, which is an
// order where every table comes after those it references (not the
// migration bookkeeping, nor the anonymous scans of anonscans.go).
func tables(ctx context.Context, d Dialect, db *sql.DB) ([]string, error) {
	q := `SELECT name FROM sqlite_master WHERE type = 'table'
		AND name NOT LIKE 'sqlite_%' AND name <> 'goose_db_version' AND substr(name, 1, 9) <> 'anonscan_' ORDER BY rowid`
	if d.Name == Postgres.Name {
		// Oids ascend in creation order in a database mailtls created.
		q = `SELECT c.relname FROM pg_class c
			WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace AND c.relname <> 'goose_db_version'
				AND substr(c.relname, 1, 9) <> 'anonscan_'
			ORDER BY c.oid`
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row interface{ Scan(...any) error }) (string, error) {
		var n string
		return n, row.Scan(&n)
	})
}

// Tables lists the store's tables in creation order.
func (db *DB) Tables(ctx context.Context) ([]string, error) { return tables(ctx, db.d, db.r) }

// TableCount is the number of rows copied into one table.
type TableCount struct {
	Table string
	Rows  int64
}

// CopyAll copies every row of every table of src (a SQLite store) into
// dst (an empty PostgreSQL store at the same schema version), keeping ids
// and times: `mailtls store migrate`. The source is read in one read
// transaction, so the copy is one consistent snapshot even while a server
// writes; the target is written in one transaction (COPY), so a failed
// copy leaves it empty. Each table's count is checked on both sides.
func CopyAll(ctx context.Context, src, dst *DB) ([]TableCount, error) {
	if dst.pool == nil {
		return nil, errors.New("sqlstore: copy: the target must be a PostgreSQL store")
	}
	sv, err := src.SchemaVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: copy: source: %w", err)
	}
	dv, err := dst.SchemaVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: copy: target: %w", err)
	}
	if sv != dv {
		return nil, fmt.Errorf("sqlstore: copy: the source has schema version %d, the target %d", sv, dv)
	}
	names, err := src.Tables(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: copy: source tables: %w", err)
	}
	dnames, err := dst.Tables(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: copy: target tables: %w", err)
	}
	// The target may hold other tables (certificates of the host role,
	// internal/certstorage); it must have every one of the source's.
	for _, t := range names {
		if !slices.Contains(dnames, t) {
			return nil, fmt.Errorf("sqlstore: copy: the target has no table %s", t)
		}
	}
	for _, t := range names {
		var one int
		err := dst.r.QueryRowContext(ctx, "SELECT 1 FROM "+t+" LIMIT 1").Scan(&one)
		if err == nil {
			return nil, fmt.Errorf("sqlstore: copy: the target's table %s holds rows; copy into an empty database", t)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("sqlstore: copy: %w", err)
		}
	}

	stx, err := src.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: copy: source: %w", err)
	}
	defer stx.Rollback()
	dtx, err := dst.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: copy: target: %w", err)
	}
	defer dtx.Rollback(context.WithoutCancel(ctx))
	var out []TableCount
	for _, t := range names {
		n, err := copyTable(ctx, stx, dtx, t)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: copy: table %s: %w", t, err)
		}
		out = append(out, TableCount{t, n})
	}
	// The identity sequences continue after the copied ids.
	rows, err := dtx.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name`)
	if err != nil {
		return nil, err
	}
	type col struct{ table, column string }
	var ids []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.table, &c.column); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Ids are never reused: SQLite's AUTOINCREMENT remembers the largest
	// id ever given (sqlite_sequence), beyond the rows still there.
	used := map[string]int64{}
	if src.d.Name == SQLite.Name {
		rows, err := stx.QueryContext(ctx, "SELECT name, seq FROM sqlite_sequence")
		if err != nil {
			return nil, fmt.Errorf("sqlstore: copy: %w", err)
		}
		for rows.Next() {
			var name string
			var seq int64
			if err := rows.Scan(&name, &seq); err != nil {
				rows.Close()
				return nil, err
			}
			used[name] = seq
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	for _, c := range ids {
		if _, err := dtx.Exec(ctx, setvalQuery(c.table, c.column), used[c.table]); err != nil {
			return nil, fmt.Errorf("sqlstore: copy: sequence of %s.%s: %w", c.table, c.column, err)
		}
	}
	// Counted on both sides before the commit: all or nothing.
	for _, tc := range out {
		var s, d int64
		if err := stx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+tc.Table).Scan(&s); err != nil {
			return nil, err
		}
		if err := dtx.QueryRow(ctx, "SELECT COUNT(*) FROM "+tc.Table).Scan(&d); err != nil {
			return nil, err
		}
		if s != d || d != tc.Rows {
			return nil, fmt.Errorf("sqlstore: copy: table %s: %d rows in the source, %d copied, %d in the target", tc.Table, s, tc.Rows, d)
		}
	}
	if err := dtx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("sqlstore: copy: commit: %w", err)
	}
	return out, nil
}

// setvalQuery moves the identity sequence of table.column past its
// largest id and past $1, the largest id ever given (an empty table
// starts at 1).
func setvalQuery(table, column string) string {
	return fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%[1]s', '%[2]s'),
		GREATEST(COALESCE((SELECT MAX(%[2]s) FROM %[1]s), 0), $1::bigint) + 1, false)`, table, column)
}

// copyTable streams one table's rows, column for column, into PostgreSQL
// with COPY.
func copyTable(ctx context.Context, src *sql.Tx, dst pgx.Tx, table string) (int64, error) {
	rows, err := src.QueryContext(ctx, "SELECT * FROM "+table)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n, err := dst.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		return vals, nil
	}))
	if err != nil {
		return n, err
	}
	return n, rows.Err()
}
