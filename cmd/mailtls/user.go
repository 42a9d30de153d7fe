package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/daemon"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

const userUsage = `Usage: mailtls user COMMAND [--config FILE | --store PATH] ...

Manage the accounts of mailtls serve's web role from the shell, also while
the server runs (docs/web.md):

  mailtls user add EMAIL       create a verified account; the password is
                               the first line of standard input
  mailtls user list            list the accounts
  mailtls user disable EMAIL   refuse the account's logins and API tokens and
                               end its sessions
  mailtls user enable EMAIL    allow the account again
  mailtls user invite EMAIL    print a sign-up link for EMAIL (valid 7 days,
                               once), for registration: invite

The store is the one of --config (its store:, else the default), or
--store PATH, or the default: $STATE_DIRECTORY/mailtls.db under systemd,
/var/lib/mailtls/mailtls.db for root, else ~/.local/share/mailtls/mailtls.db.

Exit status: 0 on success, 1 when the command failed, 2 on a usage error.

Flags:
`

// maxPasswordLine bounds what is read from standard input.
const maxPasswordLine = 4096

func runUser(ctx context.Context, args []string, env Env) int {
	fs := flag.NewFlagSet("mailtls user", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), userUsage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "the serve configuration `FILE` (for store and web.public_url)")
	storePath := fs.String("store", "", "the database `PATH`")
	baseURL := fs.String("url", "", "the site's address for invitation links (default: web.public_url of --config)")
	if len(args) == 0 {
		fs.SetOutput(env.Stderr)
		fs.Usage()
		return ExitUsage
	}
	cmd := args[0]
	if cmd == "-h" || cmd == "--help" || cmd == "help" {
		fs.SetOutput(env.Stdout)
		fs.Usage()
		return ExitOK
	}
	if ok, code := parseFlags(fs, args[1:], env); !ok {
		return code
	}
	want := map[string]int{"add": 1, "list": 0, "disable": 1, "enable": 1, "invite": 1}
	n, known := want[cmd]
	if !known || fs.NArg() != n {
		if !known {
			fmt.Fprintf(env.Stderr, "mailtls user: unknown command %q\n\n", cmd)
		}
		fs.SetOutput(env.Stderr)
		fs.Usage()
		return ExitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(env.Stderr, "mailtls user %s: %v\n", cmd, err)
		return 1
	}
	path, base := *storePath, *baseURL
	if *cfgPath != "" {
		c, err := config.Load(*cfgPath)
		if err != nil {
			return fail(err)
		}
		if path == "" {
			path = daemon.StorePath(c, env.Getenv)
		}
		if base == "" && c.Web != nil {
			base = c.Web.PublicURL
		}
	}
	if path == "" {
		path = sqlstore.DefaultPath(env.Getenv, os.Getuid())
	}
	if _, err := os.Stat(path); err != nil && cmd != "add" && cmd != "invite" {
		return fail(fmt.Errorf("no store at %s (mailtls serve creates it; or name it with --store/--config)", path))
	}
	db, err := sqlstore.Open(ctx, path, sqlstore.Options{Now: env.Now})
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	svc := account.New(account.Config{Store: db, BaseURL: base, Now: env.Now})
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		svc.Close(cctx)
	}()

	switch cmd {
	case "add":
		pw, err := readPassword(env.Stdin)
		if err != nil {
			return fail(err)
		}
		u, err := svc.AddUser(ctx, fs.Arg(0), pw)
		if errors.Is(err, store.ErrConflict) {
			return fail(fmt.Errorf("%s has an account already", store.NormalizeEmail(fs.Arg(0))))
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(env.Stdout, "added %s (id %d), verified\n", u.Email, u.ID)
	case "list":
		return listUsers(ctx, db, env)
	case "disable", "enable":
		u, err := svc.SetDisabled(ctx, fs.Arg(0), cmd == "disable")
		if errors.Is(err, store.ErrNotFound) {
			return fail(fmt.Errorf("no account has the address %s", store.NormalizeEmail(fs.Arg(0))))
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(env.Stdout, "%sd %s\n", cmd, u.Email)
	case "invite":
		if base == "" {
			return fail(errors.New("invitation links need the site's address: give --url https://… or --config with web.public_url"))
		}
		link, err := svc.InviteLink(ctx, fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(env.Stdout, "%s\n", link)
	}
	return ExitOK
}

// readPassword reads the first line of r (at most maxPasswordLine bytes).
func readPassword(r io.Reader) (string, error) {
	if r == nil {
		return "", errors.New("the password is read from standard input; none was given")
	}
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxPasswordLine+1), maxPasswordLine+1).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	if len(line) > maxPasswordLine {
		return "", fmt.Errorf("the password line is longer than %d bytes", maxPasswordLine)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("the password is read from the first line of standard input; it was empty")
	}
	return line, nil
}

func listUsers(ctx context.Context, db *sqlstore.DB, env Env) int {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tE-MAIL\tCREATED\tVERIFIED\tDISABLED\tLAST LOGIN")
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04")
	}
	var after store.UserID
	for {
		page, err := db.ListUsers(ctx, after, 500)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls user list: %v\n", err)
			return 1
		}
		for _, u := range page {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Email, when(u.CreatedAt), when(u.EmailVerifiedAt), when(u.DisabledAt), when(u.LastLoginAt))
			after = u.ID
		}
		if len(page) < 500 {
			break
		}
	}
	tw.Flush()
	return ExitOK
}
