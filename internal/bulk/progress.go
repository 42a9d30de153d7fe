package bulk

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Console is the run's stderr: messages, and a progress line that a
// terminal shows in place (redrawn after each message) and other outputs
// get as a plain line now and then. It is safe for concurrent use.
type Console struct {
	W        io.Writer
	Terminal bool
	Quiet    bool // no progress at all (messages still go out)

	mu    sync.Mutex
	shown string // the progress line on the terminal, "" if none
}

// Printf writes a message on a line of its own.
func (c *Console) Printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	if c.Terminal && c.shown != "" {
		fmt.Fprint(c.W, "\r\x1b[K"+msg+c.shown)
		return
	}
	fmt.Fprint(c.W, msg)
}

// progress shows line: in place on a terminal, else as a line of its own.
func (c *Console) progress(line string) {
	if c.Quiet {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Terminal {
		c.shown = line
		fmt.Fprint(c.W, "\r\x1b[K"+line)
		return
	}
	fmt.Fprintln(c.W, line)
}

// clear removes the progress line from a terminal.
func (c *Console) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Terminal && c.shown != "" {
		fmt.Fprint(c.W, "\r\x1b[K")
		c.shown = ""
	}
}

// counters are the live numbers of a run, read by the progress line.
type counters struct {
	total      atomic.Int64 // domains to scan; -1 until known
	done       atomic.Int64 // records written
	scanErrors atomic.Int64 // records with at least one scan error
	abandoned  atomic.Int64
}

// progressLine renders the counters.
func progressLine(c *counters, elapsed time.Duration) string {
	done, total := c.done.Load(), c.total.Load()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	var b strings.Builder
	if total >= 0 {
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		fmt.Fprintf(&b, "%d/%d domains (%.0f%%), %.1f/s", done, total, pct, rate)
		if rate > 0 && total > done {
			eta := time.Duration(float64(total-done) / rate * float64(time.Second))
			fmt.Fprintf(&b, ", ETA %s", eta.Round(time.Second))
		}
	} else {
		fmt.Fprintf(&b, "%d domains, %.1f/s", done, rate)
	}
	fmt.Fprintf(&b, ", %d with scan errors", c.scanErrors.Load())
	return b.String()
}
