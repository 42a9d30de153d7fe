package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/bulk"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/mtasts"
)

// popLab starts a lab with a generated population and returns it with the
// flags that point the binary at it.
func popLab(t *testing.T, o lab.PopulationOptions) (*lab.Lab, *lab.Population, []string) {
	t.Helper()
	l := lab.New(t)
	p, err := l.Populate(o)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := l.CA.WriteRootPEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"check", "--resolver", l.DNS.Addr(), "--ca-file", ca, "--smtp-timeout", "3s", "--timeout", "20s"}
	for _, c := range l.ConnectToFlags() {
		args = append(args, "--connect-to", c)
	}
	return l, p, args
}

// bulkDoc is what the tests read of a JSON record.
type bulkDoc struct {
	Domain       string  `json:"domain"`
	Input        string  `json:"input"`
	Line         int     `json:"line"`
	Grade        *string `json:"grade"`
	PolicyStatus string  `json:"policy_status"`
	DurationMS   float64 `json:"duration_ms"`
	MX           []struct {
		Host      string `json:"host"`
		Addresses []struct {
			IP       string `json:"ip"`
			STARTTLS bool   `json:"starttls"`
			Failure  string `json:"failure"`
		} `json:"addresses"`
	} `json:"mx"`
	Findings []struct {
		ID       string `json:"id"`
		Severity string `json:"severity"`
	} `json:"findings"`
	Evidence struct {
		StartedAt time.Time `json:"started_at"`
	} `json:"evidence"`
}

// readRecords parses JSON Lines; every line must be a whole record.
func readRecords(t *testing.T, out string) []bulkDoc {
	t.Helper()
	var docs []bulkDoc
	if out != "" && !strings.HasSuffix(out, "\n") {
		t.Errorf("output does not end with a line end: a cut-off record")
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for n := 1; sc.Scan(); n++ {
		var d bulkDoc
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("output line %d is not a JSON record: %v\n%.200s", n, err, sc.Text())
		}
		docs = append(docs, d)
	}
	return docs
}

// onceEach checks that the records name every domain of want exactly once.
func onceEach(t *testing.T, docs []bulkDoc, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, d := range docs {
		seen[d.Domain]++
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Errorf("%s: %d records, want exactly 1", w, seen[w])
		}
		delete(seen, w)
	}
	for d, n := range seen {
		t.Errorf("unexpected record for %s (%d)", d, n)
	}
}

func names(p *lab.Population) []string {
	var out []string
	for _, d := range p.Domains {
		out = append(out, d.Name)
	}
	return out
}

func readSummary(t *testing.T, path string) bulk.Summary {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s bulk.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary: %v\n%s", err, b)
	}
	return s
}

func TestBulkInputFileAndStdin(t *testing.T) {
	_, p, args := popLab(t, lab.PopulationOptions{Domains: 24})
	d := p.Domains
	input := strings.Join([]string{
		"# customers, exported 2026-11-30",
		d[0].Name,
		"",
		"  " + strings.ToUpper(d[1].Name) + ".  ",
		"17," + d[2].Name, // a top-sites line
		"not a domain",
		d[0].Name, // a duplicate
		"user@" + d[3].Name,
		"12,bad..name",
		"https://" + d[4].Name + "/",
		"1.2.3.4",
		d[5].Name + "\r",
	}, "\n")
	want := []string{d[0].Name, d[1].Name, d[2].Name, d[3].Name, d[4].Name, d[5].Name}
	wantLines := map[string]int{d[0].Name: 2, d[1].Name: 4, d[2].Name: 5, d[3].Name: 8, d[4].Name: 10, d[5].Name: 12}
	dir := t.TempDir()
	file := filepath.Join(dir, "domains.txt")
	if err := os.WriteFile(file, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(r result, sumPath string) {
		t.Helper()
		if r.code == ExitUsage {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		docs := readRecords(t, r.stdout)
		onceEach(t, docs, want)
		for _, doc := range docs {
			if doc.Line != wantLines[doc.Domain] {
				t.Errorf("%s: line %d, want %d", doc.Domain, doc.Line, wantLines[doc.Domain])
			}
		}
		for _, bad := range []string{":6: more than one word", ":9: ", ":11: 1.2.3.4 is an IP address"} {
			if !strings.Contains(r.stderr, bad) {
				t.Errorf("stderr lacks %q:\n%s", bad, r.stderr)
			}
		}
		s := readSummary(t, sumPath)
		if s.Input.InvalidLines != 3 || s.Input.Duplicates != 1 || s.Input.Domains != 6 || s.Scanned != 6 || !s.Complete || s.Input.Lines != 12 {
			t.Errorf("summary input %+v scanned %d complete %v", s.Input, s.Scanned, s.Complete)
		}
		if len(s.Input.Invalid) != 3 || s.Input.Invalid[0].Line != 6 {
			t.Errorf("summary lists invalid lines %+v", s.Input.Invalid)
		}
	}
	t.Run("file", func(t *testing.T) {
		sum := filepath.Join(dir, "sum1.json")
		check(run(t, append(args, "-f", file, "--summary", sum)...), sum)
	})
	t.Run("stdin", func(t *testing.T) {
		sum := filepath.Join(dir, "sum2.json")
		check(runIn(t, input, append(args, "-f", "-", "--summary", sum)...), sum)
	})
}

// runIn is run with stdin.
func runIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running mailtls: %v", err)
	}
	return r
}

func writeList(t *testing.T, p *lab.Population) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "domains.txt")
	if err := os.WriteFile(file, []byte(p.List()), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestBulkCSV(t *testing.T) {
	_, p, args := popLab(t, lab.PopulationOptions{Domains: 12})
	r := run(t, append(args, "-f", writeList(t, p), "--format", "csv")...)
	if r.code != ExitFindings {
		t.Fatalf("exit %d, want 1 (some domains have errors)\n%s", r.code, r.stderr)
	}
	rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows[0], []string{"line", "domain", "grade", "policy_status", "mode", "max_age", "mx_count", "mx_covered", "starttls_failures", "dane", "tlsrpt", "error_findings", "duration_ms"}) {
		t.Fatalf("header %q", rows[0])
	}
	if len(rows) != 1+len(p.Domains) {
		t.Fatalf("%d rows, want %d", len(rows)-1, len(p.Domains))
	}
	kind := map[string]string{}
	for _, d := range p.Domains {
		kind[d.Name] = d.Kind
	}
	for _, row := range rows[1:] {
		col := map[string]string{}
		for i, h := range rows[0] {
			col[h] = row[i]
		}
		var want map[string]string
		switch kind[col["domain"]] {
		case lab.KindEnforce:
			want = map[string]string{"grade": "A+", "policy_status": "enforce", "mode": "enforce", "max_age": "604800", "mx_count": "1", "mx_covered": "1", "starttls_failures": "0", "tlsrpt": "true", "error_findings": ""}
		case lab.KindNotCovered:
			want = map[string]string{"policy_status": "enforce", "mx_covered": "0", "error_findings": "mx-not-covered"}
		case lab.KindNoMTASTS:
			want = map[string]string{"policy_status": "absent", "mode": "", "max_age": "", "mx_covered": "", "tlsrpt": "false"}
		case lab.KindServFail:
			want = map[string]string{"grade": "", "policy_status": "undetermined"}
		case lab.KindNoSTARTTLS:
			want = map[string]string{"starttls_failures": "1"}
		case lab.KindMX421:
			want = map[string]string{"starttls_failures": "0"} // never got as far as STARTTLS: not a STARTTLS failure
		}
		for k, v := range want {
			if col[k] != v {
				t.Errorf("%s (%s): %s = %q, want %q", col["domain"], kind[col["domain"]], k, col[k], v)
			}
		}
		if col["line"] == "" || col["duration_ms"] == "" || col["dane"] != "none" {
			t.Errorf("%s: line %q duration %q dane %q", col["domain"], col["line"], col["duration_ms"], col["dane"])
		}
	}
}

// TestBulkSharedWork scans many domains that share a few MX hosts: each
// shared MX address gets one STARTTLS probe for the whole run, every
// domain's report still shows its result, and the tenant MX names that
// share one address never get more than --per-address connections at once.
func TestBulkSharedWork(t *testing.T) {
	_, p, args := popLab(t, lab.PopulationOptions{Domains: 240, Kinds: []string{lab.KindEnforce, lab.KindTenant, lab.KindNoSTARTTLS, lab.KindTenant}})
	sum := filepath.Join(t.TempDir(), "summary.json")
	r := run(t, append(args, "-f", writeList(t, p), "--parallel", "60", "--address-interval", "1ms", "--summary", sum)...)
	if r.code == ExitUsage {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	docs := readRecords(t, r.stdout)
	onceEach(t, docs, names(p))
	mxOf := map[string]string{}
	for _, d := range p.Domains {
		mxOf[d.Name] = d.MX
	}
	for _, doc := range docs {
		if len(doc.MX) != 1 || doc.MX[0].Host != mxOf[doc.Domain] || len(doc.MX[0].Addresses) != 1 {
			t.Errorf("%s: MX %+v, want the result of %s", doc.Domain, doc.MX, mxOf[doc.Domain])
			continue
		}
		a := doc.MX[0].Addresses[0]
		if wantTLS := !strings.HasPrefix(mxOf[doc.Domain], "plain."); a.STARTTLS != wantTLS {
			t.Errorf("%s: starttls %v, want %v (%s)", doc.Domain, a.STARTTLS, wantTLS, a.Failure)
		}
	}
	tenants := 0
	for _, d := range p.Domains {
		if d.Kind == lab.KindTenant {
			tenants++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, s := range append(p.SharedMX, p.NoSTARTTLS) {
		if err := s.WaitIdle(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(s.Sessions()); n != 1 {
			t.Errorf("shared MX %d: %d SMTP sessions in the run, want 1", i+1, n)
		}
	}
	if err := p.Tenant.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(p.Tenant.Sessions()); n != tenants {
		t.Errorf("tenant address: %d sessions, want one per tenant MX name (%d)", n, tenants)
	}
	if got := p.Tenant.MaxConcurrent(); got > bulk.DefaultPerAddress || got < 1 {
		t.Errorf("tenant address: %d connections at once, want at most --per-address %d", got, bulk.DefaultPerAddress)
	}
	s := readSummary(t, sum)
	if s.Shared.Probes != int64(len(p.SharedMX)+1+tenants) {
		t.Errorf("summary: %d probes, want %d", s.Shared.Probes, len(p.SharedMX)+1+tenants)
	}
	if s.Shared.PeakPerAddress > bulk.DefaultPerAddress {
		t.Errorf("summary: peak %d per address", s.Shared.PeakPerAddress)
	}
}

// TestBulkSharedLookupsAndFetches counts at the lab's own servers what a
// run asks once and what it must ask per domain: the TLSA records and the
// addresses of an MX host shared by many domains are each queried once in
// the run (the answers' TTLs and the negative TTL of the zone's SOA, RFC
// 2308 §5, outlast it), a tenant's own MX name once each, and every
// domain's policy host gets exactly one fetch (the request without
// Accept-Encoding and one per header senders send), never a second.
func TestBulkSharedLookupsAndFetches(t *testing.T) {
	l, p, args := popLab(t, lab.PopulationOptions{Domains: 60, SharedMX: 2, Kinds: []string{lab.KindEnforce, lab.KindTenant, lab.KindEnforce}})
	l.DNS.ResetQueries()
	r := run(t, append(args, "-f", writeList(t, p), "--parallel", "30", "--address-interval", "1ms", "--quiet")...)
	if r.code == ExitUsage {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	onceEach(t, readRecords(t, r.stdout), names(p))
	asked := map[string]int{}
	for _, q := range l.DNS.Queries() {
		asked[dns.TypeToString[q.Type]+" "+q.Name]++
	}
	users := map[string]int{}
	for _, d := range p.Domains {
		users[d.MX]++
	}
	for mx, n := range users {
		for _, q := range []string{"TLSA _25._tcp." + mx + ".", "A " + mx + ".", "AAAA " + mx + "."} {
			if asked[q] != 1 {
				t.Errorf("%s (MX of %d domains): asked %d times in the run, want once", q, n, asked[q])
			}
		}
	}
	if len(users) != 2+len(p.Domains)/3 {
		t.Fatalf("%d MX hosts in the population, want the 2 shared ones and one per tenant", len(users))
	}
	perHost := 1 + len(mtasts.AcceptEncodings())
	for _, d := range p.Domains {
		if n := l.HTTPS.Requests("mta-sts." + d.Name); n != perHost {
			t.Errorf("mta-sts.%s: %d requests, want %d (one fetch: without Accept-Encoding and with each of %q)", d.Name, n, perHost, mtasts.AcceptEncodings())
		}
	}
}

// TestBulk421SlowsOnlyItsDomains: a hosted-mail address that greets every
// connection with 421 gets its connections spaced out more and more (one
// second, then doubling: RFC 5321 §4.5.4.1, a client told "try later"
// waits), as counted at that server, while the domains whose MX is
// elsewhere are not held back: their records are all written before the
// last domain on the 421 address gets its turn.
func TestBulk421SlowsOnlyItsDomains(t *testing.T) {
	_, p, args := popLab(t, lab.PopulationOptions{Domains: 40, Kinds: []string{lab.KindEnforce, lab.KindEnforce, lab.KindEnforce, lab.KindEnforce, lab.KindEnforce, lab.KindEnforce, lab.KindEnforce, lab.KindEnforce, lab.KindEnforce, lab.KindTenant421}})
	var busy, others []string
	for _, d := range p.Domains {
		if d.Kind == lab.KindTenant421 {
			busy = append(busy, d.Name)
		} else {
			others = append(others, d.Name)
		}
	}
	// --parallel above the number of domains: no domain waits for a slot,
	// only for its address.
	r := run(t, append(args, "-f", writeList(t, p), "--parallel", "50", "--quiet")...)
	if r.code == ExitUsage {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	docs := readRecords(t, r.stdout)
	onceEach(t, docs, names(p))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.BusyTenant.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	sessions := p.BusyTenant.Sessions()
	if len(sessions) != len(busy) {
		t.Fatalf("the 421 address saw %d connections, want one per tenant MX name (%d)", len(sessions), len(busy))
	}
	// The gate lets the next connection start only a back-off after the
	// previous one ended, so the gaps between the server's accepts are at
	// least 1 s, 2 s, 4 s: a lower bound that load cannot break.
	backoff := time.Second
	for i := 1; i < len(sessions); i++ {
		if gap := sessions[i].Start.Sub(sessions[i-1].Start); gap < backoff {
			t.Errorf("connection %d to the 421 address %v after the one before, want at least %v", i+1, gap, backoff)
		}
		backoff *= 2
	}
	// Completion order: the last domain on the 421 address waited 7 s or
	// more for its connection; every other domain was written before it.
	last := -1
	for i, d := range docs {
		if slices.Contains(busy, d.Domain) {
			last = i
		}
	}
	for i, d := range docs[last+1:] {
		t.Errorf("%s (MX elsewhere) written after the last domain on the 421 address (position %d)", d.Domain, last+2+i)
	}
	for _, d := range docs {
		if !slices.Contains(busy, d.Domain) {
			continue
		}
		for _, m := range d.MX {
			for _, a := range m.Addresses {
				if a.Failure != "banner-temporary" {
					t.Errorf("%s: %s: failure %q, want banner-temporary (the 421 greeting)", d.Domain, m.Host, a.Failure)
				}
			}
		}
	}
}

// TestBulkPerAddressFlag: --per-address 1 makes the tenant address see one
// connection at a time; the minimum interval spaces them out.
func TestBulkPerAddressFlag(t *testing.T) {
	_, p, args := popLab(t, lab.PopulationOptions{Domains: 12, Kinds: []string{lab.KindTenant}})
	start := time.Now()
	r := run(t, append(args, "-f", writeList(t, p), "--parallel", "12", "--per-address", "1", "--address-interval", "100ms")...)
	took := time.Since(start)
	if r.code == ExitUsage {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	onceEach(t, readRecords(t, r.stdout), names(p))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Tenant.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.Tenant.MaxConcurrent(); got != 1 {
		t.Errorf("%d connections at once, want 1", got)
	}
	sessions := p.Tenant.Sessions()
	if len(sessions) != 12 {
		t.Fatalf("%d sessions, want 12", len(sessions))
	}
	// 12 connections at least 100 ms apart take at least 1.1 s.
	if took < 1100*time.Millisecond {
		t.Errorf("12 connections to one address in %v: not spaced 100 ms apart", took)
	}
}

// TestBulkRate: --rate N/s starts at most N domains a second. The limiter
// hands out its first start at once and one every 1/N s after it, so the
// last of n domains cannot start earlier than (n-1)/N s after the command
// did; a loaded machine only makes that later.
func TestBulkRate(t *testing.T) {
	_, p, args := popLab(t, lab.PopulationOptions{Domains: 10, Kinds: []string{lab.KindEnforce, lab.KindNoMTASTS}})
	start := time.Now()
	r := run(t, append(args, "-f", writeList(t, p), "--parallel", "10", "--rate", "5/s", "--quiet")...)
	if r.code == ExitUsage {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	docs := readRecords(t, r.stdout)
	onceEach(t, docs, names(p))
	var last time.Time
	for _, d := range docs {
		if d.Evidence.StartedAt.After(last) {
			last = d.Evidence.StartedAt
		}
	}
	if min := time.Duration(len(docs)-1) * time.Second / 5; last.Sub(start) < min {
		t.Errorf("the last of %d domains started %v after the command, want at least %v at --rate 5/s", len(docs), last.Sub(start), min)
	}
	if r := run(t, append(args, "-f", writeList(t, p), "--rate", "fast")...); r.code != ExitUsage || !strings.Contains(r.stderr, `--rate "fast": want domains per second`) {
		t.Errorf("--rate fast: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestBulkDNSRate: --dns-rate N sends at most N queries a second to the
// resolver (with a burst of N/10). The lab DNS counts the queries it got;
// the run cannot have taken less than (queries - burst) / N seconds.
func TestBulkDNSRate(t *testing.T) {
	l, p, args := popLab(t, lab.PopulationOptions{Domains: 8, Kinds: []string{lab.KindEnforce, lab.KindNoMTASTS}})
	l.DNS.ResetQueries()
	start := time.Now()
	r := run(t, append(args, "-f", writeList(t, p), "--parallel", "8", "--dns-rate", "20", "--quiet")...)
	took := time.Since(start)
	if r.code == ExitUsage {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	onceEach(t, readRecords(t, r.stdout), names(p))
	n := len(l.DNS.Queries())
	if n < 20 {
		t.Fatalf("only %d queries: too few to see the cap", n)
	}
	if min := time.Duration(n-2) * time.Second / 20; took < min {
		t.Errorf("%d queries in %v at --dns-rate 20: want at least %v", n, took, min)
	}
}

// TestBulkSummary: the summary's counts of a population whose kinds say
// what each domain has (lab.DefaultKinds, each kind twice, enforce four
// times).
func TestBulkSummary(t *testing.T) {
	_, p, args := popLab(t, lab.PopulationOptions{Domains: 2 * len(lab.DefaultKinds)})
	dir := t.TempDir()
	sum, out := filepath.Join(dir, "summary.json"), filepath.Join(dir, "out.jsonl")
	r := run(t, append(args, "-f", writeList(t, p), "--summary", sum, "--quiet", "-o", out)...)
	if r.code != ExitFindings {
		t.Fatalf("exit %d, want 1 (some domains have error findings)\n%s", r.code, r.stderr)
	}
	s := readSummary(t, sum)
	// From the kinds (lab/population.go): no record without MTA-STS or
	// behind a SERVFAIL; a policy senders apply unless the record is
	// broken, the policy answers 404 or its certificate expired; full
	// coverage but for mx-not-covered; STARTTLS but on the plain and 421
	// servers; TLS-RPT wherever there is a policy.
	ints := []struct {
		name      string
		got, want int
	}{
		{"scanned", s.Scanned, 24},
		{"mta_sts_record", s.MTASTSRecord, 20},
		{"valid_policy", s.ValidPolicy, 14},
		{"full_mx_coverage", s.FullMXCoverage, 12},
		{"starttls_everywhere", s.STARTTLSEverywhere, 20},
		{"dane", s.DANE, 0},
		{"tlsrpt", s.TLSRPT, 22},
	}
	for _, c := range ints {
		if c.got != c.want {
			t.Errorf("summary %s = %d, want %d", c.name, c.got, c.want)
		}
	}
	mapsWant := []struct {
		name      string
		got, want map[string]int
	}{
		{"modes", s.Modes, map[string]int{"enforce": 12, "testing": 2}},
		{"policy_status", s.PolicyStatus, map[string]int{"enforce": 12, "testing": 2, "absent": 2, "invalid": 2, "unreachable": 4, "undetermined": 2}},
		{"scan_errors", s.ScanErrors, map[string]int{"dns-servfail": 2, "policy-undetermined": 2, "smtp-banner-temporary": 2}},
	}
	for _, c := range mapsWant {
		if !maps.Equal(c.got, c.want) {
			t.Errorf("summary %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// Grades and findings: the summary counts what the records say.
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	grades, findings, withError := map[string]int{}, map[string]int{}, 0
	for _, d := range readRecords(t, string(b)) {
		g := "undetermined"
		if d.Grade != nil {
			g = *d.Grade
		}
		grades[g]++
		seen, hasError := map[string]bool{}, false
		for _, f := range d.Findings {
			if !seen[f.ID] {
				findings[f.ID]++
			}
			seen[f.ID] = true
			hasError = hasError || f.Severity == "error"
		}
		if hasError {
			withError++
		}
	}
	if !maps.Equal(s.Grades, grades) || grades["undetermined"] != 2 {
		t.Errorf("summary grades %v, the records say %v (2 undetermined)", s.Grades, grades)
	}
	if s.ErrorFindings != withError || withError == 0 {
		t.Errorf("summary: %d domains with error findings, the records say %d", s.ErrorFindings, withError)
	}
	for _, f := range s.TopFindings {
		if f.Domains != findings[f.ID] {
			t.Errorf("summary: %s in %d domains, the records say %d", f.ID, f.Domains, findings[f.ID])
		}
	}
	if len(s.TopFindings) != min(len(findings), 20) || findings["mx-not-covered"] != 2 || findings["smtp-starttls-missing"] != 2 {
		t.Errorf("summary lists %d finding IDs of %d: %v", len(s.TopFindings), len(findings), s.TopFindings)
	}
	// The words on standard error say the same.
	for _, want := range []string{"mailtls check: scanned 24 domains", "MTA-STS record: 20 (83%); valid policy: 14 (58%) (enforce 12, testing 2, none 0)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

// startBulk starts the binary in the background.
func startBulk(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, &errb
}

// waitLines waits until path holds at least n line ends.
func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if bytes.Count(b, []byte("\n")) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: fewer than %d records after 60 s", path, n)
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestBulkKillThenResume kills a run at arbitrary moments (SIGKILL: no
// chance to clean up) and resumes it until it finishes: every domain ends
// up in the output exactly once, and no line is cut off.
func TestBulkKillThenResume(t *testing.T) {
	for _, format := range []string{"json", "csv"} {
		t.Run(format, func(t *testing.T) {
			l, p, args := popLab(t, lab.PopulationOptions{Domains: 120})
			l.DNS.SetLatency(20 * time.Millisecond)
			out := filepath.Join(t.TempDir(), "out."+format)
			base := append(args, "-f", writeList(t, p), "-o", out, "--format", format, "--parallel", "8", "--quiet")
			cmd, _ := startBulk(t, base...)
			waitLines(t, out, 20)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			// A kill in the middle of a write leaves a cut-off record: make
			// one, as the kernel may.
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"schema_version":1,"domain":"d000`)
			f.Close()
			cmd, errb := startBulk(t, append(base, "--resume")...)
			waitLines(t, out, 60)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if !strings.Contains(errb.String(), "dropped a cut-off last record") {
				t.Errorf("the resumed run did not say it dropped the cut-off record:\n%s", errb.String())
			}
			sum := filepath.Join(t.TempDir(), "summary.json")
			r := run(t, append(base, "--resume", "--summary", sum)...)
			if r.code == ExitUsage {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			var docs []bulkDoc
			if format == "json" {
				docs = readRecords(t, string(b))
			} else {
				rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
				if err != nil {
					t.Fatalf("CSV output: %v", err)
				}
				if len(rows) == 0 || rows[0][0] != "line" {
					t.Fatalf("want one header line first, got %q", rows[:min(1, len(rows))])
				}
				for _, row := range rows[1:] {
					if row[0] == "line" {
						t.Errorf("a second header line")
						continue
					}
					docs = append(docs, bulkDoc{Domain: row[1]})
				}
			}
			onceEach(t, docs, names(p))
			s := readSummary(t, sum)
			if !s.Complete || s.Input.AlreadyDone == 0 || s.Input.AlreadyDone+s.Scanned != len(p.Domains) {
				t.Errorf("summary of the last run: complete %v, already done %d, scanned %d", s.Complete, s.Input.AlreadyDone, s.Scanned)
			}
		})
	}
}

// TestBulkInterrupt: Ctrl-C (SIGINT) stops the run cleanly: whole records
// only, exit status 2, a summary that says how far it got; --resume
// finishes the list.
func TestBulkInterrupt(t *testing.T) {
	l, p, args := popLab(t, lab.PopulationOptions{Domains: 150})
	l.DNS.SetLatency(20 * time.Millisecond)
	dir := t.TempDir()
	out, sum := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "summary.json")
	base := append(args, "-f", writeList(t, p), "-o", out, "--parallel", "8", "--quiet", "--summary", sum)
	cmd, errb := startBulk(t, base...)
	waitLines(t, out, 15)
	_ = cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if code := exitCode(err); code != ExitUsage {
		t.Errorf("exit %d after Ctrl-C, want 2", code)
	}
	for _, want := range []string{"interrupted after", "abandoned in flight", "not started", "--resume"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	b, _ := os.ReadFile(out)
	docs := readRecords(t, string(b))
	s := readSummary(t, sum)
	if !s.Interrupted || s.Complete || s.Scanned != len(docs) || s.NotStarted == nil || s.Scanned+s.Abandoned+*s.NotStarted != len(p.Domains) {
		t.Errorf("summary: interrupted %v complete %v scanned %d (records %d) abandoned %d not started %v of %d",
			s.Interrupted, s.Complete, s.Scanned, len(docs), s.Abandoned, s.NotStarted, len(p.Domains))
	}
	r := run(t, append(base, "--resume")...)
	if r.code == ExitUsage {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	b, _ = os.ReadFile(out)
	onceEach(t, readRecords(t, string(b)), names(p))
}

// TestBulkShards: the outputs of --shard 1/3, 2/3 and 3/3 together hold
// every domain exactly once.
func TestBulkShards(t *testing.T) {
	_, p, args := popLab(t, lab.PopulationOptions{Domains: 60, Kinds: []string{lab.KindEnforce, lab.KindNoMTASTS}})
	list := writeList(t, p)
	var all []bulkDoc
	for i := 1; i <= 3; i++ {
		r := run(t, append(args, "-f", list, "--shard", fmt.Sprintf("%d/3", i), "--quiet")...)
		if r.code == ExitUsage {
			t.Fatalf("shard %d: exit %d\n%s", i, r.code, r.stderr)
		}
		docs := readRecords(t, r.stdout)
		if len(docs) == 0 || len(docs) == len(p.Domains) {
			t.Errorf("shard %d/3 has %d of %d domains", i, len(docs), len(p.Domains))
		}
		all = append(all, docs...)
	}
	onceEach(t, all, names(p))
	r := run(t, append(args, "-f", list, "--shard", "4/3")...)
	if r.code != ExitUsage || !strings.Contains(r.stderr, `mailtls check: --shard: shard "4/3": want i/n with 1 <= i <= n`) {
		t.Errorf("--shard 4/3: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestBulkSlowServerSlowsOnlyItsDomains: a tarpit MX (no banner) holds back
// the domains that use it, not the others. No clock is read: the tarpit
// holds its domains for a minute (--smtp-timeout), and every other domain
// must have its record while they are still held, even with fewer --parallel
// slots than domains. A resume with a short --smtp-timeout then shows what
// the held domains report: the banner never came.
func TestBulkSlowServerSlowsOnlyItsDomains(t *testing.T) {
	_, p, args := popLab(t, lab.PopulationOptions{Domains: 40, Kinds: []string{lab.KindEnforce, lab.KindEnforce, lab.KindEnforce, lab.KindTarpit}})
	var others, held []string
	for _, d := range p.Domains {
		if d.Kind == lab.KindTarpit {
			held = append(held, d.Name)
		} else {
			others = append(others, d.Name)
		}
	}
	dir := t.TempDir()
	out, sum := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "summary.json")
	list := writeList(t, p)
	cmd, errb := startBulk(t, append(args, "-f", list, "-o", out, "--parallel", "20", "--quiet",
		"--per-address", "1", "--summary", sum, "--smtp-timeout", "60s", "--timeout", "90s")...)
	waitLines(t, out, len(others))
	b, _ := os.ReadFile(out)
	onceEach(t, readRecords(t, string(b)), others)
	if len(p.Tarpit.Sessions()) == 0 {
		t.Errorf("the tarpit saw no connection: its domains were held by something else")
	}
	// Ctrl-C: the held domains are abandoned, the others are all done.
	_ = cmd.Process.Signal(os.Interrupt)
	if code := exitCode(cmd.Wait()); code != ExitUsage {
		t.Errorf("exit %d after Ctrl-C, want 2\n%s", code, errb.String())
	}
	s := readSummary(t, sum)
	if s.Scanned != len(others) || s.Abandoned != len(held) {
		t.Errorf("summary: scanned %d, abandoned %d; want %d and the %d tarpit domains", s.Scanned, s.Abandoned, len(others), len(held))
	}

	r := run(t, append(args, "-f", list, "-o", out, "--resume", "--quiet", "--smtp-timeout", "2s")...)
	if r.code == ExitUsage {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	b, _ = os.ReadFile(out)
	docs := readRecords(t, string(b))
	onceEach(t, docs, names(p))
	for _, d := range docs[len(others):] {
		waited := false
		for _, m := range d.MX {
			for _, a := range m.Addresses {
				waited = waited || a.Failure == "banner-timeout"
			}
		}
		if !waited {
			t.Errorf("%s: no probe waited for the banner: %+v", d.Domain, d.MX)
		}
	}
}

// TestBulkProgress: a plain line every --progress-every without a
// terminal, a line redrawn in place on a terminal (a pty), none with
// --quiet.
func TestBulkProgress(t *testing.T) {
	l, p, args := popLab(t, lab.PopulationOptions{Domains: 60, Kinds: []string{lab.KindEnforce}})
	l.DNS.SetLatency(30 * time.Millisecond)
	base := append(args, "-f", writeList(t, p), "--parallel", "4", "-o", filepath.Join(t.TempDir(), "out.jsonl"))
	t.Run("no terminal", func(t *testing.T) {
		r := run(t, append(base, "--progress-every", "200ms")...)
		lines := 0
		for _, line := range strings.Split(r.stderr, "\n") {
			if strings.Contains(line, "/60 domains (") && strings.Contains(line, "/s") {
				lines++
			}
		}
		if lines < 2 || strings.Contains(r.stderr, "\r") || strings.Contains(r.stderr, "\x1b[") {
			t.Errorf("want plain progress lines, got:\n%q", r.stderr)
		}
	})
	t.Run("quiet", func(t *testing.T) {
		r := run(t, append(base, "--progress-every", "200ms", "--quiet")...)
		if strings.Contains(r.stderr, "/60 domains (") {
			t.Errorf("--quiet printed progress:\n%s", r.stderr)
		}
	})
	t.Run("terminal", func(t *testing.T) {
		ptmx, pts := openPTY(t)
		cmd := exec.Command(binary, base...)
		cmd.Stderr = pts
		var out bytes.Buffer
		done := make(chan struct{})
		go func() { defer close(done); _, _ = out.ReadFrom(ptmx) }()
		err := cmd.Run()
		pts.Close()
		if code := exitCode(err); code == ExitUsage || code < 0 {
			t.Fatalf("exit %d: %v", code, err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			ptmx.Close()
			<-done
		}
		screen := out.String()
		if strings.Count(screen, "\r\x1b[K") < 2 || !strings.Contains(screen, "/60 domains (") || !strings.Contains(screen, "scanned 60 domains") {
			t.Errorf("want a progress line redrawn in place, then the summary; got:\n%q", screen)
		}
	})
}

// TestCheckCPUProfile: --cpuprofile writes a CPU profile of the run that
// go tool pprof reads (gzip-compressed, the sample type "cpu" in
// nanoseconds), for a list and for domains on the command line; a path that
// cannot be written is a usage error before anything is scanned.
func TestCheckCPUProfile(t *testing.T) {
	_, p, args := popLab(t, lab.PopulationOptions{Domains: 6})
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"list", []string{"-f", writeList(t, p)}},
		{"domains", []string{p.Domains[0].Name, p.Domains[1].Name}},
	} {
		prof := filepath.Join(dir, c.name+".pprof")
		r := run(t, append(append(slices.Clone(args), c.args...), "--cpuprofile", prof)...)
		if r.code == ExitUsage {
			t.Fatalf("%s: exit %d\n%s", c.name, r.code, r.stderr)
		}
		b, err := os.ReadFile(prof)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: the profile is not gzip-compressed: %v", c.name, err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, want := range []string{"cpu", "nanoseconds"} {
			if !bytes.Contains(raw, []byte(want)) {
				t.Errorf("%s: the profile has no %q: not a CPU profile", c.name, want)
			}
		}
	}
	r := run(t, append(slices.Clone(args), "--cpuprofile", filepath.Join(dir, "missing", "x.pprof"), p.Domains[0].Name)...)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--cpuprofile") || r.stdout != "" {
		t.Errorf("unwritable --cpuprofile: exit %d, stdout %q, stderr %q; want exit 2, a message and no report", r.code, r.stdout, r.stderr)
	}
}
