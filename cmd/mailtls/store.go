package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/mailtls/mailtls/internal/certstorage"
	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

const storeUsage = `Usage: mailtls store migrate [--from sqlite:FILE] [--certs DIR] --to postgres://URL

migrate copies everything the store of mailtls serve keeps (accounts,
sessions, API tokens, saved domains, scan history, alerts and their outbox,
shares, TLS-RPT reports) from a SQLite file into an empty PostgreSQL
database, keeping every id and time, so that several serve instances can
share it (docs/scaling.md). The PostgreSQL database is given the current
schema, then filled in one transaction: a copy that fails leaves it empty.
Every table's rows are counted on both sides before the copy is committed.

Stop mailtls serve first: the SQLite file is read as one snapshot, and what
a server writes after it is not copied. The file is upgraded to this
version's schema first, as serve would. The password may be given in the
URL, in PGPASSWORD or in ~/.pgpass.

--certs DIR copies the certificates, their keys and the ACME account of the
host role from its certmagic folder (host.storage/certmagic) into the
database, where instances on PostgreSQL keep them, so that they are not
ordered again. A file the database holds already is left as it is, so it
may run again (with or without --from; a second --from is refused).

Exit status: 0 when everything was copied, 1 when it was not, 2 on a usage
error.

Flags:
`

func runStore(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 || (args[0] != "migrate" && args[0] != "help" && args[0] != "-h" && args[0] != "--help") {
		if len(args) > 0 {
			fmt.Fprintf(env.Stderr, "mailtls store: unknown command %q\n\n", args[0])
		}
		fmt.Fprint(env.Stderr, storeUsage)
		return ExitUsage
	}
	fs := flag.NewFlagSet("mailtls store migrate", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), storeUsage); fs.PrintDefaults() }
	if args[0] != "migrate" {
		fs.SetOutput(env.Stdout)
		fs.Usage()
		return ExitOK
	}
	from := fs.String("from", "", "the SQLite store, `sqlite:FILE`")
	to := fs.String("to", "", "the PostgreSQL database, `postgres://…`")
	certs := fs.String("certs", "", "the host role's certmagic folder, `DIR` (host.storage/certmagic)")
	if ok, code := parseFlags(fs, args[1:], env); !ok {
		return code
	}
	file, isSQLite := strings.CutPrefix(*from, "sqlite:")
	if fs.NArg() != 0 || (*from != "" && (!isSQLite || file == "")) || (*from == "" && *certs == "") || !config.IsPostgresURL(*to) {
		fmt.Fprintln(env.Stderr, "mailtls store migrate: give --from sqlite:FILE, --certs DIR or both, and --to postgres://URL")
		fs.Usage()
		return ExitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(env.Stderr, "mailtls store migrate: %v\n", err)
		return 1
	}
	if *from != "" {
		if code := migrateStore(ctx, file, *to, env, fail); code != ExitOK {
			return code
		}
	}
	if *certs != "" {
		return migrateCerts(ctx, *certs, *to, env, fail)
	}
	return ExitOK
}

// migrateCerts copies the certmagic folder dir into the database's
// certificate storage (internal/certstorage).
func migrateCerts(ctx context.Context, dir, to string, env Env, fail func(error) int) int {
	if st, err := os.Stat(dir); err != nil {
		return fail(err)
	} else if !st.IsDir() {
		return fail(fmt.Errorf("%s is not a folder", dir))
	}
	cs, err := certstorage.Open(ctx, to, certstorage.Options{})
	if err != nil {
		return fail(fmt.Errorf("%s: certificate storage: %w", sqlstore.Redact(to), err))
	}
	defer cs.Close()
	st, err := cs.ImportDir(ctx, dir)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(env.Stdout, "certificates: copied %d files from %s to %s; %d were there already, %d left as the database has them (they differ)\n",
		st.Copied, dir, sqlstore.Redact(to), st.Same, st.Kept)
	return ExitOK
}

// migrateStore copies the SQLite store file into the database at to.
func migrateStore(ctx context.Context, file, to string, env Env, fail func(error) int) int {
	// The source must exist: an empty file made here would copy nothing.
	if st, err := os.Stat(file); err != nil {
		return fail(err)
	} else if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("%s is not a database file", file))
	}
	src, err := sqlstore.Open(ctx, file, sqlstore.Options{Now: env.Now})
	if err != nil {
		return fail(fmt.Errorf("%s: %w", file, err))
	}
	defer src.Close()
	dst, err := sqlstore.OpenPostgres(ctx, to, sqlstore.Options{Now: env.Now})
	if err != nil {
		return fail(fmt.Errorf("%s: %w", sqlstore.Redact(to), err))
	}
	defer dst.Close()
	counts, err := sqlstore.CopyAll(ctx, src, dst)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fail(errors.New("interrupted; nothing was copied"))
		}
		return fail(err)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	var total int64
	for _, c := range counts {
		fmt.Fprintf(tw, "%s\t%d\t\n", c.Table, c.Rows)
		total += c.Rows
	}
	tw.Flush()
	fmt.Fprintf(env.Stdout, "copied %d rows in %d tables from %s to %s\n", total, len(counts), file, sqlstore.Redact(to))
	return ExitOK
}

// openStoreAt opens the store at path: a postgres:// URL (errors name it
// without its password) or a SQLite file.
func openStoreAt(ctx context.Context, path string, env Env) (*sqlstore.DB, error) {
	if config.IsPostgresURL(path) {
		db, err := sqlstore.OpenPostgres(ctx, path, sqlstore.Options{Now: env.Now})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sqlstore.Redact(path), err)
		}
		return db, nil
	}
	return sqlstore.Open(ctx, path, sqlstore.Options{Now: env.Now})
}
