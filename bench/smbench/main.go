// Command smbench is the harness of bench/resolver.sh: "lab" runs a lab
// of MTA-STS domains on fixed loopback addresses (for mailtls and Debian's
// mta-sts-daemon alike), and "load" is the socketmap load generator used
// for both, so that both are measured by the same client.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
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
		fmt.Fprintln(os.Stderr, "usage: smbench lab|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "lab":
		err = runLab(os.Args[2:])
	case "load":
		err = runLoad(os.Args[2:])
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

// runLoad keeps -p requests in flight on each of -c connections for -d
// and prints "requests/s p50 p99" (latency from sending a request to its
// reply, in microseconds), after checking every reply starts with -expect.
func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "", "socketmap address host:port")
	name := fs.String("name", "postfix", "socketmap name")
	keysFile := fs.String("keys", "", "file of keys, one per line (used in turn)")
	conns := fs.Int("c", 64, "connections")
	depth := fs.Int("p", 4, "requests in flight per connection")
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
		total atomic.Int64
		bad   atomic.Int64
		mu    sync.Mutex
		lats  []time.Duration
		wg    sync.WaitGroup
	)
	deadline := time.Now().Add(*dur)
	for i := range *conns {
		wg.Go(func() {
			nc, err := net.Dial("tcp", *addr)
			if err != nil {
				bad.Add(1)
				return
			}
			defer nc.Close()
			sent := make(chan time.Time, *depth)
			stop := make(chan struct{})
			var local []time.Duration
			go func() { // writer: keeps depth requests in flight
				w := bufio.NewWriter(nc)
				var buf []byte
				j := i
				for {
					select {
					case <-stop:
						return
					case sent <- time.Now():
					}
					buf = socketmap.AppendNetstring(buf[:0], *name+" "+keys[j%len(keys)])
					j++
					w.Write(buf)
					if len(sent) == cap(sent) || len(sent) == 1 {
						w.Flush()
					}
				}
			}()
			r := socketmap.NewReader(bufio.NewReader(nc), socketmap.MaxReply)
			for time.Now().Before(deadline) {
				p, err := r.Next()
				if err != nil {
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
			total.Add(int64(len(local)))
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if bad.Load() > 0 {
		return fmt.Errorf("%d bad replies or broken connections", bad.Load())
	}
	slices.Sort(lats)
	pct := func(q float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return float64(lats[int(q*float64(len(lats)-1))].Microseconds())
	}
	fmt.Printf("%.0f %.0f %.0f\n", float64(total.Load())/dur.Seconds(), pct(0.50), pct(0.99))
	return nil
}
