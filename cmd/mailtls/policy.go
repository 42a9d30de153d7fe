package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/rollout"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/miekg/dns"
)

const policyUsage = `Usage: mailtls policy COMMAND [flags] ...

Commands for each step of an MTA-STS rollout (docs/policy.md):
  init DOMAIN      the records and the testing policy to publish first
  lint FILE        check a draft policy before publishing it (FILE "-" = stdin)
  promote DOMAIN   check that testing can become enforce, and print the enforce policy
  retire DOMAIN    withdraw MTA-STS safely: mode none first, and when the records may go
  plan DOMAIN      an MX migration with dates: --add-mx HOST, --remove-mx HOST

Run "mailtls policy COMMAND --help" for the flags of a command.
`

func runPolicy(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, policyUsage)
		return ExitUsage
	}
	switch args[0] {
	case "init", "promote", "retire", "plan":
		return runLifecycle(ctx, args[0], args[1:], env)
	case "lint":
		return runLint(ctx, args[1:], env)
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, policyUsage)
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "mailtls policy: unknown command %q\n\n%s", args[0], policyUsage)
	return ExitUsage
}

// lifecycle holds the flags of init, promote, retire and plan.
type lifecycle struct {
	nc        netConfig
	format    string
	rua       multiFlag
	hostAddrs multiFlag
	hostCNAME string
	maxAge    int64
	force     bool
	previous  string
	add       multiFlag
	remove    multiFlag
	smtpWait  time.Duration
	ehlo      string
}

func runLifecycle(ctx context.Context, cmd string, args []string, env Env) int {
	fs := flag.NewFlagSet("mailtls policy "+cmd, flag.ContinueOnError)
	var c lifecycle
	c.nc.register(fs)
	fs.StringVar(&c.format, "format", "zone", "output `format`: zone (zone-file lines and the policy file), json or octodns (records for an octoDNS zone file)")
	switch cmd {
	case "init":
		fs.Var(&c.rua, "rua", "TLS-RPT report `URI` (mailto: or https:; repeatable; default: the published ones, else a placeholder to edit)")
		fs.Var(&c.hostAddrs, "host-address", "`IP` address of the web server that will serve the policy (repeatable)")
		fs.StringVar(&c.hostCNAME, "host-cname", "", "delegate mta-sts.DOMAIN to this policy-hosting `HOST` with a CNAME instead")
	case "promote":
		fs.Int64Var(&c.maxAge, "max-age", 0, "max_age of the enforce policy in `SECONDS` (default: the current one, at least 604800)")
		fs.BoolVar(&c.force, "force", false, "print the enforce policy even when the domain is not ready, with the reasons as warnings")
	case "retire":
		fs.StringVar(&c.previous, "previous-max-age", "", "the largest max_age published before the current policy, in seconds or as a duration such as 720h, when it was larger")
	case "plan":
		fs.Var(&c.add, "add-mx", "MX `HOST` to add (repeatable)")
		fs.Var(&c.remove, "remove-mx", "MX `HOST` to remove (repeatable)")
	}
	if cmd == "promote" || cmd == "plan" {
		fs.DurationVar(&c.smtpWait, "smtp-timeout", 0, "time limit for each SMTP phase (default 10s each, 20s for the banner)")
		fs.StringVar(&c.ehlo, "ehlo", "", "the `NAME` to send in EHLO (default: the local address literal)")
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mailtls policy %s [flags] DOMAIN\n\nFlags:\n", cmd)
		fs.PrintDefaults()
	}
	pos, code, ok := parseInterleaved(fs, args, env)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(env.Stderr, "mailtls policy %s: name exactly one domain\n", cmd)
		return ExitUsage
	}
	if c.format != "zone" && c.format != "json" && c.format != "octodns" {
		fmt.Fprintf(env.Stderr, "mailtls policy %s: --format must be zone, json or octodns, not %q\n", cmd, c.format)
		return ExitUsage
	}
	name, _, err := domain.Parse(pos[0])
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls policy %s: %v\n", cmd, err)
		return ExitUsage
	}
	for _, a := range c.hostAddrs {
		if _, err := netip.ParseAddr(a); err != nil {
			fmt.Fprintf(env.Stderr, "mailtls policy init: --host-address %q is not an IP address\n", a)
			return ExitUsage
		}
	}
	for _, set := range []*multiFlag{&c.add, &c.remove} {
		for i, h := range *set {
			n := domain.Canonical(h)
			if domain.CheckHostname(n) != nil {
				fmt.Fprintf(env.Stderr, "mailtls policy plan: %q is not a host name\n", h)
				return ExitUsage
			}
			(*set)[i] = n
		}
	}
	var previous int64
	if c.previous != "" {
		if previous, err = parseSeconds(c.previous); err != nil {
			fmt.Fprintf(env.Stderr, "mailtls policy retire: --previous-max-age: %v\n", err)
			return ExitUsage
		}
	}
	if c.maxAge < 0 || c.maxAge > 31557600 {
		fmt.Fprintln(env.Stderr, "mailtls policy promote: --max-age must be between 0 and 31557600 seconds (RFC 8461 §3.2)")
		return ExitUsage
	}

	res, fetcher, dialer, err := c.nc.tools(env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls policy %s: %v\n", cmd, err)
		return ExitUsage
	}
	s := &scan.Scanner{Resolver: res, Fetcher: fetcher, Dialer: dialer, Now: env.Now}
	var prober *smtpprobe.Prober
	if cmd == "promote" || cmd == "plan" {
		prober = &smtpprobe.Prober{Dialer: dialer, Roots: fetcher.Roots, Now: env.Now, EHLO: c.ehlo,
			ConnectTimeout: c.smtpWait, BannerTimeout: c.smtpWait, CommandTimeout: c.smtpWait, HandshakeTimeout: c.smtpWait}
		s.Prober = prober
	}
	dctx, cancel := context.WithTimeout(ctx, c.nc.timeout)
	defer cancel()
	obs := s.Scan(dctx, name)
	now := env.Now()
	r := check.Evaluate(obs, now)

	var out *rollout.Output
	switch cmd {
	case "init":
		var mx []string
		for _, m := range r.MX {
			mx = append(mx, m.Host)
		}
		if a := obs.DNS.MX; a == nil || a.Status.Temporary() {
			fmt.Fprintf(env.Stderr, "mailtls policy init: could not look up the MX records of %s (%s); retry\n", name, r.StatusReason)
			return ExitUsage
		}
		var existing []string
		if r.TLSRPT != nil {
			existing = r.TLSRPT.Usable
		}
		out, err = rollout.Init(name, mx, rollout.InitOptions{RUA: c.rua, ExistingRUA: existing, HostAddrs: c.hostAddrs, HostCNAME: c.hostCNAME, Now: now, CurrentID: r.PolicyID})
	case "promote":
		out = rollout.Promote(r, rollout.PromoteOptions{MaxAge: c.maxAge, Force: c.force, Now: now})
	case "retire":
		out = rollout.Retire(r, rollout.RetireOptions{PreviousMaxAge: previous, Now: now})
	case "plan":
		probes := map[string][]*smtpprobe.Result{}
		for _, h := range c.add {
			for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
				for _, ip := range res.Lookup(dctx, h, qt).Addrs() {
					probes[h] = append(probes[h], prober.Probe(dctx, h, ip))
				}
			}
			if _, ok := dialer.HostOverride(h, 25); ok && len(probes[h]) == 0 {
				probes[h] = append(probes[h], prober.Probe(dctx, h, netip.IPv4Unspecified()))
			}
		}
		out, err = rollout.Plan(r, rollout.PlanOptions{Add: c.add, Remove: c.remove, Probes: probes, Now: now})
	}
	if err != nil {
		msg := err.Error()
		var refused *rollout.RefusedError
		if errors.As(err, &refused) {
			msg = refused.Reason
		}
		fmt.Fprintf(env.Stderr, "mailtls policy %s: %s\n", cmd, msg)
		return ExitUsage
	}
	if err := writeOutput(env.Stdout, out, c.format, now); err != nil {
		fmt.Fprintf(env.Stderr, "mailtls policy %s: %v\n", cmd, err)
		return ExitUsage
	}
	if out.Refused {
		return ExitFindings
	}
	return ExitOK
}

// parseSeconds reads seconds ("604800") or a duration ("168h").
func parseSeconds(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is neither seconds nor a duration such as 720h", s)
	}
	return int64(d / time.Second), nil
}

func writeOutput(w io.Writer, out *rollout.Output, format string, now time.Time) error {
	switch format {
	case "json":
		return report.WriteRolloutJSON(w, out)
	case "octodns":
		return report.WriteRolloutOctoDNS(w, out, now)
	}
	return report.WriteRolloutZone(w, out, now)
}

func runLint(ctx context.Context, args []string, env Env) int {
	fs := flag.NewFlagSet("mailtls policy lint", flag.ContinueOnError)
	var (
		nc       netConfig
		dom      string
		servedAs string
		format   string
		jsonOut  bool
	)
	nc.register(fs)
	fs.StringVar(&dom, "domain", "", "check MX coverage against this `DOMAIN`'s live MX set and compare with its published policy")
	fs.StringVar(&servedAs, "served-as", "", "the `CONTENT-TYPE` the file will be served with (default text/plain; charset=utf-8)")
	fs.StringVar(&format, "format", "text", "output `format`: text or json")
	fs.BoolVar(&jsonOut, "json", false, "same as --format json")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailtls policy lint [flags] FILE\n\nChecks a draft mta-sts.txt (FILE - reads stdin) with the rules of mailtls check.\nExit status: 0 without errors, 1 with errors, 2 when it could not run.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	pos, code, ok := parseInterleaved(fs, args, env)
	if !ok {
		return code
	}
	if jsonOut {
		format = "json"
	}
	if len(pos) != 1 || format != "text" && format != "json" {
		fmt.Fprintln(env.Stderr, "mailtls policy lint: name one FILE (or - for stdin); --format is text or json")
		return ExitUsage
	}
	var in io.Reader = env.Stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls policy lint: %v\n", err)
			return ExitUsage
		}
		defer f.Close()
		in = f
	}
	// Read one byte more than a policy may have, to tell "too large".
	draft, err := io.ReadAll(io.LimitReader(in, 1<<20))
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls policy lint: %v\n", err)
		return ExitUsage
	}
	o := check.LintOptions{ServedAs: servedAs, Now: env.Now()}
	if dom != "" {
		name, _, err := domain.Parse(dom)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls policy lint: --domain: %v\n", err)
			return ExitUsage
		}
		res, fetcher, dialer, err := nc.tools(env)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls policy lint: %v\n", err)
			return ExitUsage
		}
		dctx, cancel := context.WithTimeout(ctx, nc.timeout)
		defer cancel()
		o.Live = (&scan.Scanner{Resolver: res, Fetcher: fetcher, Dialer: dialer, Now: env.Now}).Scan(dctx, name)
	}
	r := check.Lint(draft, o)
	if format == "json" {
		err = report.WriteJSON(env.Stdout, report.NewLintDocument(r))
	} else {
		err = report.WriteLintText(env.Stdout, r, report.TextOptions{Color: env.Getenv("NO_COLOR") == "" && env.IsTerminal(env.Stdout)})
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls policy lint: %v\n", err)
		return ExitUsage
	}
	if finding.Worst(r.Findings) == finding.Error {
		return ExitFindings
	}
	return ExitOK
}
