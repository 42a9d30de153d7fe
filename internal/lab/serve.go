package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildMailtls builds the mailtls command (CGO_ENABLED=0, as released)
// into dir and returns the binary's path. It runs `go build` on the
// module's cmd/mailtls, so it works from any package's test directory.
func BuildMailtls(dir string) (string, error) {
	bin := filepath.Join(dir, "mailtls")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/mailtls/mailtls/cmd/mailtls")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("lab: building mailtls: %v\n%s", err, out)
	}
	return bin, nil
}

// MustBuildMailtls is BuildMailtls into a directory of the test's.
func MustBuildMailtls(tb testing.TB) string {
	tb.Helper()
	bin, err := BuildMailtls(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// ServeOptions start one `mailtls serve` process (StartServe).
type ServeOptions struct {
	// Binary is the mailtls binary (BuildMailtls).
	Binary string
	// Config is the configuration file (--config).
	Config string
	// Roles are passed as --roles; nil runs every role the file sets up.
	Roles []string
	// Env is added to the process's environment, e.g. "SSL_CERT_FILE=…"
	// naming the lab CA's root (Go reads it for the system roots on Unix).
	Env []string
	// Name tells the instance apart in errors and log dumps (default
	// "serve").
	Name string
	// StartTimeout bounds the start, until the process logs that it
	// serves and its admin listener (if any) answers /healthz (default
	// 60s: generous for a loaded machine).
	StartTimeout time.Duration
}

// Serve is a running `mailtls serve` process started by StartServe. Its
// standard error is kept (Logs) and parsed for the addresses it listens
// on (Addr). When the test ends it is killed if still running, and its
// log is printed if the test failed.
type Serve struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its log is read
	err  error         // of Wait, set before done is closed

	mu    sync.Mutex
	logs  strings.Builder
	addrs map[string][]string // by listener name, in the order logged
}

var serveListeningRe = regexp.MustCompile(`msg=listening listener=(\S+) addr=(\S+)`)

// StartServe starts `mailtls serve` and waits until it serves: it logged
// "mailtls serve started" and, when it has an admin listener, /healthz
// answers. It fails tb when the process exits or does not get there in
// time.
func StartServe(tb testing.TB, o ServeOptions) *Serve {
	tb.Helper()
	s, err := startServe(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Kill()
		if tb.Failed() {
			tb.Logf("%s log:\n%s", s.name, tail(s.Logs(), 64<<10))
		}
	})
	if err := s.waitReady(o.StartTimeout); err != nil {
		tb.Fatal(err)
	}
	return s
}

// StartServes starts n instances at once, as a deployment starts them
// (they then migrate the store together, under its lock), and waits
// until every one serves. opts gives instance i's options.
func StartServes(tb testing.TB, n int, opts func(i int) ServeOptions) []*Serve {
	tb.Helper()
	out := make([]*Serve, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		o := opts(i)
		if o.Name == "" {
			o.Name = fmt.Sprintf("serve %d", i)
		}
		s, err := startServe(o)
		if err != nil {
			errs[i] = err
			continue
		}
		out[i] = s
		tb.Cleanup(func() {
			s.Kill()
			if tb.Failed() {
				tb.Logf("%s log:\n%s", s.name, tail(s.Logs(), 64<<10))
			}
		})
		wg.Go(func() { errs[i] = s.waitReady(o.StartTimeout) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
	return out
}

func startServe(o ServeOptions) (*Serve, error) {
	if o.Name == "" {
		o.Name = "serve"
	}
	args := []string{"serve", "--config", o.Config}
	if o.Roles != nil {
		args = append(args, "--roles", strings.Join(o.Roles, ","))
	}
	s := &Serve{name: o.Name, cmd: exec.Command(o.Binary, args...), done: make(chan struct{}), addrs: map[string][]string{}}
	s.cmd.Env = append(os.Environ(), o.Env...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", o.Name, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs.WriteString(line)
			s.logs.WriteByte('\n')
			if m := serveListeningRe.FindStringSubmatch(line); m != nil {
				s.addrs[m[1]] = append(s.addrs[m[1]], m[2])
			}
			s.mu.Unlock()
		}
		io.Copy(io.Discard, stderr) // a line over the cap: keep the pipe drained
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// waitReady waits for the start line, then for /healthz.
func (s *Serve) waitReady(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = time.Minute
	}
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.Logs(), "mailtls serve started") {
		select {
		case <-s.done:
			return fmt.Errorf("lab: %s exited at start: %v\n%s", s.name, s.err, tail(s.Logs(), 16<<10))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("lab: %s did not start within %v\n%s", s.name, timeout, tail(s.Logs(), 16<<10))
		}
	}
	if s.Addr("admin") == "" {
		return nil
	}
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		_, err := s.Get(ctx, "/healthz")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("lab: %s: /healthz: %v\n%s", s.name, err, tail(s.Logs(), 16<<10))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Name is the instance's name (ServeOptions.Name).
func (s *Serve) Name() string { return s.name }

// Pid is the process id.
func (s *Serve) Pid() int { return s.cmd.Process.Pid }

// Addr is the first address the listener (admin, web, host_https, …)
// listens on, or "" when it has none.
func (s *Serve) Addr(listener string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.addrs[listener]; len(a) > 0 {
		return a[0]
	}
	return ""
}

// Logs is what the process wrote to standard error so far.
func (s *Serve) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// Done is closed when the process has exited.
func (s *Serve) Done() <-chan struct{} { return s.done }

// Kill ends the process with SIGKILL, as a crash or a power loss would:
// nothing of it runs afterwards (no shutdown, no lease given back). It
// waits for the exit; killing an exited process does nothing.
func (s *Serve) Kill() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// Signal sends sig to the process (SIGHUP: reload the configuration).
func (s *Serve) Signal(sig os.Signal) error { return s.cmd.Process.Signal(sig) }

// Stop ends the process with SIGTERM (a graceful stop) and waits up to
// timeout for it to exit, then kills it. It returns the exit error (nil
// for status 0).
func (s *Serve) Stop(timeout time.Duration) error {
	select {
	case <-s.done:
		return s.err
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return s.err
	case <-time.After(timeout):
		s.Kill()
		return fmt.Errorf("lab: %s still running %v after SIGTERM; killed", s.name, timeout)
	}
}

// Get fetches path from the admin listener (/healthz, /metrics) and
// returns the body of a 200 answer.
func (s *Serve) Get(ctx context.Context, path string) (string, error) {
	addr := s.Addr("admin")
	if addr == "" {
		return "", fmt.Errorf("lab: %s has no admin listener", s.name)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("lab: %s: GET %s: %s", s.name, path, resp.Status)
	}
	return string(b), nil
}

// Metric returns the value of one series of the instance's /metrics:
// series is the name with its labels as Prometheus prints them, e.g.
// `mailtls_worker_lease_takeovers_total{lease="domain"}`. ok is false
// when the page has no such series.
func (s *Serve) Metric(ctx context.Context, series string) (v float64, ok bool, err error) {
	page, err := s.Get(ctx, "/metrics")
	if err != nil {
		return 0, false, err
	}
	v, ok = MetricValue(page, series)
	return v, ok, nil
}

// MetricValue finds series (a name and its labels, as printed) in a
// Prometheus text page.
func MetricValue(page, series string) (float64, bool) {
	for line := range strings.Lines(page) {
		rest, found := strings.CutPrefix(line, series+" ")
		if !found {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
