// Command smbench is the harness of bench/resolver.sh: "lab" runs a lab
// of MTA-STS domains on fixed loopback addresses (for mailtls and Debian's
// mta-sts-daemon alike), and "load" is the socketmap load generator used
// for both, so that both are measured by the same client.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/socketmap"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: smbench lab|load|hist [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "lab":
		err = runLab(os.Args[2:])
	case "load":
		err = runLoad(os.Args[2:])
	case "hist":
		err = runHist(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "smbench:", err)
		os.Exit(1)
	}
}

// runLab publishes -domains MTA-STS domains (enforce, two mx patterns) and
// serves them until SIGTERM; it writes the lab root to DIR/ca.pem and the
// domains to DIR/domains.txt, then prints "ready".
func runLab(args []string) error {
	fs := flag.NewFlagSet("lab", flag.ExitOnError)
	dir := fs.String("dir", "", "output directory")
	dnsAddr := fs.String("dns", "127.0.56.1:53", "DNS address")
	httpsAddr := fs.String("https", "127.0.56.2:443", "HTTPS address")
	n := fs.Int("domains", 100, "domains")
	fs.Parse(args)
	l, err := lab.StartAt(*dnsAddr, *httpsAddr)
	if err != nil {
		return err
	}
	defer l.Close()
	var names []string
	for i := range *n {
		d := fmt.Sprintf("d%d.bench.test", i)
		if err := l.DNS.Add(fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=20261101"`, d), fmt.Sprintf("%s. 300 IN MX 10 mx1.%s.", d, d)); err != nil {
			return err
		}
		body := fmt.Sprintf("version: STSv1\r\nmode: enforce\r\nmx: mx1.%s\r\nmx: *.mail.%s\r\nmax_age: 604800\r\n", d, d)
		if _, err := l.PolicyHost(d, lab.PolicyHostOptions{Body: body}); err != nil {
			return err
		}
		names = append(names, d)
	}
	if err := os.WriteFile(filepath.Join(*dir, "ca.pem"), l.CA.RootPEM(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "domains.txt"), []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

// runLoad measures a socketmap server with -c connections and prints
// "requests/s p50 p99 p99.9 lag-p99" (microseconds). Latency runs from
// writing a request to reading its reply; every reply must start with
// -expect.
//
// Without -rate the load is closed: -p requests stay in flight on each
// connection, so the server is saturated and, by Little's law, the mean
// latency is the requests in flight divided by the throughput whatever
// the server's own speed (64 x 4 in flight at 50,000/s is 5 ms). That
// measures throughput. With -rate the load is open: requests go out on a
// fixed schedule, -rate per second over all connections, whether earlier
// replies came or not, as Postfix's smtp processes ask, each on its own
// connection, one lookup at a time. That measures the latency at a given
// load. lag-p99 is how late the client itself sent (its own scheduling on
// a busy machine), reported apart so that it is not charged to the server.
func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "", "socketmap address host:port")
	name := fs.String("name", "postfix", "socketmap name")
	keysFile := fs.String("keys", "", "file of keys, one per line (used in turn)")
	conns := fs.Int("c", 64, "connections")
	depth := fs.Int("p", 4, "requests in flight per connection (closed load)")
	rate := fs.Float64("rate", 0, "requests per second over all connections (open load); 0: closed load")
	dur := fs.Duration("d", 10*time.Second, "duration")
	expect := fs.String("expect", "OK secure", "every reply must start with this")
	once := fs.Bool("once", false, "ask each key once on one connection (warm-up) and stop")
	fs.Parse(args)
	data, err := os.ReadFile(*keysFile)
	if err != nil {
		return err
	}
	keys := strings.Fields(string(data))
	if *once {
		c, err := socketmap.Dial(context.Background(), *addr)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, k := range keys {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			rep, err := c.Query(ctx, *name, k)
			cancel()
			if err != nil {
				return err
			}
			if !strings.HasPrefix(rep.String(), *expect) {
				return fmt.Errorf("%s: %q, want %q...", k, rep.String(), *expect)
			}
		}
		return nil
	}
	var (
		total      atomic.Int64
		bad        atomic.Int64
		mu         sync.Mutex
		lats, lags []time.Duration
		wg         sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(*dur)
	for i := range *conns {
		wg.Go(func() {
			nc, err := net.Dial("tcp", *addr)
			if err != nil {
				bad.Add(1)
				return
			}
			defer nc.Close()
			inFlight := *depth
			if *rate > 0 {
				inFlight = 1 << 16 // open load: the schedule decides, not the replies
			}
			sent := make(chan time.Time, inFlight)
			stop := make(chan struct{})
			var local, localLag []time.Duration
			writerDone := make(chan struct{})
			go func() { // writer
				defer close(writerDone)
				w := bufio.NewWriter(nc)
				var buf []byte
				j := i
				// Open load: connection i sends at start + (i/conns + k) x interval.
				interval := time.Duration(0)
				var next time.Time
				if *rate > 0 {
					interval = time.Duration(float64(*conns) / *rate * float64(time.Second))
					next = start.Add(interval * time.Duration(i) / time.Duration(*conns))
				}
				for {
					if interval > 0 {
						if d := time.Until(next); d > 0 {
							select {
							case <-stop:
								return
							case <-time.After(d):
							}
						}
						localLag = append(localLag, time.Since(next))
						next = next.Add(interval)
					}
					select {
					case <-stop:
						return
					case sent <- time.Now():
					}
					buf = socketmap.AppendNetstring(buf[:0], *name+" "+keys[j%len(keys)])
					j++
					w.Write(buf)
					if interval > 0 || len(sent) == cap(sent) || len(sent) == 1 {
						w.Flush()
					}
				}
			}()
			r := socketmap.NewReader(bufio.NewReader(nc), socketmap.MaxReply)
			for time.Now().Before(deadline) {
				nc.SetReadDeadline(deadline.Add(time.Second))
				p, err := r.Next()
				if err != nil {
					if *rate > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
						break // nothing more was sent before the end
					}
					bad.Add(1)
					break
				}
				t0 := <-sent
				local = append(local, time.Since(t0))
				if !strings.HasPrefix(string(p), *expect) {
					bad.Add(1)
				}
			}
			close(stop)
			<-writerDone
			total.Add(int64(len(local)))
			mu.Lock()
			lats = append(lats, local...)
			lags = append(lags, localLag...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if bad.Load() > 0 {
		return fmt.Errorf("%d bad replies or broken connections", bad.Load())
	}
	pct := func(d []time.Duration, q float64) float64 {
		if len(d) == 0 {
			return 0
		}
		slices.Sort(d)
		return float64(d[int(q*float64(len(d)-1))].Microseconds())
	}
	fmt.Printf("%.0f %.0f %.0f %.0f %.0f\n", float64(total.Load())/dur.Seconds(), pct(lats, 0.50), pct(lats, 0.99), pct(lats, 0.999), pct(lags, 0.99))
	return nil
}

// runHist reads the resolver's lookup latency histogram (the time in the
// handler, from a parsed request to its reply) from the admin listener's
// /metrics and prints its cumulative buckets, one "le count" a line. With
// -since (an earlier output) it prints "count p99-bound-in-us" for the
// lookups since then: the smallest bucket bound at or under which 99% of
// them took.
func runHist(args []string) error {
	fs := flag.NewFlagSet("hist", flag.ExitOnError)
	url := fs.String("url", "", "the /metrics URL")
	since := fs.String("since", "", "an earlier output of hist")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	type bucket struct {
		le    string
		count float64
	}
	var now []bucket
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), `mailtls_resolver_lookup_seconds_bucket{le="`)
		if !ok {
			continue
		}
		le, v, _ := strings.Cut(rest, `"} `)
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("metrics line %q: %v", sc.Text(), err)
		}
		now = append(now, bucket{le, n})
	}
	if len(now) == 0 {
		return fmt.Errorf("no mailtls_resolver_lookup_seconds histogram at %s", *url)
	}
	if *since == "" {
		for _, b := range now {
			fmt.Println(b.le, b.count)
		}
		return nil
	}
	data, err := os.ReadFile(*since)
	if err != nil {
		return err
	}
	before := map[string]float64{}
	for line := range strings.Lines(string(data)) {
		le, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		before[le], _ = strconv.ParseFloat(v, 64)
	}
	total := now[len(now)-1].count - before[now[len(now)-1].le]
	for _, b := range now {
		if b.count-before[b.le] >= 0.99*total {
			bound := b.le
			if f, err := strconv.ParseFloat(b.le, 64); err == nil {
				bound = strconv.FormatFloat(f*1e6, 'f', -1, 64)
			}
			fmt.Printf("%.0f %s\n", total, bound)
			return nil
		}
	}
	return nil
}
