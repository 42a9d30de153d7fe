package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
)

// The bulk benchmark (issue 14): 10,000 lab domains sharing 5 MX hosts, 50
// ms on every DNS answer and every TCP accept (policy hosts and MX
// servers), scanned by the built binary with mailtls check -f --parallel
// 200; beside it the naive way, one mailtls check process per domain, on a
// sample. BULK_DOMAINS, BULK_PARALLEL, NAIVE_SEQ and NAIVE_PAR change the
// sizes.
const (
	bulkLatency = 50 * time.Millisecond
	// bulkCriticalPath: with the shared MX host's address, TLSA answer and
	// probe already in the run's cache, a domain's longest chain is the
	// policy host's A answer, then the TCP accept of the policy fetch (its
	// TLS handshake and response are on loopback). Every other lookup runs
	// beside these, the MX answer included.
	bulkCriticalPath = 2 * bulkLatency
)

type bulkFigures struct {
	domains, parallel   int
	wall                time.Duration
	rssKiB              int64
	cpuBulk, cpuLab     time.Duration // CPU time of the mailtls process and of the lab (this process) during the run
	outBytes            int64
	seqN, parN          int
	seqWall, parWall    time.Duration
	seqRSSKiB, parProcs int
	err                 error
}

var (
	bulkOnce sync.Once
	bulkRes  bulkFigures
)

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil && v > 0 {
		return v
	}
	return def
}

func BenchmarkBulk(b *testing.B) {
	// One measured run per process, whatever b.N: the figures are of a
	// whole run, not of an operation.
	bulkOnce.Do(func() { bulkRes = runBulkBench(b) })
	r := bulkRes
	if r.err != nil {
		b.Fatal(r.err)
	}
	rate := float64(r.domains) / r.wall.Seconds()
	bound := float64(r.parallel) / bulkCriticalPath.Seconds()
	b.ReportMetric(rate, "domains/s")
	b.ReportMetric(rate/bound, "x-bound")
	b.ReportMetric(float64(r.rssKiB)/1024, "MiB-peak-RSS")
	b.ReportMetric(float64(r.outBytes)/float64(r.domains), "B/record")
	// What the CPU allows: the machine's cores over the CPU time one domain
	// costs, mailtls and the lab's servers together (they share the cores).
	perDomain := (r.cpuBulk + r.cpuLab).Seconds() / float64(r.domains)
	b.ReportMetric(1000*r.cpuBulk.Seconds()/float64(r.domains), "mailtls-cpu-ms/domain")
	b.ReportMetric(1000*r.cpuLab.Seconds()/float64(r.domains), "lab-cpu-ms/domain")
	b.ReportMetric(rate/(float64(runtime.NumCPU())/perDomain), "x-cpu-bound")
	if r.seqN > 0 {
		seqRate := float64(r.seqN) / r.seqWall.Seconds()
		b.ReportMetric(seqRate, "naive-seq-domains/s")
		b.ReportMetric(rate/seqRate, "x-naive-seq")
	}
	if r.parN > 0 {
		parRate := float64(r.parN) / r.parWall.Seconds()
		b.ReportMetric(parRate, "naive-par-domains/s")
		b.ReportMetric(rate/parRate, "x-naive-par")
	}
}

func runBulkBench(b *testing.B) (f bulkFigures) {
	f.domains = envInt("BULK_DOMAINS", 10000)
	f.parallel = envInt("BULK_PARALLEL", 200)
	f.seqN = envInt("NAIVE_SEQ", 40)
	f.parN = envInt("NAIVE_PAR", 1000)
	f.parProcs = f.parallel
	dir := b.TempDir()
	bin := filepath.Join(dir, "mailtls")
	build := exec.Command("go", "build", "-o", bin, "../cmd/mailtls")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		f.err = fmt.Errorf("building mailtls: %v\n%s", err, out)
		return f
	}
	l, err := lab.Start()
	if err != nil {
		f.err = err
		return f
	}
	defer l.Close()
	// Policy hosts spread over as many addresses as there are domains in
	// flight ten times over, so that the per-address politeness interval
	// never holds a fetch back: what is measured is the engine.
	p, err := l.Populate(lab.PopulationOptions{Domains: f.domains, SharedMX: 5, Kinds: []string{lab.KindEnforce}, PolicyAddrs: min(f.domains, 10*f.parallel)})
	if err != nil {
		f.err = err
		return f
	}
	l.DNS.SetLatency(bulkLatency)
	l.HTTPS.SetAcceptLatency(bulkLatency)
	for _, s := range p.SharedMX {
		s.SetAcceptLatency(bulkLatency)
	}
	ca, err := l.CA.WriteRootPEM(dir)
	if err != nil {
		f.err = err
		return f
	}
	list := filepath.Join(dir, "domains.txt")
	if err := os.WriteFile(list, []byte(p.List()), 0o644); err != nil {
		f.err = err
		return f
	}
	common := []string{"--resolver", l.DNS.Addr(), "--ca-file", ca}
	for _, c := range l.ConnectToFlags() {
		common = append(common, "--connect-to", c)
	}
	out := filepath.Join(dir, "out.jsonl")
	// --dns-rate 0: the lab resolver is local; the default cap for public
	// resolvers (1,000 queries a second) would otherwise be the bound.
	args := append([]string{"check", "-f", list, "-o", out, "--parallel", fmt.Sprint(f.parallel), "--quiet", "--dns-rate", "0"}, common...)
	cmd := exec.Command(bin, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	labBefore := selfCPU()
	start := time.Now()
	err = cmd.Run()
	f.wall = time.Since(start)
	f.cpuLab = selfCPU() - labBefore
	if code := cmd.ProcessState.ExitCode(); err != nil && code != 0 && code != 1 {
		f.err = fmt.Errorf("bulk run: %v\n%s", err, errb.String())
		return f
	}
	f.rssKiB = cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	f.cpuBulk = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if st, err := os.Stat(out); err == nil {
		f.outBytes = st.Size()
	}
	b.Logf("bulk run:\n%s", strings.TrimSpace(errb.String()))
	if n := countLines(out); n != f.domains {
		f.err = fmt.Errorf("bulk run wrote %d records for %d domains:\n%s", n, f.domains, errb.String())
		return f
	}

	// The naive baseline: one plain mailtls check process per domain, on
	// samples (a sequential loop, and f.parProcs processes at a time).
	naive := func(d string) error {
		c := exec.Command(bin, append([]string{"check", "--json", d}, common...)...)
		c.Stdout, c.Stderr = nil, nil
		err := c.Run()
		if c.ProcessState != nil && (c.ProcessState.ExitCode() == 0 || c.ProcessState.ExitCode() == 1) {
			return nil
		}
		return fmt.Errorf("naive %s: %v", d, err)
	}
	start = time.Now()
	for i := range f.seqN {
		if err := naive(p.Domains[i%len(p.Domains)].Name); err != nil {
			f.err = err
			return f
		}
	}
	f.seqWall = time.Since(start)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sem := make(chan struct{}, f.parProcs)
	var wg sync.WaitGroup
	var mu sync.Mutex
	start = time.Now()
	for i := range f.parN {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if ctx.Err() != nil {
				return
			}
			if err := naive(p.Domains[i%len(p.Domains)].Name); err != nil {
				mu.Lock()
				f.err = err
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	f.parWall = time.Since(start)
	return f
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	return bytes.Count(b, []byte("\n"))
}
