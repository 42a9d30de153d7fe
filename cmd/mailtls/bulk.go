package main

import (
	"context"
	"encoding/json"
	"errors"

	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/bulk"
)

// bulkFlags are the flags of mailtls check -f (docs/bulk.md).
type bulkFlags struct {
	file          string
	out           string
	resume        bool
	summary       string
	shard         string
	rate          string
	quiet         bool
	perAddress    int
	addrInterval  time.Duration
	dnsRate       float64
	progressEvery time.Duration
}

// bulkOnly are the flags that only make sense with -f.
var bulkOnly = []string{"o", "resume", "summary", "shard", "rate", "quiet", "per-address", "address-interval", "dns-rate", "progress-every"}

func (b *bulkFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&b.file, "f", "", "scan the domains listed in `FILE` (\"-\" for standard input): one per line or \"rank,domain\"")
	fs.StringVar(&b.out, "o", "", "with -f: write the records to `FILE` instead of standard output")
	fs.BoolVar(&b.resume, "resume", false, "with -f and -o: skip the domains already in the -o file and append the rest")
	fs.StringVar(&b.summary, "summary", "", "with -f: also write the end-of-run summary as JSON to `FILE`")
	fs.StringVar(&b.shard, "shard", "", "with -f: scan only the i-th of n stable partitions of the list (`i/n`, 1 <= i <= n)")
	fs.StringVar(&b.rate, "rate", "", "with -f: start at most `N/s` domains a second (default: no limit beyond --parallel)")
	fs.BoolVar(&b.quiet, "quiet", false, "with -f: no progress line on standard error")
	fs.IntVar(&b.perAddress, "per-address", bulk.DefaultPerAddress, "with -f: at most `N` SMTP probes or policy fetches at once to one address")
	fs.DurationVar(&b.addrInterval, "address-interval", bulk.DefaultAddressInterval, "with -f: at least `D` between connections to one address (longer after a 421 or a tarpit)")
	fs.Float64Var(&b.dnsRate, "dns-rate", defaultDNSRate, "with -f: at most `N` queries a second to each resolver (0: no cap)")
	fs.DurationVar(&b.progressEvery, "progress-every", 10*time.Second, "with -f: print a progress line every `D` when standard error is not a terminal")
}

// bulkGCPercent is the garbage collector's target of a bulk run (GOGC in
// the environment still wins). A run allocates fast, mostly inside
// crypto/tls, and keeps little beyond its bounded caches; at Go's default
// of 100 the collector took about an eighth of the run's CPU (a profile of
// BenchmarkBulk). 200 halves its work for about a third more peak memory
// (docs/bulk.md, Memory).
const bulkGCPercent = 200

// defaultDNSRate stays below the per-client limits of public resolvers
// (Google Public DNS documents 1,500 queries a second).
const defaultDNSRate = 1000

func (b *bulkFlags) used(fs *flag.FlagSet) bool { return b.firstUsed(fs) != "" }

func (b *bulkFlags) firstUsed(fs *flag.FlagSet) string {
	for _, n := range bulkOnly {
		if flagSet(fs, n) {
			return "--" + n
		}
	}
	return ""
}

// parseRate reads "N/s" or "N".
func parseRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "/s"), 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("--rate %q: want domains per second, e.g. 20/s", s)
	}
	return v, nil
}

// runBulk is mailtls check -f.
func runBulk(ctx context.Context, env Env, opts scanOptions, bf bulkFlags, format string, parallel int) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(env.Stderr, "mailtls check: "+format+"\n", args...)
		return ExitUsage
	}
	if format == "text" {
		return fail("-f writes records: --format json (JSON Lines, the default) or csv")
	}
	if bf.resume && bf.out == "" {
		return fail("--resume needs -o FILE (the output to continue)")
	}
	if parallel < 1 {
		return fail("--parallel must be at least 1")
	}
	if bf.perAddress < 1 {
		return fail("--per-address must be at least 1")
	}
	if bf.addrInterval < 0 || bf.dnsRate < 0 || bf.progressEvery <= 0 {
		return fail("--address-interval, --dns-rate and --progress-every must not be negative")
	}
	rate, err := parseRate(bf.rate)
	if err != nil {
		return fail("%v", err)
	}
	var shard bulk.Shard
	if bf.shard != "" {
		if shard, err = bulk.ParseShard(bf.shard); err != nil {
			return fail("--shard: %s", bulkReason(err))
		}
	}
	if bf.out != "" && bf.file != "-" && sameFile(bf.out, bf.file) {
		return fail("-o %s is the input file", bf.out)
	}
	scanner, res, err := opts.build(env)
	if err != nil {
		return fail("%v", err)
	}
	if env.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(bulkGCPercent))
	}

	// The shared layer: caches and politeness, behind the scan's own
	// interfaces (package bulk).
	res.Dial = bulk.ResolverDial(bf.dnsRate)
	gate := &bulk.Gate{Max: bf.perAddress, Interval: bf.addrInterval}
	if bf.addrInterval == 0 {
		gate.Interval = -1
	}
	shared := bulk.NewShared(ctx, gate, opts.nc.timeout, env.Now)
	defer shared.Wait()
	scanner.Resolver = shared.Resolver(scanner.Resolver)
	scanner.Fetcher = shared.Fetcher(scanner.Fetcher)
	if scanner.Prober != nil {
		scanner.Prober = shared.Prober(scanner.Prober)
	}

	// The input, counted first when it is a file (for the progress total).
	var in io.Reader = env.Stdin
	inputName := "-"
	total := -1
	var done *bulk.Set
	out := env.Stdout
	header := true
	if bf.out != "" {
		flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if bf.resume {
			flags = os.O_RDWR | os.O_CREATE | os.O_APPEND
		}
		f, err := os.OpenFile(bf.out, flags, 0o644)
		if err != nil {
			return fail("-o: %v", err)
		}
		defer f.Close()
		if bf.resume {
			r, err := bulk.LoadDone(f, format)
			if err != nil {
				return fail("--resume: %s", bulkReason(err))
			}
			done, header = r.Done, !r.HasHeader
			if r.CutBytes > 0 {
				fmt.Fprintf(env.Stderr, "mailtls check: %s: dropped a cut-off last record (%d bytes) left by an interrupted run; its domain is scanned again\n", bf.out, r.CutBytes)
			}
		}
		out = f
	}
	if bf.file != "-" {
		inputName = bf.file
		f, err := os.Open(bf.file)
		if err != nil {
			return fail("-f: %v", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			if total, err = bulk.Count(f, shard, done); err != nil {
				return fail("-f: %v", err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return fail("-f: %v", err)
			}
		}
		in = f
	}

	con := &bulk.Console{W: env.Stderr, Terminal: env.IsTerminal(env.Stderr), Quiet: bf.quiet}
	sum, runErr := bulk.Run(ctx, bulk.Config{
		Scanner: scanner, Shared: shared, Timeout: opts.nc.timeout, Parallel: parallel, Rate: rate,
		Shard: shard, Format: format, Out: out, Header: header, Done: done, Total: total,
		InputName: inputName, Console: con, ProgressEvery: bf.progressEvery, Now: env.Now,
	}, in)
	if err := sum.WriteText(prefixWriter{env.Stderr}); err != nil {
		return ExitUsage
	}
	if bf.summary != "" {
		if err := writeJSONFile(bf.summary, sum); err != nil {
			fmt.Fprintf(env.Stderr, "mailtls check: --summary: %v\n", err)
			return ExitUsage
		}
	}
	switch {
	case runErr != nil:
		fmt.Fprintf(env.Stderr, "mailtls check: %v\n", runErr)
		return ExitUsage
	case sum.Interrupted:
		fmt.Fprintln(env.Stderr, "mailtls check: interrupted")
		return ExitUsage
	case sum.ErrorFindings > 0:
		return ExitFindings
	case sum.PolicyStatus["undetermined"] > 0:
		return ExitUndetermined
	}
	return ExitOK
}

// prefixWriter starts every line with "mailtls check: ".
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	s := strings.TrimSuffix(string(b), "\n")
	_, err := io.WriteString(p.w, "mailtls check: "+strings.ReplaceAll(s, "\n", "\nmailtls check: ")+"\n")
	return len(b), err
}

// writeJSONFile replaces path with v as indented JSON, through a temporary
// file in the same directory, so a reader never sees half a summary.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// sameFile reports whether a and b name the same existing file.
func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// bulkReason words an error of package bulk for the command line: the
// reason of an *InputError without the package prefix, else the error.
func bulkReason(err error) string {
	var ie *bulk.InputError
	if errors.As(err, &ie) {
		return ie.Reason
	}
	return err.Error()
}
