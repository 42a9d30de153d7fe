package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/bulk"
	"github.com/mailtls/mailtls/internal/lab"
)

// The bulk benchmark (issue 14): 10,000 lab domains sharing 5 MX hosts, 50
// ms on every DNS answer and every TCP accept (policy hosts and MX
// servers), scanned by the built binary with mailtls check -f --parallel
// 200. Beside it, in the same go test process and one after the other:
// the same run over a smaller and a larger list (peak RSS against the
// number of domains), a run whose --parallel is small enough for the
// cores to keep up (the engine against the latency bound when CPU is not
// the limit), and the naive way, one mailtls check process per domain, on
// samples. The lab's servers run in this process, mailtls in its own: the
// CPU time of each is measured apart, and they share the machine's cores.
//
// BULK_DOMAINS, BULK_PARALLEL, BULK_SMALL, BULK_LARGE, BULK_LOW_DOMAINS,
// BULK_LOW_PARALLEL, NAIVE_SEQ and NAIVE_PAR change the sizes (0 skips a
// run: BULK_SMALL, BULK_LARGE, BULK_LOW_DOMAINS, NAIVE_SEQ, NAIVE_PAR).
// BULK_PROFILE=DIR writes a CPU profile of each run to DIR: mailtls's
// (--cpuprofile) as mailtls-N-P.pprof and the lab's (this process, from
// the start of mailtls to its exit) as lab-N-P.pprof, for N domains at
// --parallel P, and keeps the records there as out-N-P.jsonl.
const (
	bulkLatency = 50 * time.Millisecond
	// bulkCriticalPath: with the shared MX host's address, TLSA answer and
	// probe already in the run's cache, a domain's longest chain is the
	// policy host's A answer, then the TCP accept of the policy fetch (its
	// TLS handshake and response are on loopback). Every other lookup runs
	// beside these, the MX answer included.
	bulkCriticalPath = 2 * bulkLatency
)

// bulkRun is one mailtls check -f run against a fresh lab.
type bulkRun struct {
	domains, parallel int
	wall              time.Duration
	rssKiB            int64
	cpuBulk, cpuLab   time.Duration // CPU time of the mailtls process and of the lab (this process) during the run
	cpuOthers, steal  time.Duration // CPU time of every other process on the machine, and time the hypervisor gave to others
	outBytes          int64
	undetermined      int           // domains whose policy could not be determined (a lookup or fetch out of time)
	peakAt            time.Duration // when the sampled RSS was highest
	peakOutput        float64       // the share of the output written by then
	p50, p90          time.Duration // a domain's scan time (the records' duration_ms)
}

func (r bulkRun) rate() float64  { return float64(r.domains) / r.wall.Seconds() }
func (r bulkRun) bound() float64 { return float64(r.parallel) / bulkCriticalPath.Seconds() }

// cpuMS is the CPU milliseconds per domain of mailtls and of the lab.
func (r bulkRun) cpuMS() (mailtls, lab float64) {
	n := float64(r.domains)
	return 1000 * r.cpuBulk.Seconds() / n, 1000 * r.cpuLab.Seconds() / n
}

type bulkFigures struct {
	main, small, large, low bulkRun
	seqN, parN, parProcs    int
	seqWall, parWall        time.Duration
	naiveUndetermined       int // naive scans that ended without a policy verdict (exit 3)
	err                     error
}

var (
	bulkOnce sync.Once
	bulkRes  bulkFigures
)

// envInt reads a positive size; def when unset or not one.
func envInt(name string, def int) int {
	v, err := strconv.Atoi(os.Getenv(name))
	if err != nil || v <= 0 {
		return def
	}
	return v
}

// envCount is envInt for a run that 0 skips.
func envCount(name string, def int) int {
	v, err := strconv.Atoi(os.Getenv(name))
	if err != nil || v < 0 {
		return def
	}
	return v
}

func BenchmarkBulk(b *testing.B) {
	// One measured run per process, whatever b.N: the figures are of
	// whole runs, not of an operation.
	bulkOnce.Do(func() { bulkRes = runBulkBench(b) })
	f := bulkRes
	if f.err != nil {
		b.Fatal(f.err)
	}
	r := f.main
	rate := r.rate()
	b.ReportMetric(rate, "domains/s")
	b.ReportMetric(rate/r.bound(), "x-bound")
	b.ReportMetric(float64(r.p50.Milliseconds()), "ms-p50-scan")
	b.ReportMetric(float64(r.rssKiB)/1024, "MiB-peak-RSS")
	b.ReportMetric(r.peakAt.Seconds(), "s-peak-RSS-at")
	b.ReportMetric(r.peakOutput, "peak-RSS-at-done")
	b.ReportMetric(r.wall.Seconds(), "s-wall")
	b.ReportMetric(float64(r.outBytes)/float64(r.domains), "B/record")
	b.ReportMetric(float64(r.undetermined), "undetermined")
	// What the CPU allows: the machine's cores over the CPU time one domain
	// costs, mailtls and the lab's servers together (they share the cores).
	cm, cl := r.cpuMS()
	b.ReportMetric(cm, "mailtls-cpu-ms/domain")
	b.ReportMetric(cl, "lab-cpu-ms/domain")
	b.ReportMetric(rate/(float64(runtime.NumCPU())*1000/(cm+cl)), "x-cpu-bound")
	b.ReportMetric(float64(runtime.NumCPU()), "cores")
	// How much of the machine others had meanwhile (in cores): other
	// processes, and other virtual machines (steal).
	b.ReportMetric(r.cpuOthers.Seconds()/r.wall.Seconds(), "others-cores")
	b.ReportMetric(r.steal.Seconds()/r.wall.Seconds(), "steal-cores")
	for _, s := range []struct {
		name string
		r    bulkRun
	}{{"small", f.small}, {"large", f.large}} {
		if s.r.domains > 0 {
			b.ReportMetric(float64(s.r.domains), s.name+"-domains")
			b.ReportMetric(float64(s.r.rssKiB)/1024, "MiB-peak-RSS-"+s.name)
		}
	}
	if lo := f.low; lo.domains > 0 {
		b.ReportMetric(float64(lo.parallel), "low-parallel")
		b.ReportMetric(lo.rate(), "low-domains/s")
		b.ReportMetric(lo.rate()/lo.bound(), "low-x-bound")
		b.ReportMetric(float64(lo.p50.Milliseconds()), "low-ms-p50-scan")
		lm, ll := lo.cpuMS()
		b.ReportMetric(lo.rate()/(float64(runtime.NumCPU())*1000/(lm+ll)), "low-x-cpu-bound")
	}
	if f.seqN > 0 {
		seqRate := float64(f.seqN) / f.seqWall.Seconds()
		b.ReportMetric(seqRate, "naive-seq-domains/s")
		b.ReportMetric(rate/seqRate, "x-naive-seq")
	}
	if f.parN > 0 {
		parRate := float64(f.parN) / f.parWall.Seconds()
		b.ReportMetric(parRate, "naive-par-domains/s")
		b.ReportMetric(rate/parRate, "x-naive-par")
	}
	if f.seqN+f.parN > 0 {
		b.ReportMetric(float64(f.naiveUndetermined), "naive-undetermined")
	}
}

func runBulkBench(b *testing.B) (f bulkFigures) {
	n := envInt("BULK_DOMAINS", 10000)
	parallel := envInt("BULK_PARALLEL", 200)
	f.seqN = envCount("NAIVE_SEQ", 40)
	f.parN = envCount("NAIVE_PAR", 400)
	f.parProcs = parallel
	dir := b.TempDir()
	bin := filepath.Join(dir, "mailtls")
	build := exec.Command("go", "build", "-o", bin, "../cmd/mailtls")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		f.err = fmt.Errorf("building mailtls: %v\n%s", err, out)
		return f
	}
	// The smaller and larger lists first, then the main run, whose lab
	// the naive runs reuse.
	if s := envCount("BULK_SMALL", n/4); s > 0 {
		if f.small, f.err = bulkBenchRun(b, bin, s, parallel, nil); f.err != nil {
			return f
		}
	}
	if s := envCount("BULK_LARGE", 2*n); s > 0 {
		if f.large, f.err = bulkBenchRun(b, bin, s, parallel, nil); f.err != nil {
			return f
		}
	}
	if s := envCount("BULK_LOW_DOMAINS", 1000); s > 0 {
		if f.low, f.err = bulkBenchRun(b, bin, s, envInt("BULK_LOW_PARALLEL", 10), nil); f.err != nil {
			return f
		}
	}
	f.main, f.err = bulkBenchRun(b, bin, n, parallel, func(p *lab.Population, common []string) error {
		return naiveRuns(bin, p, common, &f)
	})
	return f
}

// bulkBenchRun scans n generated domains at --parallel parallel against a
// lab of their own; then, if set, calls after with the population and the
// flags that point mailtls at the lab.
func bulkBenchRun(b *testing.B, bin string, n, parallel int, after func(*lab.Population, []string) error) (r bulkRun, err error) {
	r.domains, r.parallel = n, parallel
	dir := b.TempDir()
	l, err := lab.Start()
	if err != nil {
		return r, err
	}
	defer l.Close()
	// Policy hosts on twice as many addresses as the bound's rate needs
	// at the politeness default (10 connections a second per address), so
	// that the per-address interval never holds a fetch back: what is
	// measured is the engine. (Each address is one --connect-to rule.)
	addrs := max(parallel, 2*int(r.bound())/10)
	p, err := l.Populate(lab.PopulationOptions{Domains: n, SharedMX: 5, Kinds: []string{lab.KindEnforce}, PolicyAddrs: min(n, addrs)})
	if err != nil {
		return r, err
	}
	l.DNS.SetLatency(bulkLatency)
	l.HTTPS.SetAcceptLatency(bulkLatency)
	for _, s := range p.SharedMX {
		s.SetAcceptLatency(bulkLatency)
	}
	ca, err := l.CA.WriteRootPEM(dir)
	if err != nil {
		return r, err
	}
	list := filepath.Join(dir, "domains.txt")
	if err := os.WriteFile(list, []byte(p.List()), 0o644); err != nil {
		return r, err
	}
	common := []string{"--resolver", l.DNS.Addr(), "--ca-file", ca}
	for _, c := range l.ConnectToFlags() {
		common = append(common, "--connect-to", c)
	}
	out := filepath.Join(dir, "out.jsonl")
	if profDir := os.Getenv("BULK_PROFILE"); profDir != "" {
		out = filepath.Join(profDir, fmt.Sprintf("out-%d-%d.jsonl", n, parallel))
	}
	// --dns-rate 0: the lab resolver is local; the default cap for public
	// resolvers (1,000 queries a second) would otherwise be the bound.
	summary := filepath.Join(dir, "summary.json")
	args := append([]string{"check", "-f", list, "-o", out, "--summary", summary, "--parallel", fmt.Sprint(parallel), "--quiet", "--dns-rate", "0"}, common...)
	profDir := os.Getenv("BULK_PROFILE")
	var labProf *os.File
	if profDir != "" {
		name := fmt.Sprintf("%d-%d.pprof", n, parallel)
		args = append(args, "--cpuprofile", filepath.Join(profDir, "mailtls-"+name))
		if labProf, err = os.Create(filepath.Join(profDir, "lab-"+name)); err != nil {
			return r, err
		}
		defer labProf.Close()
	}
	cmd := exec.Command(bin, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	runtime.GC() // the population's garbage is not the run's
	if labProf != nil {
		if err := pprof.StartCPUProfile(labProf); err != nil {
			return r, fmt.Errorf("BULK_PROFILE: %v", err)
		}
	}
	labBefore, machineBefore := selfCPU(), machineCPU()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		if labProf != nil {
			pprof.StopCPUProfile()
		}
		return r, err
	}
	stopWatch := watchRSS(cmd.Process.Pid, out, start, &r)
	err = cmd.Wait()
	r.wall = time.Since(start)
	stopWatch()
	r.cpuLab = selfCPU() - labBefore
	machine := machineCPU()
	if labProf != nil {
		pprof.StopCPUProfile()
	}
	// Exit 3: some policies could not be determined (counted below).
	if code := cmd.ProcessState.ExitCode(); err != nil && code != 0 && code != 1 && code != 3 {
		return r, fmt.Errorf("bulk run of %d domains: %v\n%s", n, err, errb.String())
	}
	r.cpuBulk = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if machineBefore.ok && machine.ok {
		r.cpuOthers = max(machine.busy-machineBefore.busy-r.cpuBulk-r.cpuLab, 0)
		r.steal = machine.steal - machineBefore.steal
	}
	if st, err := os.Stat(out); err == nil {
		r.outBytes = st.Size()
	}
	b.Logf("bulk run, %d domains, --parallel %d:\n%s", n, parallel, strings.TrimSpace(errb.String()))
	var sum struct {
		PolicyStatus map[string]int `json:"policy_status"`
	}
	if b, err := os.ReadFile(summary); err != nil || json.Unmarshal(b, &sum) != nil {
		return r, fmt.Errorf("bulk run: no summary (%v)", err)
	}
	r.undetermined = sum.PolicyStatus["undetermined"]
	durations, err := scanDurations(out)
	if err != nil {
		return r, err
	}
	if len(durations) != n {
		return r, fmt.Errorf("bulk run wrote %d records for %d domains:\n%s", len(durations), n, errb.String())
	}
	r.p50, r.p90 = durations[n/2], durations[n*9/10]
	if after != nil {
		err = after(p, common)
	}
	return r, err
}

// watchRSS samples the memory of process pid every 100 ms: r.rssKiB is the
// highest VmHWM (the kernel's high-water mark of its resident memory,
// missing at most the last 100 ms), and r.peakAt when the resident memory
// was highest, with how much of the output (judged by its size against
// 10 KB a record) had been written by then.
//
// Not the rusage Maxrss of the child: Go starts a child with CLONE_VM, so
// until its exec the child shares this process's memory, and Linux counts
// that high-water mark (the lab, hundreds of MiB with 20,000 domains) as
// the child's own.
func watchRSS(pid int, out string, start time.Time, r *bulkRun) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var best int64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				continue
			}
			for line := range strings.Lines(string(b)) {
				name, rest, _ := strings.Cut(line, ":")
				kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				switch name {
				case "VmHWM":
					r.rssKiB = max(r.rssKiB, kib)
				case "VmRSS":
					if kib > best {
						best = kib
						r.peakAt = time.Since(start)
						if st, err := os.Stat(out); err == nil {
							r.peakOutput = float64(st.Size()) / 10e3 / float64(r.domains)
						}
					}
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// scanDurations reads the duration_ms of every record, sorted.
func scanDurations(path string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var rec struct {
			DurationMS float64 `json:"duration_ms"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("%s: record %d: %v", path, len(out)+1, err)
		}
		out = append(out, time.Duration(rec.DurationMS*float64(time.Millisecond)))
	}
	slices.Sort(out)
	return out, sc.Err()
}

// naiveRuns is the naive baseline: one plain mailtls check process per
// domain, on samples (a sequential loop, and f.parProcs processes at a
// time). Exit 3 (the policy could not be determined: a lookup or the
// fetch ran out of time on a loaded machine) is a scan that ended; it is
// counted, not fatal.
func naiveRuns(bin string, p *lab.Population, common []string, f *bulkFigures) error {
	var undetermined atomic.Int64
	naive := func(d string) error {
		c := exec.Command(bin, append([]string{"check", "--json", d}, common...)...)
		err := c.Run()
		if c.ProcessState != nil {
			switch c.ProcessState.ExitCode() {
			case 0, 1:
				return nil
			case 3:
				undetermined.Add(1)
				return nil
			}
		}
		return fmt.Errorf("naive %s: %v", d, err)
	}
	defer func() { f.naiveUndetermined = int(undetermined.Load()) }()
	start := time.Now()
	for i := range f.seqN {
		if err := naive(p.Domains[i%len(p.Domains)].Name); err != nil {
			return err
		}
	}
	f.seqWall = time.Since(start)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sem := make(chan struct{}, f.parProcs)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
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
				firstErr = cmpOr(firstErr, err)
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	f.parWall = time.Since(start)
	return firstErr
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// cpuTimes are the machine's CPU times since boot (/proc/stat, all cores).
type cpuTimes struct {
	busy, steal time.Duration
	ok          bool
}

// machineCPU reads the busy time (user, nice, system, irq, softirq) of all
// cores and the time stolen by the hypervisor; ok is false off Linux.
func machineCPU() (c cpuTimes) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return c
	}
	tick := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * time.Second / 100 // USER_HZ
	}
	c.busy = tick(1) + tick(2) + tick(3) + tick(6) + tick(7)
	c.steal = tick(8)
	c.ok = true
	return c
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBulkSeenSet measures what a bulk run keeps per domain of the
// list whatever its length: the set of domains seen (duplicates, --resume),
// here for a million names.
func BenchmarkBulkSeenSet(b *testing.B) {
	const n = 1_000_000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("d%07d.example", i)
	}
	var perDomain float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := bulk.NewSet()
		for _, name := range names {
			s.Add(name)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s.Len() != n {
			b.Fatalf("%d names in the set, want %d", s.Len(), n)
		}
		perDomain = float64(after.HeapAlloc-before.HeapAlloc) / n
	}
	b.ReportMetric(perDomain, "B/domain")
}
