package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// userRun runs mailtls in-process with stdin.
func userRun(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Now: time.Now,
		Getenv: func(string) string { return "" }, IsTerminal: func(io.Writer) bool { return false }}
	code := Run(context.Background(), args, env)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// mailtls user manages accounts in the store: add (verified, password from
// stdin), list, disable (sessions ended, logins refused), enable, invite.
func TestUserCommand(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "mailtls.db")
	r := userRun(t, "correct horse battery\n", "user", "add", "--store", db, "Admin@Example.TEST")
	if r.code != 0 || !strings.Contains(r.stdout, "added admin@example.test (id 1), verified") {
		t.Fatalf("add: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := userRun(t, "correct horse battery\n", "user", "add", "--store", db, "admin@example.test"); r.code != 1 || !strings.Contains(r.stderr, "has an account already") {
		t.Errorf("add twice: %d %q", r.code, r.stderr)
	}
	for name, stdin := range map[string]string{"short": "short\n", "empty": "", "huge": strings.Repeat("x", 5000) + "\n"} {
		if r := userRun(t, stdin, "user", "add", "--store", db, "b@example.test"); r.code != 1 {
			t.Errorf("%s password: %d %q", name, r.code, r.stderr)
		}
	}
	if r := userRun(t, "correct horse battery\n", "user", "add", "--store", db, "not an address"); r.code != 1 {
		t.Errorf("bad address: %d", r.code)
	}

	// The account logs in (a session row stands for a browser).
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, db, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := account.New(account.Config{Store: st})
	defer svc.Close(ctx)
	u, err := svc.Login(ctx, "192.0.2.1", "admin@example.test", "correct horse battery")
	if err != nil {
		t.Fatalf("login of the added user: %v", err)
	}
	st.CommitSession(ctx, "browser-session", u.ID, []byte("x"), time.Now().Add(time.Hour))

	r = userRun(t, "", "user", "list", "--store", db)
	if r.code != 0 || !strings.Contains(r.stdout, "E-MAIL") || !strings.Contains(r.stdout, "admin@example.test") {
		t.Errorf("list: %d %q", r.code, r.stdout)
	}
	if r := userRun(t, "", "user", "disable", "--store", db, "ADMIN@example.test"); r.code != 0 || r.stdout != "disabled admin@example.test\n" {
		t.Errorf("disable: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if _, found, _ := st.FindSession(ctx, "browser-session"); found {
		t.Error("disable left the account's session")
	}
	if _, err := svc.Login(ctx, "192.0.2.1", "admin@example.test", "correct horse battery"); err != account.ErrDisabled {
		t.Errorf("login of a disabled account: %v", err)
	}
	if r := userRun(t, "", "user", "enable", "--store", db, "admin@example.test"); r.code != 0 {
		t.Errorf("enable: %d %q", r.code, r.stderr)
	}
	if _, err := svc.Login(ctx, "192.0.2.1", "admin@example.test", "correct horse battery"); err != nil {
		t.Errorf("login after enable: %v", err)
	}
	if r := userRun(t, "", "user", "disable", "--store", db, "nobody@example.test"); r.code != 1 || !strings.Contains(r.stderr, "no account") {
		t.Errorf("disable unknown: %d %q", r.code, r.stderr)
	}

	// Invitations need the site's address; the config's public_url gives it.
	if r := userRun(t, "", "user", "invite", "--store", db, "guest@example.test"); r.code != 1 || !strings.Contains(r.stderr, "--url") {
		t.Errorf("invite without a URL: %d %q", r.code, r.stderr)
	}
	cfg := filepath.Join(dir, "mailtls.yaml")
	os.WriteFile(cfg, []byte("store: "+db+"\nweb:\n  listen: [\"127.0.0.1:0\"]\n  public_url: https://check.example.test\n  accounts:\n    registration: invite\n"), 0o600)
	r = userRun(t, "", "user", "invite", "--config", cfg, "guest@example.test")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "https://check.example.test/signup?invite=") {
		t.Fatalf("invite: %d %q %q", r.code, r.stdout, r.stderr)
	}
	inv := account.New(account.Config{Store: st, Registration: account.Invite})
	defer inv.Close(ctx)
	tok := strings.TrimSpace(strings.TrimPrefix(r.stdout, "https://check.example.test/signup?invite="))
	if err := inv.SignUp(ctx, "192.0.2.1", "", "correct horse battery", tok); err != nil {
		t.Errorf("sign-up with the printed invitation: %v", err)
	}

	// Usage errors.
	for _, args := range [][]string{{"user"}, {"user", "frobnicate"}, {"user", "add", "--store", db}, {"user", "list", "--store", db, "extra"}} {
		if r := userRun(t, "", args...); r.code != ExitUsage {
			t.Errorf("%v: %d, want %d", args, r.code, ExitUsage)
		}
	}
	if r := userRun(t, "", "user", "list", "--store", filepath.Join(dir, "missing.db")); r.code != 1 || !strings.Contains(r.stderr, "no store") {
		t.Errorf("list of a missing store: %d %q", r.code, r.stderr)
	}
}
