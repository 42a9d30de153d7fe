package resolver_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/socketmap"
)

// The peer agreement test binds ports 53 and 443, because the peer reads
// its DNS server from resolv.conf (port 53) and fetches from port 443, on
// a random loopback address of its own (lab.NewWellKnown), so that it may
// run beside other tests and other runs; the peer listens on port
// peerPort of the same address.
const (
	peerDaemon  = "/usr/bin/mta-sts-daemon"
	peerPort    = 8461
	peerTimeout = 30 * time.Second
)

// peerDifference is a scenario where Debian's postfix-mta-sts-resolver
// (1.1.2) answers otherwise than mailtls, with the peer's answer and the
// rule that decides. docs/resolver.md lists each one.
type peerDifference struct {
	peer string // the peer's reply ("$D" for the domain; match lists sorted)
	why  string
}

// peerDANEScenario is the one DANE case of the comparison.
const peerDANEScenario = "RFC 8461 §2 DANE with an MTA-STS enforce policy"

var peerDifferences = map[string]peerDifference{
	peerDANEScenario: {"OK secure match=mx1.$D servername=hostname",
		"RFC 8461 §2: MTA-STS must not override DANE; with signed MX and usable signed TLSA records the answer is dane-only (the peer has no DANE, its issue #67)"},
	"STS-TXT-7 space before semicolon beside another TXT record": {"OK secure match=mx1.$D:.mail.$D servername=hostname",
		"RFC 8461 §3.1: of several TXT records, those not beginning with \"v=STSv1;\" are discarded; none is left, so there is no policy (the peer filters on \"v=STSv1\")"},
	"STS-TXT-9 MISC-16 hyphenated id": {"OK secure match=mx1.$D:.mail.$D servername=hostname",
		"RFC 8461 §3.1: id is 1 to 32 letters and digits; a record with another id is invalid (the peer does not check the id)"},
	"STS-TXT-14 trailing space": {"OK secure match=mx1.$D:.mail.$D servername=hostname",
		"RFC 8461 §3.1: the record grammar has no trailing blank; the record is invalid (the peer strips it)"},
	"NAME-2 CN-only certificate": {"OK secure match=mx1.$D:.mail.$D servername=hostname",
		"RFC 8461 §3.3 with RFC 9525 §6.3 (spec-checklist NAME-2): the policy host is matched against DNS-IDs only; a certificate naming it only in the CN is not valid for it (Python's ssl falls back to the CN)"},
	"STS-FETCH-5 chain larger than OpenSSL accepts": {"NOTFOUND ",
		"no RFC limits the certificate chain (RFC 8446 §4.4.2 allows 16 MiB); OpenSSL's default 100 KiB limit makes the peer fail the fetch, Go's TLS accepts up to 256 KiB, so mailtls reads the policy (the scan warns that OpenSSL-based senders cannot)"},
	"STS-FETCH-12 labelled gzip only when asked for": {"NOTFOUND ",
		"RFC 8461 §3.3 and RFC 9110 §12.5.3: mailtls asks for no content coding and gets a plain policy; the peer (aiohttp) asks for gzip and gets a plain body labelled gzip, which it cannot decode; the server is at fault, but only towards clients that ask for gzip"},
	"STS-FETCH-13 MISC-35 slow policy host": {"NOTFOUND ",
		"RFC 8461 §3.3 suggests a one-minute timeout; the peer gives up after 4 s (its zone timeout), mailtls waits up to lookup_timeout (10 s) for Postfix and goes on in the background"},
	"STS-POL-3 MISC-26 blank line": {"OK secure match=mx1.$D:.mail.$D servername=hostname",
		"RFC 8461 §3.2: the policy grammar has no empty lines; an invalid policy is a failed fetch (RFC 8461 §3.3, STS-POL-19) (the peer skips the line)"},
	"STS-POL-14 conflicting duplicate mode": {"OK secure match=mx1.$D:.mail.$D servername=hostname",
		"RFC 8461 §3.2: of a duplicated field all but the first are ignored, so the mode is testing; the peer takes the last one, enforce"},
	"STS-POL-15 MISC-27 comments in the policy": {"OK secure match=mx1.$D:.mail.$D servername=hostname",
		"RFC 8461 §3.2: a comment line is not a key: value field of the grammar; the policy is invalid (the peer reads it as an unknown key)"},
	"STS-POL-9 MISC-30 mx with trailing dot": {"OK secure match=mx1.$D. servername=hostname",
		"RFC 8461 §3.2: an mx value is a domain (RFC 5321) without trailing dot; the policy is invalid (the peer does not check mx values)"},
}

// TestPeerDifferencesDocumented: docs/resolver.md lists every difference.
func TestPeerDifferencesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/resolver.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range peerDifferences {
		short := strings.TrimSuffix(name, " (4.2 s)")
		if !strings.Contains(string(doc), short) {
			t.Errorf("docs/resolver.md does not list the peer difference %q", name)
		}
	}
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set, so not skipping: "+format, args...)
	}
	t.Skipf(format, args...)
}

// normalizeReply sorts the match= list: the peer prints a Python set.
func normalizeReply(r string) string {
	const p = "OK secure match="
	if !strings.HasPrefix(r, p) {
		return r
	}
	list, rest, _ := strings.Cut(strings.TrimPrefix(r, p), " ")
	m := strings.Split(list, ":")
	slices.Sort(m)
	if rest != "" {
		rest = " " + rest
	}
	return p + strings.Join(m, ":") + rest
}

// TestPeerAgreement runs Debian's mta-sts-daemon and mailtls side by side
// over every scenario of the scan suite that involves no DANE (the peer has
// none) and compares the socketmap replies: they must be equal, except for
// the differences listed above, where the peer is wrong.
func TestPeerAgreement(t *testing.T) {
	if _, err := os.Stat(peerDaemon); err != nil {
		skipOrFail(t, "%s is not installed (apt-get install postfix-mta-sts-resolver python3-uvloop): %v", peerDaemon, err)
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: binds port 53 and 443 and bind-mounts resolv.conf in a mount namespace")
	}
	for _, tool := range []string{"unshare", "mount", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "%s not found: %v", tool, err)
		}
	}
	l := lab.NewWellKnown(t)
	peerListen := lab.AddrPort(l.DNS.IP(), peerPort)
	dir := t.TempDir()
	ns := lab.NeedNamespace(t, dir, l.DNS.IP().String(), l.CA, "the peer")

	var names []string
	var domains []string
	for i, sc := range scenarios() {
		w := world{t: t, l: l, d: domainFor(i)}
		sc.setup(w)
		names = append(names, sc.name)
		domains = append(domains, w.d)
	}

	cfg := filepath.Join(dir, "mta-sts-daemon.yml")
	yml := fmt.Sprintf("host: %s\nport: %d\nreuse_port: true\nshutdown_timeout: 1\ncache:\n  type: internal\n  options:\n    cache_size: 10000\ndefault_zone:\n  strict_testing: false\n  timeout: 4\n  require_sni: true\n", l.DNS.IP(), peerPort)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	var logs lab.LogBuffer
	daemon := ns.Command(pctx, peerDaemon, "-c", cfg, "-v", "warn")
	daemon.Stdout, daemon.Stderr = &logs, &logs
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pcancel(); daemon.Wait() })
	for deadline := time.Now().Add(peerTimeout); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", peerListen)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mta-sts-daemon did not listen on %s: %v\n%s", peerListen, err, logs.String())
		}
	}

	e := newEnv(t, l)
	compareWithPeer(t, e, peerListen, names, domains)
	// DANE first: now the lab resolver validates (AD on the signed root)
	// and one domain publishes TLSA records for its MX host beside an
	// enforce policy.
	w := world{t: t, l: l, d: "dane-peer.test"}
	w.signed()
	w.mx(10, "mx1.$D")
	w.tlsa("mx1.$D", "usable")
	w.enforce("enforce", "mx1.$D")
	// A new resolver: the first one remembers for five minutes that the
	// lab resolver did not validate.
	compareWithPeer(t, newEnv(t, l), peerListen, []string{peerDANEScenario}, []string{w.d})
	if t.Failed() {
		t.Logf("mta-sts-daemon log:\n%s", logs.String())
	}
}

// compareWithPeer asks both resolvers about every domain, side by side,
// and checks the replies against the listed differences.
func compareWithPeer(t *testing.T, e *env, peerListen string, names, domains []string) {
	t.Helper()
	zone := sendpolicy.Zone{RequireSNI: true}
	type pair struct{ ours, peer string }
	got := make([]pair, len(domains))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, d := range domains {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			dec, _ := e.r.Decide(context.Background(), d, zone)
			got[i].ours = normalizeReply(dec.Reply(zone).String())
			c, err := socketmap.Dial(context.Background(), peerListen)
			if err != nil {
				got[i].peer = "error: " + err.Error()
				return
			}
			defer c.Close()
			qctx, qcancel := context.WithTimeout(context.Background(), peerTimeout)
			defer qcancel()
			rep, err := c.Query(qctx, "postfix", d)
			if err != nil {
				got[i].peer = "error: " + err.Error()
				return
			}
			got[i].peer = normalizeReply(rep.String())
		})
	}
	wg.Wait()
	for i, name := range names {
		g := got[i]
		diff, listed := peerDifferences[name]
		switch {
		case g.ours == g.peer && listed:
			t.Errorf("%s: both answer %q, but it is listed as a difference (%s)", name, g.ours, diff.why)
		case g.ours != g.peer && !listed:
			t.Errorf("%s: mailtls %q, peer %q: not a listed difference", name, g.ours, g.peer)
		case g.ours != g.peer && normalizeReply(strings.ReplaceAll(diff.peer, "$D", domains[i])) != g.peer:
			t.Errorf("%s: the peer answers %q, the listed difference says %q", name, g.peer, diff.peer)
		}
	}
}
