package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolver"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/stscache"
)

const resolveUsage = `Usage: mailtls resolve [flags] DOMAIN
       mailtls resolve --server ADDR [--zone NAME] [--explain] [--json] DOMAIN

resolve prints the TLS policy reply Postfix would get for DOMAIN from the
resolver role of mailtls serve (docs/resolver.md): DANE first (dane-only or
dane when the MX records and TLSA records are DNSSEC-signed), then MTA-STS
(secure match=... for an enforce policy), NOTFOUND when neither applies, and
TEMP when a DNSSEC lookup failed so that Postfix must defer. DOMAIN may be
written as Postfix sends it ("[relay.example]:587", "Example.COM.").

Without --server it looks DOMAIN up once, here, with the same code the
daemon runs and an empty cache. With --server it asks a running daemon
through its admin listener (ADDR, e.g. 127.0.0.1:9470), so the answer comes
from the daemon's cache, and shows that cache entry.

--explain says why: the TXT record, each policy fetch, the policy, the cache
state, the DANE state of every MX host and the rule that decided. --json
prints all of it as JSON.

Exit status: 0 when a reply was given (NOTFOUND included), 3 for TEMP (the
answer could not be determined now), 2 on a usage error or when the server
could not be asked.

Flags:
`

func runResolve(ctx context.Context, args []string, env Env) int {
	fs := flag.NewFlagSet("mailtls resolve", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), resolveUsage); fs.PrintDefaults() }
	var (
		nc                 netConfig
		explain, asJSON    bool
		server, zoneName   string
		strict, noSNI, rpt bool
		deferOnSTSFailure  bool
	)
	nc.register(fs)
	fs.BoolVar(&explain, "explain", false, "say why: records, fetches, policy, cache, DANE, the deciding rule")
	fs.BoolVar(&asJSON, "json", false, "print the reply and the explanation as JSON")
	fs.StringVar(&server, "server", "", "ask the running daemon whose admin listener is `ADDR` (host:port)")
	fs.StringVar(&zoneName, "zone", "", "with --server: the socketmap `NAME` whose zone settings apply")
	fs.BoolVar(&strict, "strict-testing", false, "apply testing policies as enforce (a zone's strict_testing)")
	fs.BoolVar(&noSNI, "no-sni", false, "leave out servername=hostname (a zone's require_sni: false)")
	fs.BoolVar(&rpt, "tlsrpt", false, "add the Postfix 3.10 TLSRPT attributes (a zone's tlsrpt)")
	fs.BoolVar(&deferOnSTSFailure, "defer-on-sts-failure", false, "answer TEMP when the MTA-STS lookup fails with nothing cached")
	if ok, code := parseFlags(fs, args, env); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(env.Stderr, "mailtls resolve: give exactly one DOMAIN")
		return ExitUsage
	}
	key := fs.Arg(0)
	var x *resolver.Explanation
	if server != "" {
		var err error
		if x, err = askServer(ctx, server, key, zoneName, nc.timeout); err != nil {
			fmt.Fprintln(env.Stderr, "mailtls resolve:", err)
			return ExitUsage
		}
	} else {
		dnsClient, fetcher, dialer, err := nc.tools(env)
		if err != nil {
			fmt.Fprintln(env.Stderr, "mailtls resolve:", err)
			return ExitUsage
		}
		fetcher.AcceptEncodings = []string{} // ask as a sender does: no content coding
		cache, _ := stscache.Open(stscache.Options{Now: env.Now})
		r := resolver.New(resolver.Options{DNS: dnsClient, Fetcher: fetcher, Dialer: dialer, Cache: cache, Now: env.Now,
			LookupTimeout: nc.timeout, DiscoveryTimeout: nc.timeout})
		defer r.Close()
		zone := sendpolicy.Zone{StrictTesting: strict, RequireSNI: !noSNI, TLSRPT: rpt, DeferOnSTSFailure: deferOnSTSFailure}
		d, res := r.Decide(ctx, key, zone)
		x = resolver.Explain(key, zone, d, res, cache.Peek(d.Domain), env.Now())
	}
	switch {
	case asJSON:
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(x)
	case explain:
		printExplanation(env.Stdout, x, server != "")
	default:
		fmt.Fprintln(env.Stdout, x.Reply)
	}
	if strings.HasPrefix(x.Reply, "TEMP") {
		return ExitUndetermined
	}
	return ExitOK
}

// askServer gets the explanation from a daemon's admin listener.
func askServer(ctx context.Context, addr, key, zone string, timeout time.Duration) (*resolver.Explanation, error) {
	u := url.URL{Scheme: "http", Host: addr, Path: "/resolver/explain/" + key}
	if zone != "" {
		u.RawQuery = url.Values{"zone": {zone}}.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: %s (is the resolver role on?)", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	var x resolver.Explanation
	if err := json.Unmarshal(body, &x); err != nil {
		return nil, fmt.Errorf("the answer of %s is not an explanation: %w", addr, err)
	}
	return &x, nil
}

// printExplanation writes the explanation for people.
func printExplanation(w io.Writer, x *resolver.Explanation, daemon bool) {
	p := func(label, format string, args ...any) {
		fmt.Fprintf(w, "  %-9s %s\n", label, fmt.Sprintf(format, args...))
	}
	name := x.Domain
	if name == "" {
		name = x.Key
	}
	fmt.Fprintln(w, name)
	p("reply", "%s", x.Reply)
	p("rule", "%s: %s", x.Decision.Rule, x.Reason)
	if x.Domain == "" {
		return
	}
	if d := x.Discovery; d != nil {
		txt := "no answer"
		if d.TXT != nil {
			txt = fmt.Sprintf("%s TXT: %s %q", d.TXT.Name, d.TXT.Status, d.TXT.TXT())
		}
		p("record", "%s (%s)", d.RecordDetail, txt)
		switch {
		case d.IDUnchanged:
			p("fetch", "none: the cached policy has this id (RFC 8461 §3.3)")
		case d.RetryLater:
			p("fetch", "none: %s", d.FailDetail)
		}
		for _, f := range d.Fetches {
			outcome := "ok"
			if f.Failure != "" {
				outcome = string(f.Failure)
			}
			p("fetch", "https://mta-sts.%s/.well-known/mta-sts.txt from %s: %s (%s, %.0f ms)", x.Domain, f.Address, outcome, f.Detail, f.MS)
		}
		if len(d.Fetches) == 0 && d.Failure != "" && !d.RetryLater {
			p("fetch", "%s: %s", d.Failure, d.FailDetail)
		}
	}
	if e := x.Entry; e != nil {
		if e.Policy != nil {
			state := "in force"
			if !e.InForce {
				state = "expired"
			}
			p("policy", "id %s, %s, %s until %s", e.PolicyID, describePolicy(e.Policy), state, timeOf(e.Expires))
		}
		p("cache", "%s; last check %s: %s %s", cacheWord(x.Cache, daemon), timeOf(e.LastAt), e.LastOutcome, e.LastDetail)
		if e.NextCheck != nil {
			p("", "next check when asked after %s; background refetch at %s", timeOf(e.NextCheck), timeOf(e.RefreshAt))
		}
	}
	if e := x.Entry; e != nil && e.DANE != nil {
		p("DANE", "%s: %s (%s)", e.DANE.State, e.DANE.Reason, x.DANECache)
		for _, h := range e.DANE.Hosts {
			p("", "%s: %s %s", h.Host, h.State, h.Detail)
		}
	}
}

func describePolicy(pol *mtasts.Policy) string {
	s := fmt.Sprintf("mode %s, max_age %d", pol.Mode, pol.MaxAge)
	if len(pol.MX) > 0 {
		s += ", mx " + strings.Join(pol.MX, " ")
	}
	return s
}

func cacheWord(c string, daemon bool) string {
	switch c {
	case "hit":
		return "answered from the cache"
	case "refreshing":
		return "answered from the cache; a check runs in the background"
	case "pending":
		return "the lookup did not finish in time; it goes on in the background"
	}
	if daemon {
		return "looked up now and cached"
	}
	return "looked up now (a one-off lookup keeps no cache)"
}

func timeOf(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}
