package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/lab"
)

// The peer reads its DNS server from resolv.conf (port 53, no port
// syntax) and fetches policies from port 443: the test binds both ports on
// a random loopback address of its own (lab.NewDNSWellKnown, then serve on
// port 443 of the same address), so that it may run beside other tests and
// other runs.
const (
	peerQuery     = "/usr/bin/mta-sts-query"
	peerQueryWait = 20 * time.Second
)

// skipOrFail skips the test, except under CI (env CI set) where a missing
// prerequisite means a broken machine setup and must not pass silently.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set, so not skipping: "+format, args...)
	}
	t.Skipf(format, args...)
}

// peerResult is what mta-sts-query printed.
type peerResult struct {
	Status string // VALID, NONE, FETCH_ERROR, NOT_CHANGED
	ID     string
	Mode   string
	MX     []string // sorted
	MaxAge int
	Raw    string // stdout and stderr, for messages
}

var (
	// (<STSFetchResult.VALID: 1>, ('ID', {...}))  or  (<STSFetchResult.NONE: 0>, None)
	peerOutRe = regexp.MustCompile(`^\(<STSFetchResult\.([A-Z_]+): \d+>, (?:None|\('([^'\\]*)', \{(.*)\}\))\)$`)
	// One entry of the policy dict: a string, an int or a list of strings.
	peerEntryRe = regexp.MustCompile(`'(\w+)': ('[^'\\]*'|\d+|\[(?:'[^'\\]*'(?:, '[^'\\]*')*)?\])(?:, |$)`)
)

// peerQueryRun runs mta-sts-query DOMAIN [KNOWN_ID] in the lab's namespace.
func peerQueryRun(t *testing.T, ns *lab.Namespace, domain string, knownID ...string) peerResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerQueryWait)
	defer cancel()
	var stdout, stderr strings.Builder
	cmd := ns.Command(ctx, append([]string{peerQuery, domain}, knownID...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mta-sts-query %s: %v\n%s%s", domain, err, stdout.String(), stderr.String())
	}
	r, err := parsePeerOutput(strings.TrimSpace(stdout.String()))
	r.Raw = strings.TrimSpace(stdout.String() + "\n" + stderr.String())
	if err != nil {
		t.Fatalf("mta-sts-query %s: %v\n%s", domain, err, r.Raw)
	}
	return r
}

// parsePeerOutput parses the Python repr that mta-sts-query prints. Every
// part of the policy dict must be understood, so that a key added or
// changed by the peer shows up as a failure rather than going unchecked.
func parsePeerOutput(out string) (peerResult, error) {
	m := peerOutRe.FindStringSubmatch(out)
	if m == nil {
		return peerResult{}, fmt.Errorf("unexpected output %q", out)
	}
	r := peerResult{Status: m[1], ID: m[2], MaxAge: -1}
	if (m[1] == "VALID") != (m[3] != "" || m[2] != "") {
		return r, fmt.Errorf("status %s with policy %q", m[1], m[3])
	}
	dict := m[3]
	seen := map[string]bool{}
	for len(dict) > 0 {
		e := peerEntryRe.FindStringSubmatchIndex(dict)
		if e == nil || e[0] != 0 {
			return r, fmt.Errorf("cannot parse policy dict at %q", dict)
		}
		key, val := dict[e[2]:e[3]], dict[e[4]:e[5]]
		dict = dict[e[1]:]
		seen[key] = true
		switch key {
		case "version":
			if val != "'STSv1'" {
				return r, fmt.Errorf("version %s", val)
			}
		case "mode":
			r.Mode = strings.Trim(val, "'")
		case "max_age":
			n, err := strconv.Atoi(val)
			if err != nil {
				return r, fmt.Errorf("max_age %s", val)
			}
			r.MaxAge = n
		case "mx":
			r.MX = []string{}
			if inner := strings.Trim(val, "[]"); inner != "" {
				for _, s := range strings.Split(inner, ", ") {
					r.MX = append(r.MX, strings.Trim(s, "'"))
				}
			}
			slices.Sort(r.MX)
		default:
			return r, fmt.Errorf("unexpected policy key %q", key)
		}
	}
	if r.Status == "VALID" && !(seen["version"] && seen["mode"] && seen["max_age"] && seen["mx"]) {
		return r, fmt.Errorf("policy lacks a key: %v", seen)
	}
	return r, nil
}

func TestParsePeerOutput(t *testing.T) {
	for _, c := range []struct {
		in   string
		want peerResult
		bad  bool
	}{
		{in: `(<STSFetchResult.VALID: 1>, ('base1', {'mx': ['mx.example.test', '*.example.test'], 'version': 'STSv1', 'mode': 'enforce', 'max_age': 86400}))`,
			want: peerResult{Status: "VALID", ID: "base1", Mode: "enforce", MX: []string{"*.example.test", "mx.example.test"}, MaxAge: 86400}},
		{in: `(<STSFetchResult.VALID: 1>, ('x', {'mx': [], 'version': 'STSv1', 'mode': 'none', 'max_age': 0}))`,
			want: peerResult{Status: "VALID", ID: "x", Mode: "none", MX: []string{}, MaxAge: 0}},
		{in: `(<STSFetchResult.NOT_CHANGED: 3>, None)`, want: peerResult{Status: "NOT_CHANGED", MaxAge: -1}},
		{in: `(<STSFetchResult.FETCH_ERROR: 2>, None)`, want: peerResult{Status: "FETCH_ERROR", MaxAge: -1}},
		{in: `(<STSFetchResult.VALID: 1>, ('x', {'mx': ['a'], 'version': 'STSv1', 'mode': 'enforce', 'max_age': 1, 'extra': 'y'}))`, bad: true},
		{in: `(<STSFetchResult.VALID: 1>, ('x', {'mx': ['a'], 'version': 'STSv1', 'mode': 'enforce'}))`, bad: true},
		{in: `(<STSFetchResult.VALID: 1>, ('x', {'mx': ['a'], 'version': 'STSv2', 'mode': 'enforce', 'max_age': 1}))`, bad: true},
		{in: `(<STSFetchResult.VALID: 1>, None)`, bad: true},
		{in: `Traceback (most recent call last):`, bad: true},
	} {
		got, err := parsePeerOutput(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%s: no error", c.in)
			}
			continue
		}
		if err != nil || got.Status != c.want.Status || got.ID != c.want.ID || got.Mode != c.want.Mode || got.MaxAge != c.want.MaxAge || !slices.Equal(got.MX, c.want.MX) {
			t.Errorf("%s:\n got %+v, %v\nwant %+v", c.in, got, err, c.want)
		}
	}
}

// peerDomain is a domain served by mailtls serve in the peer test.
type peerDomain struct {
	name   string
	mode   string
	mx     []string
	maxAge int // 0: the default, written as no max_age key
	want   int // the max_age the peer must see
}

// peerConfig writes the serve configuration for domains.
func peerConfig(t *testing.T, path, listen, storage string, domains []peerDomain, certs map[string][2]string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "admin: {listen: \"off\"}\nhost:\n  listen_https: [%q]\n  listen_http: []\n  storage: %s\n  acme: {disabled: true}\n  domains:\n",
		listen, storage)
	for _, d := range domains {
		fmt.Fprintf(&b, "    %s:\n      mode: %s\n", d.name, d.mode)
		if len(d.mx) > 0 {
			q := make([]string, len(d.mx))
			for i, mx := range d.mx {
				q[i] = strconv.Quote(mx)
			}
			fmt.Fprintf(&b, "      mx: [%s]\n", strings.Join(q, ", "))
		}
		if d.maxAge > 0 {
			fmt.Fprintf(&b, "      max_age: %d\n", d.maxAge)
		}
		fmt.Fprintf(&b, "      cert: %s\n      key: %s\n", certs[d.name][0], certs[d.name][1])
	}
	// Write and rename: serve also polls the file, and must never read half
	// of it.
	if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// peerIDs returns the policy id of every domain, as serve records says.
func peerIDs(t *testing.T, cfg string) map[string]string {
	t.Helper()
	r := run(t, "serve", "records", "--config", cfg, "--no-check", "--json")
	var out struct {
		Domains []struct{ Domain, ID string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("serve records --json: exit %d: %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	ids := map[string]string{}
	for _, d := range out.Domains {
		if d.ID == "" {
			t.Fatalf("serve records: no id for %s\n%s", d.Domain, r.stdout)
		}
		ids[d.Domain] = d.ID
	}
	return ids
}

// publishID makes _mta-sts.<domain> announce id, replacing the old record.
func publishID(t *testing.T, d *lab.DNS, domain, id string) {
	t.Helper()
	d.Remove("_mta-sts."+domain, dns.TypeTXT)
	d.MustAdd(t, fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=%s"`, domain, id))
}

// TestPeerPostfixMTASTSResolver has an independent MTA-STS client,
// Debian's postfix-mta-sts-resolver, fetch and validate the policies that
// mailtls serve hosts, over real DNS (port 53) and HTTPS (port 443) on
// loopback.
func TestPeerPostfixMTASTSResolver(t *testing.T) {
	if _, err := os.Stat(peerQuery); err != nil {
		skipOrFail(t, "%s is not installed (apt-get install postfix-mta-sts-resolver python3-uvloop): %v", peerQuery, err)
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: binds port 53 and 443 and bind-mounts resolv.conf in a mount namespace")
	}
	for _, tool := range []string{"unshare", "mount", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "%s not found: %v", tool, err)
		}
	}
	t.Parallel()

	dir := t.TempDir()
	ca := lab.MustCA(t, "mailtls peer lab")
	zone := lab.NewDNSWellKnown(t)
	t.Cleanup(func() {
		if n := zone.Panics(); n > 0 {
			t.Errorf("lab dns panicked %d times", n)
		}
	})
	ns := lab.NeedNamespace(t, dir, zone.IP().String(), ca, "the peer")
	// The policy host: port 443 of the DNS server's address, which this
	// test owns (lab.FreeLoopback).
	httpsAddr := lab.AddrPort(zone.IP(), 443)

	domains := []peerDomain{
		{name: "alpha.test", mode: "enforce", mx: []string{"mx1.alpha.test", "*.mail.alpha.test"}, want: 604800},
		{name: "beta.test", mode: "testing", mx: []string{"mx.beta.test"}, maxAge: 3600, want: 3600},
		{name: "gamma.test", mode: "none", want: 86400},
	}
	certs := map[string][2]string{}
	for _, d := range domains {
		c, k := ca.MustWriteLeaf(t, dir, lab.LeafOptions{DNSNames: []string{"mta-sts." + d.name}})
		certs[d.name] = [2]string{c, k}
	}
	cfg := filepath.Join(dir, "mailtls.yaml")
	peerConfig(t, cfg, httpsAddr, filepath.Join(dir, "storage"), domains, certs)
	s := startServe(t, cfg)
	if got := s.Addr("host-https"); got != httpsAddr {
		t.Fatalf("host-https listens on %q, want %s\n%s", got, httpsAddr, s.Logs())
	}
	ids := peerIDs(t, cfg)

	// stranger.test points at our listener but is not configured: the
	// server must not serve it, whatever certificate it could show.
	for _, name := range []string{"alpha.test", "beta.test", "gamma.test", "stranger.test"} {
		zone.MustAdd(t, fmt.Sprintf("mta-sts.%s. 300 IN A %s", name, zone.IP()))
		id := ids[name]
		if name == "stranger.test" {
			id = "stranger1"
		}
		publishID(t, zone, name, id)
	}

	check := func(t *testing.T, d peerDomain, r peerResult, id string) {
		t.Helper()
		want := slices.Clone(d.mx)
		if want == nil {
			want = []string{}
		}
		slices.Sort(want)
		if r.Status != "VALID" || r.ID != id || r.Mode != d.mode || r.MaxAge != d.want || !slices.Equal(r.MX, want) {
			t.Errorf("%s: got %s id=%q mode=%q mx=%q max_age=%d\nwant VALID id=%q mode=%q mx=%q max_age=%d\n%s",
				d.name, r.Status, r.ID, r.Mode, r.MX, r.MaxAge, id, d.mode, want, d.want, r.Raw)
		} else {
			t.Logf("%s", r.Raw)
		}
	}

	// Each query is a Python start-up (~0.3 s): run them side by side.
	t.Run("first fetch", func(t *testing.T) {
		for _, d := range domains {
			t.Run(d.name, func(t *testing.T) {
				t.Parallel()
				check(t, d, peerQueryRun(t, ns, d.name), ids[d.name])
				// The id it knows is the one in DNS: nothing to fetch.
				if r := peerQueryRun(t, ns, d.name, ids[d.name]); r.Status != "NOT_CHANGED" {
					t.Errorf("%s with known id %s: %s, want NOT_CHANGED\n%s", d.name, ids[d.name], r.Status, r.Raw)
				}
			})
		}
		t.Run("stranger.test", func(t *testing.T) {
			t.Parallel()
			// The handshake must reach our listener and be refused there with
			// the unrecognized_name alert (RFC 6066 §3), not fail on the way.
			if r := peerQueryRun(t, ns, "stranger.test"); r.Status != "FETCH_ERROR" || !strings.Contains(r.Raw, "UNRECOGNIZED_NAME") {
				t.Errorf("unconfigured domain: %s, want FETCH_ERROR after an unrecognized_name alert\n%s", r.Status, r.Raw)
			} else {
				t.Logf("unconfigured domain: %s", r.Raw)
			}
		})
	})
	if t.Failed() {
		t.Fatalf("serve logs:\n%s", s.Logs())
	}

	// A policy change, reloaded by SIGHUP, gets a new id; only the changed
	// domain's id moves.
	old := ids["alpha.test"]
	domains[0] = peerDomain{name: "alpha.test", mode: "testing", mx: []string{"mx1.alpha.test", "mx2.alpha.test", "*.mail.alpha.test"}, maxAge: 1209600, want: 1209600}
	peerConfig(t, cfg, httpsAddr, filepath.Join(dir, "storage"), domains, certs)
	reloads := strings.Count(s.Logs(), "configuration reloaded")
	if err := s.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(s.Logs(), "configuration reloaded") == reloads {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", s.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	newIDs := peerIDs(t, cfg)
	if newIDs["alpha.test"] == old || newIDs["beta.test"] != ids["beta.test"] || newIDs["gamma.test"] != ids["gamma.test"] {
		t.Fatalf("ids after changing alpha.test: %v, before: %v", newIDs, ids)
	}

	// Until DNS announces the new id, a sender that knows the old one does
	// not fetch: publishing the id is what makes the change reach senders.
	if r := peerQueryRun(t, ns, "alpha.test", old); r.Status != "NOT_CHANGED" {
		t.Errorf("alpha.test before publishing the new id: %s, want NOT_CHANGED\n%s", r.Status, r.Raw)
	}
	publishID(t, zone, "alpha.test", newIDs["alpha.test"])
	t.Run("after reload", func(t *testing.T) {
		// A sender with the old id cached (a refresh) and a new one.
		for name, known := range map[string][]string{"old id known": {old}, "no id known": nil} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				check(t, domains[0], peerQueryRun(t, ns, "alpha.test", known...), newIDs["alpha.test"])
			})
		}
	})
	if t.Failed() {
		t.Logf("serve logs:\n%s", s.Logs())
	}
}
