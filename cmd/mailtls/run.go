package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"
)

// Exit codes (a contract: scripts and CI rely on them). When several
// apply, the first in this order wins: ExitUsage, ExitFindings,
// ExitUndetermined, ExitOK.
const (
	ExitOK       = 0 // no finding has severity error
	ExitFindings = 1 // at least one finding has severity error
	ExitUsage    = 2 // the tool could not run: bad flag, unusable resolver, invalid domain
	// ExitUndetermined: the scan ran but could not tell (check: a domain's
	// policy is undetermined, for example because no resolver answered),
	// so it must not pass for "no problems".
	ExitUndetermined = 3
)

// Env is what a run takes from its surroundings, injected so that tests
// control it.
type Env struct {
	Stdin      io.Reader
	Stdout     io.Writer
	Stderr     io.Writer
	Now        func() time.Time
	Getenv     func(string) string
	ResolvConf string               // path of resolv.conf
	IsTerminal func(io.Writer) bool // whether to colour output in "auto" mode
}

// DefaultEnv is the real environment.
func DefaultEnv() Env {
	return Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Now: time.Now, Getenv: os.Getenv, ResolvConf: "/etc/resolv.conf",
		IsTerminal: func(w io.Writer) bool {
			f, ok := w.(*os.File)
			if !ok {
				return false
			}
			st, err := f.Stat()
			return err == nil && st.Mode()&os.ModeCharDevice != 0
		},
	}
}

const usage = `mailtls makes inbound mail transport security real for a domain:
MTA-STS (RFC 8461), TLS-RPT (RFC 8460) and DANE (RFC 7672).

Usage:
  mailtls check [flags] DOMAIN...   scan domains: grade, findings, exact fixes
  mailtls policy COMMAND ...        rollout: init, lint, promote, retire, plan
  mailtls serve [--config FILE]     host MTA-STS policies with automatic certificates
  mailtls serve records --config F  the DNS records each hosted domain must publish
  mailtls reports COMMAND ...       TLS-RPT reports: import, list, show, summary, readiness
  mailtls backup [--store PATH] FILE  copy the store while the server runs
  mailtls user add|list|disable|enable|invite  manage the web role's accounts
  mailtls resolve [--explain] DOMAIN the TLS policy Postfix gets for DOMAIN (DANE, MTA-STS)
  mailtls findings [--markdown]     list every finding mailtls can report
  mailtls version                   print the version

Run "mailtls check --help" for the flags of check.
`

// Run runs mailtls with args (without the program name) and returns the
// exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return ExitUsage
	}
	switch args[0] {
	case "check":
		return runCheck(ctx, args[1:], env)
	case "policy":
		return runPolicy(ctx, args[1:], env)
	case "serve":
		return runServe(ctx, args[1:], env)
	case "resolve":
		return runResolve(ctx, args[1:], env)
	case "findings":
		return runFindings(args[1:], env)
	case "backup":
		return runBackup(ctx, args[1:], env)
	case "reports":
		return runReports(ctx, args[1:], env)
	case "user":
		return runUser(ctx, args[1:], env)
	case "version", "--version":
		fmt.Fprintln(env.Stdout, "mailtls", version())
		return ExitOK
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "mailtls: unknown command %q\n\n%s", args[0], usage)
	return ExitUsage
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
		if v != "" {
			return v
		}
	}
	return "(devel)"
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// parseFlags parses fs and turns -h into a clean exit.
func parseFlags(fs *flag.FlagSet, args []string, env Env) (ok bool, code int) {
	fs.SetOutput(env.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, ExitOK
		}
		return false, ExitUsage
	}
	return true, 0
}
