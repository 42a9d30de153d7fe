package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/scan"
)

// DefaultParallel is how many domains a run scans at once.
const DefaultParallel = 50

// Config is one run.
type Config struct {
	// Scanner scans one domain; its tools should be wrapped by a Shared.
	Scanner *scan.Scanner
	Shared  *Shared       // for the summary's counts; may be nil
	Timeout time.Duration // the budget of one domain
	// Parallel is the number of domains in flight; 0 means
	// DefaultParallel.
	Parallel int
	// Rate caps how many domains start per second; 0 means no cap.
	Rate float64
	// Shard keeps only the domains of one partition.
	Shard Shard
	// Format is FormatJSON or FormatCSV; Out gets one Write per record.
	Format string
	Out    io.Writer
	// Header: write the CSV header first (a new file or stdout).
	Header bool
	// Done are the domains already in the output (--resume).
	Done *Set
	// Total is the number of domains to scan when known in advance (a
	// first pass over a file, see Count); -1 when not.
	Total int
	// InputName names the input in messages ("-" for stdin).
	InputName string
	Console   *Console
	// ProgressEvery is the interval of the plain progress line when stderr
	// is not a terminal (10 s by default); a terminal's line is redrawn
	// four times a second.
	ProgressEvery time.Duration
	Now           func() time.Time
}

// Filter is what decides, line by line, which domains a run scans: it
// skips invalid lines, duplicates, other shards and domains already done,
// and counts each.
type filter struct {
	shard Shard
	done  *Set
	seen  *Set
	in    InputCounts
}

// next returns the next domain to scan from r, counting the rest; ok is
// false at the end of the input. err is a read error.
func (f *filter) next(r *Reader, onInvalid func(*LineError)) (it Item, ok bool, err error) {
	for {
		it, err := r.Next()
		f.in.Lines = r.line
		var le *LineError
		switch {
		case errors.Is(err, io.EOF):
			f.in.Complete = true
			return Item{}, false, nil
		case errors.As(err, &le):
			f.in.InvalidLines++
			if len(f.in.Invalid) < maxInvalidKept {
				f.in.Invalid = append(f.in.Invalid, *le)
			}
			if onInvalid != nil {
				onInvalid(le)
			}
			continue
		case err != nil:
			return Item{}, false, err
		}
		if !f.shard.Has(it.Domain) {
			f.in.OtherShards++
			continue
		}
		if !f.seen.Add(it.Domain) {
			f.in.Duplicates++
			continue
		}
		f.in.Domains++
		if f.done != nil && f.done.Has(it.Domain) {
			f.in.AlreadyDone++
			continue
		}
		f.in.Remaining++
		return it, true, nil
	}
}

// Count reads an input once and returns how many domains a run with these
// settings will scan, for the progress line's total.
func Count(r io.Reader, shard Shard, done *Set) (int, error) {
	f := &filter{shard: shard, done: done, seen: NewSet()}
	rd := NewReader(r)
	for {
		_, ok, err := f.next(rd, nil)
		if err != nil {
			return 0, err
		}
		if !ok {
			return f.in.Remaining, nil
		}
	}
}

// result is one scanned domain on its way to the output.
type result struct {
	rec   []byte
	facts Facts
}

// Run scans every domain of in and writes a record for each to cfg.Out in
// the order they finish. Invalid lines are reported on the Console and
// skipped. When ctx ends (Ctrl-C), no new domain starts, the domains in
// flight are abandoned without a record, and the output holds whole
// records only. Run returns the summary; a write error stops the run and
// is reported in Summary.Error and returned.
func Run(ctx context.Context, cfg Config, in io.Reader) (*Summary, error) {
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	start := time.Now()
	sum := newSummary(now())
	con := cfg.Console
	if con == nil {
		con = &Console{W: io.Discard, Quiet: true}
	}
	parallel := cfg.Parallel
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	var limiter *rate.Limiter
	if cfg.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	var cnt counters
	cnt.total.Store(int64(cfg.Total))
	if cfg.Total < 0 {
		cnt.total.Store(-1)
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()

	// The reader: one goroutine, so the input streams and the filter
	// needs no lock.
	f := &filter{shard: cfg.Shard, done: cfg.Done, seen: NewSet()}
	items := make(chan Item)
	var readErr error
	var readWG sync.WaitGroup
	readWG.Go(func() {
		defer close(items)
		rd := NewReader(in)
		for {
			it, ok, err := f.next(rd, func(le *LineError) {
				con.Printf("mailtls check: %s:%d: %s: %q (skipped)", cfg.InputName, le.Line, le.Reason, le.Text)
			})
			if err != nil {
				readErr = fmt.Errorf("reading %s: %w", cfg.InputName, err)
				stopRun()
				return
			}
			if !ok {
				cnt.total.Store(int64(f.in.Remaining))
				return
			}
			select {
			case items <- it:
			case <-runCtx.Done():
				return
			}
		}
	})

	// The scanners.
	results := make(chan result, parallel)
	var scanWG sync.WaitGroup
	for range parallel {
		scanWG.Go(func() {
			for it := range items {
				if limiter != nil && limiter.Wait(runCtx) != nil {
					continue // drain: the run is stopping
				}
				if runCtx.Err() != nil {
					continue
				}
				dctx, cancel := context.WithTimeout(runCtx, cfg.Timeout)
				o := cfg.Scanner.Scan(dctx, it.Domain)
				cancel()
				if runCtx.Err() != nil {
					cnt.abandoned.Add(1) // its evidence is cut short: no record
					continue
				}
				r := check.Evaluate(o, now())
				r.Notes = it.Notes
				facts := NewFacts(r)
				var rec []byte
				var err error
				if cfg.Format == FormatCSV {
					rec = EncodeCSV(facts, it.Domain, it.Line)
				} else if rec, err = EncodeJSON(r, it); err != nil {
					con.Printf("mailtls check: %s: encoding the report: %v", it.Domain, err)
					continue
				}
				select {
				case results <- result{rec, facts}:
				case <-runCtx.Done():
					cnt.abandoned.Add(1)
				}
			}
		})
	}
	go func() { scanWG.Wait(); close(results) }()

	// Progress.
	progDone := make(chan struct{})
	var progWG sync.WaitGroup
	if !con.Quiet {
		every := cfg.ProgressEvery
		if every <= 0 {
			every = 10 * time.Second
		}
		if con.Terminal {
			every = 250 * time.Millisecond
		}
		progWG.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					con.progress(progressLine(&cnt, time.Since(start)))
				case <-progDone:
					return
				}
			}
		})
	}

	// The writer: this goroutine. Each record is one Write, so a kill
	// leaves at most the last one cut off (see LoadDone).
	var writeErr error
	if cfg.Header && cfg.Format == FormatCSV {
		if _, err := cfg.Out.Write(EncodeCSVHeader()); err != nil {
			writeErr = err
			stopRun()
		}
	}
	for res := range results {
		if writeErr != nil {
			continue
		}
		if _, err := cfg.Out.Write(res.rec); err != nil {
			writeErr = err
			stopRun()
			continue
		}
		sum.add(res.facts)
		cnt.done.Add(1)
		if len(res.facts.ScanErrors) > 0 {
			cnt.scanErrors.Add(1)
		}
	}
	readWG.Wait()
	close(progDone)
	progWG.Wait()
	con.clear()

	sum.Input = f.in
	sum.Abandoned = int(cnt.abandoned.Load())
	sum.Interrupted = ctx.Err() != nil
	switch {
	case f.in.Complete:
		n := max(f.in.Remaining-sum.Scanned-sum.Abandoned, 0)
		sum.NotStarted = &n
	case cfg.Total >= 0:
		n := max(cfg.Total-sum.Scanned-sum.Abandoned, 0)
		sum.NotStarted = &n
	}
	if cfg.Shared != nil {
		sum.Shared = cfg.Shared.Stats()
	}
	sum.finish(now(), start)
	sum.Seconds = time.Since(start).Seconds()
	if sum.Seconds > 0 {
		sum.DomainsPerSecond = float64(sum.Scanned) / sum.Seconds
	}
	var err error
	switch {
	case writeErr != nil:
		err = fmt.Errorf("writing the output: %w", writeErr)
	case readErr != nil:
		err = readErr
	}
	if err != nil {
		sum.Error = err.Error()
	}
	sum.Complete = err == nil && !sum.Interrupted && f.in.Complete && sum.Scanned == f.in.Remaining
	return sum, err
}
