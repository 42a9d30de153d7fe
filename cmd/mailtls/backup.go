package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

const backupUsage = `Usage: mailtls backup [--store PATH] FILE

backup writes a consistent copy of the store (the SQLite database of
mailtls serve: accounts, saved domains, history, alerts) to FILE while the
server keeps running (SQLite's VACUUM INTO reads one snapshot; writers are
not stopped). FILE must not exist; it is created with mode 0600. To restore,
stop the server and put the copy in place of the database. See docs/store.md.

Without --store the database is the default one: $STATE_DIRECTORY/mailtls.db
under systemd, /var/lib/mailtls/mailtls.db for root, else
$XDG_DATA_HOME/mailtls/mailtls.db or ~/.local/share/mailtls/mailtls.db.

A PostgreSQL store (store: postgres://… in the configuration) is copied
with PostgreSQL's own tools instead: pg_dump, see docs/scaling.md.

Exit status: 0 when the copy was written, 1 when it could not be, 2 on a
usage error.

Flags:
`

func runBackup(ctx context.Context, args []string, env Env) int {
	fs := flag.NewFlagSet("mailtls backup", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), backupUsage); fs.PrintDefaults() }
	path := fs.String("store", "", "the database `PATH` (default: the data directory's mailtls.db)")
	if ok, code := parseFlags(fs, args, env); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ExitUsage
	}
	src := *path
	if src == "" {
		src = sqlstore.DefaultPath(env.Getenv, os.Getuid())
	}
	out := fs.Arg(0)
	if config.IsPostgresURL(src) {
		fmt.Fprintf(env.Stderr, "mailtls backup: %s is a PostgreSQL database, which mailtls does not copy itself.\n%s\n",
			sqlstore.Redact(src), pgDumpAdvice)
		return 1
	}
	if err := sqlstore.BackupFile(ctx, src, out); err != nil {
		fmt.Fprintf(env.Stderr, "mailtls backup: %v\n", err)
		return 1
	}
	st, err := os.Stat(out)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls backup: %v\n", err)
		return 1
	}
	fmt.Fprintf(env.Stdout, "backed up %s to %s (%d bytes)\n", src, out, st.Size())
	return ExitOK
}

// pgDumpAdvice is what backs up a PostgreSQL store.
const pgDumpAdvice = `Use PostgreSQL's tools, which copy a database in use consistently:
  pg_dump --format=custom --file=mailtls.dump 'postgres://…'   (restore: pg_restore --dbname=… mailtls.dump)
or continuous archiving (pg_basebackup and WAL archiving) for point-in-time recovery.
See docs/scaling.md.`
