package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/daemon"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
)

const serveUsage = `Usage: mailtls serve [--config FILE] [--roles ROLE,...]
       mailtls serve records [--config FILE] [--json] [--no-check] [--resolver HOST:PORT]...

serve runs the long-lived roles named in the configuration file
(docs/config.md): the MTA-STS policy host (host:) serves
https://mta-sts.<domain>/.well-known/mta-sts.txt for every configured domain
with certificates from ACME or from files; the web checker (web:) scans
domains in the browser and through a JSON API (docs/api.md). Without
--config it runs on the defaults: the web checker on http://127.0.0.1:8080
and the admin listener (/healthz and /metrics on 127.0.0.1:9470).

--roles runs only the named roles of the configuration: host, resolver,
web, worker (the rescans and alerts of saved domains; by default it runs
beside web), reports and admin. Several instances sharing one store can so
split the work (docs/scaling.md); a named role the file does not set up is
an error.

SIGHUP, or saving a changed configuration file, reloads it without dropping
connections; a bad file is rejected with the reason and the previous
configuration keeps serving. SIGTERM or SIGINT stops gracefully. Exit
status: 0 after a clean stop, 1 when serving failed (a listener could not
open), 2 on a usage or configuration error.

serve records prints the DNS records each hosted domain must publish: the
_mta-sts TXT record with the id of the policy the server serves, and the
CNAME (host.public_name) or A/AAAA records (host.public_addresses) of its
policy host. Unless --no-check, it looks them up and says which are missing
or stale. With store: set, the ids and MX sets are read from the store,
where every host instance on it shares them. Exit status: 0 when every
domain is published and current, 1 when one needs attention, 2 on a usage
or configuration error (or a store that cannot be opened).

Flags:
`

func runServe(ctx context.Context, args []string, env Env) int {
	if len(args) > 0 && args[0] == "records" {
		return runServeRecords(ctx, args[1:], env)
	}
	fs := flag.NewFlagSet("mailtls serve", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), serveUsage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "the configuration `FILE` (docs/config.md); default: built-in defaults")
	var roles []string
	fs.Func("roles", "run only these `ROLES` (comma-separated: "+strings.Join(daemon.RoleNames(), ", ")+"); default: every configured role", func(v string) error {
		roles = []string{}
		for _, r := range strings.Split(v, ",") {
			if r = strings.TrimSpace(r); r != "" {
				roles = append(roles, r)
			}
		}
		return nil
	})
	if ok, code := parseFlags(fs, args, env); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "mailtls serve: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	// SIGHUP becomes a reload request (several in a row are one); the
	// forwarder ends with serve.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	fwdCtx, stopFwd := context.WithCancel(ctx)
	var fwd sync.WaitGroup
	fwd.Add(1)
	go func() {
		defer fwd.Done()
		for {
			select {
			case <-fwdCtx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}
	}()
	defer func() { stopFwd(); fwd.Wait() }()
	err := daemon.Run(ctx, daemon.Options{ConfigPath: *cfgPath, Roles: roles, Stderr: env.Stderr, Now: env.Now, Reload: reload, ResolvConf: env.ResolvConf, Getenv: env.Getenv})
	if err != nil {
		fmt.Fprintln(env.Stderr, "mailtls serve:", err)
		if errors.As(err, new(*daemon.ConfigError)) {
			return ExitUsage
		}
		return ExitFindings
	}
	return ExitOK
}

func runServeRecords(ctx context.Context, args []string, env Env) int {
	fs := flag.NewFlagSet("mailtls serve records", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), serveUsage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "the configuration `FILE` (required)")
	asJSON := fs.Bool("json", false, "print JSON instead of zone-file lines")
	noCheck := fs.Bool("no-check", false, "do not look the records up in DNS")
	var resolvers multiFlag
	fs.Var(&resolvers, "resolver", "DNS server `HOST:PORT` to check with (repeatable; default: host.resolvers, then /etc/resolv.conf)")
	if ok, code := parseFlags(fs, args, env); !ok {
		return code
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(env.Stderr, "mailtls serve records: give the configuration with --config FILE and no other argument")
		return ExitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(env.Stderr, "mailtls serve records:", err)
		return ExitUsage
	}
	if cfg.Host == nil {
		fmt.Fprintf(env.Stderr, "mailtls serve records: %s has no host: section, so it hosts no policies\n", *cfgPath)
		return ExitUsage
	}
	var res daemon.Resolver
	if !*noCheck {
		servers := []string(resolvers)
		if len(servers) == 0 {
			servers = cfg.Host.Resolvers
		}
		if len(servers) == 0 {
			if servers, err = resolve.SystemServers(env.ResolvConf); err != nil {
				fmt.Fprintf(env.Stderr, "mailtls serve records: no usable resolver: %v (name one with --resolver, or use --no-check)\n", err)
				return ExitUsage
			}
		}
		for i, s := range servers {
			if servers[i], err = normResolver(s); err != nil {
				fmt.Fprintf(env.Stderr, "mailtls serve records: resolver %q: %v\n", s, err)
				return ExitUsage
			}
		}
		res = &resolve.Client{Servers: servers}
	}
	var st store.HostPolicies
	if daemon.SharedHostState(cfg) {
		// The ids every host instance shares (docs/scaling.md).
		db, err := openStoreAt(ctx, cfg.Store, env)
		if err != nil {
			fmt.Fprintln(env.Stderr, "mailtls serve records: store", err)
			return ExitUsage
		}
		defer db.Close()
		st = db
	}
	recs, err := daemon.Records(ctx, cfg.Host, st, res)
	if err != nil {
		fmt.Fprintln(env.Stderr, "mailtls serve records:", err)
		return ExitUsage
	}
	attention := 0
	for _, r := range recs {
		if !r.OK() {
			attention++
		}
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"domains": recs, "checked": res != nil}); err != nil {
			return ExitFindings
		}
	} else {
		writeRecords(env, recs, res != nil)
	}
	if attention > 0 {
		fmt.Fprintf(env.Stderr, "mailtls serve records: %d of %d domains need attention\n", attention, len(recs))
		return ExitFindings
	}
	return ExitOK
}

// writeRecords prints zone-file lines, with what is wrong as comments, so
// that the output can be pasted into a zone as it is.
func writeRecords(env Env, recs []*daemon.DomainRecords, checked bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "; Records for the %d domains hosted by this server (generated by mailtls %s).\n", len(recs), version())
	if !checked {
		b.WriteString("; Not checked against DNS (--no-check).\n")
	}
	for _, r := range recs {
		b.WriteString(";\n")
		switch {
		case r.Pending != "":
			fmt.Fprintf(&b, "; %s (mode %s): no id yet: %s\n", r.Domain, r.Mode, r.Pending)
		default:
			fmt.Fprintf(&b, "; %s (mode %s), served policy id %s\n", r.Domain, r.Mode, r.ID)
		}
		for _, rec := range r.Records {
			b.WriteString(report.ZoneRecord(rec))
		}
		if len(r.Records) == 1 && r.ID != "" {
			fmt.Fprintf(&b, "; and point mta-sts.%s at this server (set host.public_name or host.public_addresses to print that record)\n", r.Domain)
		}
		for _, f := range r.Findings {
			if f.Severity >= finding.Warning {
				fmt.Fprintf(&b, "; %s [%s]: %s\n", strings.ToUpper(f.Severity.String()), f.ID, f.Message)
			}
		}
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "; PROBLEM: %s\n", p)
		}
		for _, u := range r.Unknown {
			fmt.Fprintf(&b, "; UNKNOWN: %s\n", u)
		}
		if checked && r.OK() {
			fmt.Fprintf(&b, "; ok: DNS publishes id=%s\n", r.PublishedID)
		}
	}
	fmt.Fprint(env.Stdout, b.String())
}
