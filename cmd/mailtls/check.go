package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/bulk"
	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

const checkUsage = `Usage: mailtls check [flags] DOMAIN...
       mailtls check -f FILE [-o OUT [--resume]] [--format json|csv] [flags]

Scans each domain's MTA-STS record, policy host and policy, MX coverage,
STARTTLS and certificates on every address of every MX host, DANE (TLSA with
DNSSEC) and TLS-RPT record, and prints a grade, every problem in plain words and the exact
records and policy file that fix them. A domain may be given as
"Example.COM.", "bücher.example", "https://example.com/" or "user@example.com".

Exit status: 0 when no finding has severity error, 1 when at least one does,
2 when mailtls could not run (bad flag, unusable resolver, invalid domain),
3 when a domain's policy could not be determined (DNS failed or no resolver
answered; retry). With several domains the first of 2, 1, 3, 0 that applies
wins.

With -f, the domains come from FILE ("-" for standard input), one per line
or as "rank,domain"; blank lines and # comments are skipped, invalid lines
reported and skipped, duplicates scanned once. Records (JSON Lines, or CSV)
come out in the order the scans finish; DNS answers, policy fetches and SMTP
probes are shared across the run, connections to each address are spaced
out, and --resume continues a run that was stopped. See "Scan many domains"
in the README. The exit status is that of the records this run wrote; 2 also
when the run was interrupted or could not write its output.

Flags:
`

// netConfig is what the network-facing commands share: where to ask DNS,
// which roots to trust, where connections really go, and the budget.
type netConfig struct {
	resolvers multiFlag
	trustAD   multiFlag
	caFile    string
	connectTo multiFlag
	timeout   time.Duration
}

func (c *netConfig) register(fs *flag.FlagSet) {
	fs.Var(&c.resolvers, "resolver", "DNS server `HOST:PORT` to ask (repeatable; default: the servers in /etc/resolv.conf)")
	fs.StringVar(&c.caFile, "ca-file", "", "trust the PEM root certificates in `FILE` instead of the system roots")
	fs.Var(&c.connectTo, "connect-to", "connect to ADDR:PORT whenever the scan would connect to HOST:PORT, keeping HOST for SNI and certificate checks (`HOST:PORT:ADDR:PORT`, repeatable; HOST may also be an IP address)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "the whole time budget for one domain")
	fs.Var(&c.trustAD, "trust-ad", "believe the DNSSEC AD bit from the resolver `HOST:PORT` although it is not on loopback (repeatable; only for a validating resolver on a trusted path)")
}

// tools builds the resolver, fetcher and dialer from the flags.
func (c *netConfig) tools(env Env) (*resolve.Client, *fetch.Fetcher, *dial.Dialer, error) {
	servers := []string(c.resolvers)
	if len(servers) == 0 {
		s, err := resolve.SystemServers(env.ResolvConf)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("no usable resolver: %v (name one with --resolver HOST:PORT)", err)
		}
		servers = s
	}
	for i, s := range servers {
		norm, err := normResolver(s)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--resolver %q: %w", s, err)
		}
		servers[i] = norm
	}
	d := &dial.Dialer{}
	for _, r := range c.connectTo {
		rule, err := dial.ParseRule(r)
		if err != nil {
			var re *dial.RuleError
			if errors.As(err, &re) {
				return nil, nil, nil, fmt.Errorf("--connect-to %q: %s", re.Rule, re.Reason)
			}
			return nil, nil, nil, fmt.Errorf("--connect-to: %w", err)
		}
		d.Rules = append(d.Rules, rule)
	}
	var roots *x509.CertPool
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--ca-file: %v", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, nil, nil, fmt.Errorf("--ca-file %s: no PEM certificates in it", c.caFile)
		}
	}
	if c.timeout <= 0 {
		return nil, nil, nil, fmt.Errorf("--timeout must be positive")
	}
	trusted := map[string]bool{}
	for _, s := range c.trustAD {
		norm, err := normResolver(s)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--trust-ad %q: %w", s, err)
		}
		trusted[norm] = true
	}
	res := &resolve.Client{Servers: servers, TrustAD: func(server string) bool { return trusted[server] || resolve.IsLoopbackServer(server) }}
	f := &fetch.Fetcher{Dialer: d, Roots: roots, Now: env.Now, UserAgent: "mailtls/" + version()}
	return res, f, d, nil
}

// errNotResolver: a --resolver or --trust-ad value is not a server address.
var errNotResolver = errors.New("want an address such as 127.0.0.1:53 or [::1]:53")

// normResolver checks a --resolver value and adds port 53 when missing.
func normResolver(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || port == "" || domain.CheckHostname(strings.TrimSuffix(host, ".")) != nil {
		return "", errNotResolver
	}
	return s, nil
}

func runCheck(ctx context.Context, args []string, env Env) int {
	fs := flag.NewFlagSet("mailtls check", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), checkUsage); fs.PrintDefaults() }
	var (
		nc       netConfig
		jsonOut  bool
		format   string
		color    string
		parallel int
		noSMTP   bool
		smtpWait time.Duration
		ehlo     string
		maxMX    int
		cpuProf  string
		bf       bulkFlags
	)
	nc.register(fs)
	bf.register(fs)
	fs.BoolVar(&jsonOut, "json", false, "print one JSON document per domain (JSON Lines); same as --format json")
	fs.StringVar(&format, "format", "", "output `format`: text, json or csv (default text, json with -f)")
	fs.StringVar(&color, "color", "auto", "colour the text report: auto (on a terminal, unless NO_COLOR is set), always or never")
	fs.IntVar(&parallel, "parallel", 4, "scan up to `N` domains at once (output stays in input order; with -f the default is 50 and records come in completion order)")
	fs.BoolVar(&noSMTP, "no-smtp", false, "skip the SMTP probes of the MX hosts (DNS and HTTPS only)")
	fs.DurationVar(&smtpWait, "smtp-timeout", 0, "time limit for each SMTP phase (connect, banner, command, TLS handshake); default 10s each, 20s for the banner")
	fs.IntVar(&maxMX, "max-mx", scan.DefaultMaxMX, "look up and probe the `N` most preferred MX hosts; every MX host is still matched against the policy")
	fs.StringVar(&ehlo, "ehlo", "", "the `NAME` to send in EHLO (default: the address literal of the local end, e.g. [192.0.2.1])")
	fs.StringVar(&cpuProf, "cpuprofile", "", "write a CPU profile of the run to `FILE` (for go tool pprof)")
	inputs, code, ok := parseInterleaved(fs, args, env)
	if !ok {
		return code
	}
	if cpuProf != "" {
		stop, err := startCPUProfile(cpuProf)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls check: --cpuprofile: %v\n", err)
			return ExitUsage
		}
		defer func() {
			if err := stop(); err != nil {
				fmt.Fprintf(env.Stderr, "mailtls check: --cpuprofile: %v\n", err)
			}
		}()
	}
	if jsonOut {
		format = "json"
	}
	if format == "" {
		format = "text"
		if bf.file != "" {
			format = "json"
		}
	}
	if format != "text" && format != "json" && format != "csv" {
		fmt.Fprintf(env.Stderr, "mailtls check: --format must be text, json or csv, not %q\n", format)
		return ExitUsage
	}
	if color != "auto" && color != "always" && color != "never" {
		fmt.Fprintf(env.Stderr, "mailtls check: --color must be auto, always or never, not %q\n", color)
		return ExitUsage
	}
	if bf.file != "" || bf.used(fs) {
		if len(inputs) > 0 {
			fmt.Fprintln(env.Stderr, "mailtls check: give the domains either on the command line or with -f, not both")
			return ExitUsage
		}
		if bf.file == "" {
			fmt.Fprintf(env.Stderr, "mailtls check: %s needs -f FILE (the list of domains)\n", bf.firstUsed(fs))
			return ExitUsage
		}
		if !flagSet(fs, "parallel") {
			parallel = bulk.DefaultParallel
		}
		opts := scanOptions{nc: nc, noSMTP: noSMTP, smtpWait: smtpWait, ehlo: ehlo, maxMX: maxMX}
		return runBulk(ctx, env, opts, bf, format, parallel)
	}
	if len(inputs) == 0 {
		fmt.Fprintln(env.Stderr, "mailtls check: name at least one domain")
		fs.Usage()
		return ExitUsage
	}
	type job struct {
		input, name string
		notes       []string
	}
	var jobs []job
	bad := false
	for _, in := range inputs {
		name, notes, err := domain.Parse(in)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls check: %v\n", err)
			bad = true
			continue
		}
		jobs = append(jobs, job{in, name, notes})
	}
	if bad {
		return ExitUsage
	}
	opts := scanOptions{nc: nc, noSMTP: noSMTP, smtpWait: smtpWait, ehlo: ehlo, maxMX: maxMX}
	scanner, _, err := opts.build(env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls check: %v\n", err)
		return ExitUsage
	}
	useColor := color == "always" || color == "auto" && env.Getenv("NO_COLOR") == "" && env.IsTerminal(env.Stdout)

	// Scan in parallel, print in input order as soon as possible.
	results := make([]chan *check.Report, len(jobs))
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i, j := range jobs {
		results[i] = make(chan *check.Report, 1)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, nc.timeout)
			defer cancel()
			o := scanner.Scan(dctx, j.name)
			r := check.Evaluate(o, env.Now())
			r.Notes = j.notes
			results[i] <- r
		})
	}
	exit, undetermined := ExitOK, false
	for i, j := range jobs {
		r := <-results[i]
		var err error
		if format == "json" {
			err = report.WriteJSON(env.Stdout, report.NewDocument(r, j.input))
		} else if format == "csv" {
			if i == 0 {
				_, err = env.Stdout.Write(bulk.EncodeCSVHeader())
			}
			if err == nil {
				_, err = env.Stdout.Write(bulk.EncodeCSV(bulk.NewFacts(r), r.Domain, 0))
			}
		} else {
			if i > 0 {
				fmt.Fprintln(env.Stdout)
			}
			err = report.WriteText(env.Stdout, r, report.TextOptions{Color: useColor})
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls check: writing the report: %v\n", err)
			exit = ExitUsage
		}
		if finding.Worst(r.Findings) == finding.Error && exit == ExitOK {
			exit = ExitFindings
		}
		undetermined = undetermined || r.Status == check.StatusUndetermined
	}
	wg.Wait()
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		fmt.Fprintln(env.Stderr, "mailtls check: interrupted")
		return ExitUsage
	}
	if exit == ExitOK && undetermined {
		return ExitUndetermined
	}
	return exit
}

// scanOptions are the check flags that shape a scan.
type scanOptions struct {
	nc       netConfig
	noSMTP   bool
	smtpWait time.Duration
	ehlo     string
	maxMX    int
}

// build checks the options and returns the scanner and its DNS client.
func (o scanOptions) build(env Env) (*scan.Scanner, *resolve.Client, error) {
	res, fetcher, dialer, err := o.nc.tools(env)
	if err != nil {
		return nil, nil, err
	}
	if o.ehlo != "" && domain.CheckHostname(strings.TrimSuffix(o.ehlo, ".")) != nil && !strings.HasPrefix(o.ehlo, "[") {
		return nil, nil, fmt.Errorf("--ehlo %q is not a host name or address literal", o.ehlo)
	}
	if o.smtpWait < 0 {
		return nil, nil, errors.New("--smtp-timeout must be positive")
	}
	if o.maxMX < 1 {
		return nil, nil, errors.New("--max-mx must be at least 1")
	}
	scanner := &scan.Scanner{Resolver: res, Fetcher: fetcher, Dialer: dialer, Now: env.Now, MaxMX: o.maxMX}
	if !o.noSMTP {
		scanner.Prober = &smtpprobe.Prober{Dialer: dialer, Roots: fetcher.Roots, Now: env.Now, EHLO: o.ehlo,
			ConnectTimeout: o.smtpWait, BannerTimeout: o.smtpWait, CommandTimeout: o.smtpWait, HandshakeTimeout: o.smtpWait}
	}
	return scanner, res, nil
}

// startCPUProfile profiles the CPU into path until stop is called.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// flagSet reports whether the flag name was given.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments ("--" ends the flags).
func parseInterleaved(fs *flag.FlagSet, args []string, env Env) (pos []string, code int, ok bool) {
	for {
		if ok, code := parseFlags(fs, args, env); !ok {
			return nil, code, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
