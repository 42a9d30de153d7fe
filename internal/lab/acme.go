package lab

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/letsencrypt/pebble/v2/acme"
	pebbleca "github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/core"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// VerboseEnv names the environment variable that, when set to a non-empty
// value, sends the log of the lab's ACME server (Pebble) to standard error
// unless ACMEOptions.Log says otherwise.
const VerboseEnv = "MAILTLS_LAB_VERBOSE"

// Paths of the Pebble (v2.10.x) ACME API that ACME watches; Pebble exports
// only wfe.DirectoryPath. TestACMECertmagic fails if Pebble moves them.
const (
	pebbleNewOrderPath = "/order-plz"
	pebbleChalPath     = "/chalZ/"
	pebbleFinalizePath = "/finalize-order/"
)

// Timing of ACME.Close.
const (
	// acmeSettleTimeout bounds the wait for validations in progress. Pebble
	// gives each step of a validation (the DNS lookup, the HTTP request or
	// TLS handshake) 15 seconds.
	acmeSettleTimeout = 35 * time.Second
	// acmeIdleGrace bounds the wait for Pebble's other short-lived worker
	// goroutines (the spare concurrent validations of a failed challenge,
	// order finalization).
	acmeIdleGrace = 2 * time.Second
	// acmePoll is how often Close checks.
	acmePoll = 2 * time.Millisecond
)

// hiddenExpiry is the expiry ACME gives a valid authorization while a new
// order is created, so that Pebble does not reuse it. It is in the past.
var hiddenExpiry = time.Unix(0, 0)

// ACMEOptions configures StartACME.
type ACMEOptions struct {
	// HTTPPort is the port Pebble's validator connects to for http-01
	// challenges: the server under test's plain-HTTP listener. Zero means
	// 80, the real port.
	HTTPPort int
	// TLSPort is the port for tls-alpn-01 challenges: the server under
	// test's HTTPS listener. Zero means 443.
	TLSPort int
	// CertLifetime is the validity period of the certificates issued,
	// rounded up to whole seconds; zero means Pebble's default of 90 days.
	// Short lifetimes let tests exercise renewal.
	CertLifetime time.Duration
	// ReuseAuthz lets Pebble reuse an account's valid authorization for a
	// name (valid for an hour) in a new order, skipping the challenge, as
	// real CAs do. By default every order gets fresh authorizations, so every
	// issuance and renewal is validated again.
	ReuseAuthz bool
	// Addr is the listen address of the ACME API; "" means "127.0.0.1:0".
	Addr string
	// Log receives Pebble's log. Nil means standard error if VerboseEnv is
	// set, else nowhere.
	Log io.Writer
}

// ACMEValidation is a challenge that the ACME server was asked to validate.
type ACMEValidation struct {
	Type       string // "http-01", "tls-alpn-01", "dns-01", …
	Identifier string // the name validated, e.g. "mta-sts.example.test"
	Status     string // "processing", then "valid" or "invalid"
	Error      string // why an invalid challenge failed
}

// ACME is an ACME server (RFC 8555) in the test process: Let's Encrypt's
// Pebble test CA, wired to the lab. Its API is served over HTTPS with a
// certificate from the lab CA; its validator looks names up in the lab DNS
// (over TCP) and connects to the first address found (AAAA records before
// A) on ACMEOptions.HTTPPort or TLSPort. Validation is real: the server under
// test must answer the challenges. Pebble's random delays, bad-nonce
// rejections and random authorization reuse are off. An ACME is safe for
// concurrent use.
type ACME struct {
	ln        net.Listener
	srv       *http.Server
	serveDone chan struct{}
	api       http.Handler // Pebble's WFE
	db        *db.MemoryStore
	va        *va.VAImpl
	apiCA     *CA
	roots     []*x509.Certificate // Pebble's roots
	reuse     bool
	// held, while not nil, keeps challenge submissions waiting until it
	// is closed (HoldChallenges).
	held chan struct{}

	// gate is held shared by every API request and exclusively by new-order
	// requests while valid authorizations are hidden (see hideValidAuthzs).
	gate sync.RWMutex

	closeOnce sync.Once
	inflight  sync.WaitGroup // API requests being handled
	panics    atomic.Int64

	mu        sync.Mutex
	closed    bool
	orders    int
	chals     []*core.Challenge // submitted for validation, in order
	chalSeen  map[string]bool
	finalized []*core.Order // finalization began, in order
	orderSeen map[string]bool
}

// StartACME starts an ACME server whose validator resolves names with d and
// whose API certificate is issued by ca. Call Close to stop it.
func StartACME(d *DNS, ca *CA, o ACMEOptions) (a *ACME, err error) {
	if d == nil || ca == nil {
		return nil, errors.New("lab: acme: a DNS server and a CA are required")
	}
	httpPort, tlsPort := o.HTTPPort, o.TLSPort
	if httpPort == 0 {
		httpPort = 80
	}
	if tlsPort == 0 {
		tlsPort = 443
	}
	for _, p := range []int{httpPort, tlsPort} {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("lab: acme: bad port %d", p)
		}
	}
	if o.CertLifetime < 0 {
		return nil, fmt.Errorf("lab: acme: negative certificate lifetime %v", o.CertLifetime)
	}
	validity := uint64((o.CertLifetime + time.Second - 1) / time.Second) // 0: Pebble's default

	apiCert, err := ca.Issue(LeafOptions{
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	})
	if err != nil {
		return nil, fmt.Errorf("lab: acme: %w", err)
	}
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("lab: acme listen: %w", err)
	}
	defer func() {
		if err != nil {
			ln.Close()
		}
	}()

	w := o.Log
	if w == nil {
		w = io.Discard
		if os.Getenv(VerboseEnv) != "" {
			w = os.Stderr
		}
	}
	logger := log.New(w, "pebble "+ln.Addr().String()+" ", log.LstdFlags|log.Lmicroseconds)

	store := db.NewMemoryStore()
	issuer, err := newPebbleCA(logger, store, validity)
	if err != nil {
		return nil, err
	}
	a = &ACME{
		ln:        ln,
		serveDone: make(chan struct{}),
		db:        store,
		apiCA:     ca,
		reuse:     o.ReuseAuthz,
		chalSeen:  make(map[string]bool),
		orderSeen: make(map[string]bool),
	}
	for i := range issuer.GetNumberOfRootCerts() {
		a.roots = append(a.roots, issuer.GetRootCert(i).Cert)
	}

	// Pebble's VA and WFE read these once, in their constructors, into
	// unexported fields, so the environment is the only way to set them in
	// process: no random 0-5 s sleep before validating, real validation,
	// no good nonce rejected as bad (default 5%), and an existing valid
	// authorization always reused when one is found (with ReuseAuthz false,
	// hideValidAuthzs makes sure none is found). They are set only while
	// the two are created, under a lock, and then restored, so that
	// parallel tests and the developer's environment cannot interfere.
	withEnv(map[string]string{
		"PEBBLE_VA_NOSLEEP":          "1",
		"PEBBLE_VA_ALWAYS_VALID":     "0",
		"PEBBLE_WFE_NONCEREJECT":     "0",
		"PEBBLE_AUTHZREUSE":          "100",
		"PEBBLE_WFE_ORDERS_PER_PAGE": "3",
	}, func() {
		a.va = va.New(logger, httpPort, tlsPort, false, d.Addr(), store)
		front := wfe.New(logger, store, a.va, issuer, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
		a.api = front.Handler()
	})

	a.srv = &http.Server{
		Handler:           a,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{apiCert}},
		ReadHeaderTimeout: httpsReadHeaderTimeout,
		IdleTimeout:       httpsIdleTimeout,
		ErrorLog:          logger,
	}
	go func() {
		defer close(a.serveDone)
		_ = a.srv.ServeTLS(ln, "", "") // returns when closed
	}()
	return a, nil
}

// newPebbleCA creates Pebble's CA, turning its panics into errors. The root
// and intermediate are ECDSA (Pebble's default RSA is slow to generate under
// -race), one chain, and one profile so that orders naming none never get
// a random one.
func newPebbleCA(logger *log.Logger, store *db.MemoryStore, validity uint64) (c *pebbleca.CAImpl, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("lab: acme: pebble ca: %v", p)
		}
	}()
	profiles := map[string]pebbleca.Profile{
		"default": {Description: "mailtls lab", ValidityPeriod: validity},
	}
	return pebbleca.New(logger, store, "", "ecdsa", 0, 1, profiles), nil
}

// pebbleEnvMu serialises withEnv.
var pebbleEnvMu sync.Mutex

// withEnv runs f with the environment variables vars set, then restores
// them. Calls are serialised.
func withEnv(vars map[string]string, f func()) {
	pebbleEnvMu.Lock()
	defer pebbleEnvMu.Unlock()
	type saved struct {
		value string
		ok    bool
	}
	old := make(map[string]saved, len(vars))
	for k, v := range vars {
		value, ok := os.LookupEnv(k)
		old[k] = saved{value, ok}
		os.Setenv(k, v)
	}
	defer func() {
		for k, s := range old {
			if s.ok {
				os.Setenv(k, s.value)
			} else {
				os.Unsetenv(k)
			}
		}
	}()
	f()
}

// NewACME is StartACME for tests: it fails t on error, and when the test
// ends it closes the server and fails t if an API handler panicked.
func NewACME(t testing.TB, d *DNS, ca *CA, o ACMEOptions) *ACME {
	t.Helper()
	a, err := StartACME(d, ca, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		if n := a.Panics(); n > 0 {
			t.Errorf("lab: acme handler panicked %d times", n)
		}
	})
	return a
}

// DirectoryURL returns the URL of the ACME directory,
// "https://127.0.0.1:PORT/dir".
func (a *ACME) DirectoryURL() string {
	return "https://" + a.ln.Addr().String() + wfe.DirectoryPath
}

// Addr returns the API listener's address, "127.0.0.1:PORT".
func (a *ACME) Addr() string { return a.ln.Addr().String() }

// APIRoots returns the roots to trust for the ACME API's own HTTPS: a new
// pool holding the lab CA's root.
func (a *ACME) APIRoots() *x509.CertPool { return a.apiCA.Pool() }

// APIRootPEM returns the root of the API's HTTPS certificate PEM-encoded.
func (a *ACME) APIRootPEM() []byte { return a.apiCA.RootPEM() }

// WriteAPIRootPEM writes APIRootPEM to a file in dir (for a configuration's
// trusted roots) and returns its path.
func (a *ACME) WriteAPIRootPEM(dir string) (string, error) {
	return a.apiCA.WriteRootPEM(dir)
}

// IssuedRoots returns a pool of the roots that sign the certificates the
// server issues (generated at start, different for every server). Pebble
// sends the intermediate with each certificate.
func (a *ACME) IssuedRoots() *x509.CertPool {
	p := x509.NewCertPool()
	for _, r := range a.roots {
		p.AddCert(r)
	}
	return p
}

// IssuedRootPEM returns the roots of IssuedRoots PEM-encoded, e.g. for a
// --ca-file flag.
func (a *ACME) IssuedRootPEM() []byte {
	var b bytes.Buffer
	for _, r := range a.roots {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})
	}
	return b.Bytes()
}

// Orders returns how many orders were created.
func (a *ACME) Orders() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.orders
}

// Validations returns the challenges that clients asked the server to
// validate, in the order asked, with their current status.
func (a *ACME) Validations() []ACMEValidation {
	a.mu.Lock()
	chals := slices.Clone(a.chals)
	a.mu.Unlock()
	vs := make([]ACMEValidation, 0, len(chals))
	for _, c := range chals {
		c.RLock()
		v := ACMEValidation{Type: c.Type, Status: c.Status}
		if c.Error != nil {
			v.Error = c.Error.Detail
		}
		authz := c.Authz
		c.RUnlock()
		if authz != nil {
			authz.RLock()
			v.Identifier = authz.Identifier.Value
			authz.RUnlock()
		}
		vs = append(vs, v)
	}
	return vs
}

// Issued returns the certificates issued so far, in the order their orders
// were finalized.
func (a *ACME) Issued() []*x509.Certificate {
	a.mu.Lock()
	orders := slices.Clone(a.finalized)
	a.mu.Unlock()
	var certs []*x509.Certificate
	for _, o := range orders {
		o.RLock()
		c := o.CertificateObject
		o.RUnlock()
		if c != nil {
			certs = append(certs, c.Cert)
		}
	}
	return certs
}

// Panics returns how many API handler panics were recovered. Tests should
// fail when it is not zero.
func (a *ACME) Panics() int { return int(a.panics.Load()) }

// HoldChallenges keeps every challenge submission (and so every
// validation) waiting until release is called: tests that start several
// servers sharing orders hold validations until all of them listen, so
// the CA never validates at a server that has not started yet.
func (a *ACME) HoldChallenges() (release func()) {
	ch := make(chan struct{})
	a.mu.Lock()
	a.held = ch
	a.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			a.held = nil
			a.mu.Unlock()
			close(ch)
		})
	}
}

// ServeHTTP serves the ACME API, recording what happens.
func (a *ACME) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		http.Error(w, "lab: acme server closed", http.StatusServiceUnavailable)
		return
	}
	a.inflight.Add(1)
	held := a.held
	a.mu.Unlock()
	defer a.inflight.Done()
	if held != nil && r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, pebbleChalPath) {
		select {
		case <-held:
		case <-r.Context().Done():
			return
		}
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p) // net/http's own signal, not a bug
			}
			a.panics.Add(1)
			http.Error(w, "lab: acme handler panicked", http.StatusInternalServerError)
		}
	}()

	if r.Method == http.MethodPost && r.URL.Path == pebbleNewOrderPath && !a.reuse {
		a.gate.Lock()
		defer a.gate.Unlock()
		defer a.hideValidAuthzs()()
	} else {
		a.gate.RLock()
		defer a.gate.RUnlock()
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	a.api.ServeHTTP(sw, r)
	a.observe(r, sw.status)
}

// statusWriter records the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// observe records orders created, challenges submitted and orders
// finalized.
func (a *ACME) observe(r *http.Request, status int) {
	if r.Method != http.MethodPost {
		return
	}
	path := r.URL.Path
	switch {
	case path == pebbleNewOrderPath:
		if status == http.StatusCreated {
			a.mu.Lock()
			a.orders++
			a.mu.Unlock()
		}
	case strings.HasPrefix(path, pebbleChalPath):
		// A challenge that left "pending" was submitted to the VA; polls of
		// it are recorded once.
		id := strings.TrimPrefix(path, pebbleChalPath)
		c := a.db.GetChallengeByID(id)
		if c == nil {
			return
		}
		c.RLock()
		submitted := c.Status != acme.StatusPending
		c.RUnlock()
		a.mu.Lock()
		if submitted && !a.chalSeen[id] {
			a.chalSeen[id] = true
			a.chals = append(a.chals, c)
		}
		a.mu.Unlock()
	case strings.HasPrefix(path, pebbleFinalizePath):
		if status != http.StatusOK {
			return
		}
		id := strings.TrimPrefix(path, pebbleFinalizePath)
		o := a.db.GetOrderByID(id)
		if o == nil {
			return
		}
		a.mu.Lock()
		if !a.orderSeen[id] {
			a.orderSeen[id] = true
			a.finalized = append(a.finalized, o)
		}
		a.mu.Unlock()
	}
}

// hideValidAuthzs makes the valid authorizations of the challenges this
// server validated look expired, so that the order being created gets new
// authorizations and its names are validated again. It returns the function
// that restores them. The caller holds gate exclusively, so no other API
// request sees the hidden state. (Pebble's own knob cannot turn reuse off:
// with PEBBLE_AUTHZREUSE=0 it still reuses 1% of the time, because it
// rolls rand.Intn(100) > percent.)
func (a *ACME) hideValidAuthzs() (restore func()) {
	a.mu.Lock()
	chals := slices.Clone(a.chals)
	a.mu.Unlock()
	type hidden struct {
		authz   *core.Authorization
		expires time.Time
	}
	var hs []hidden
	seen := make(map[*core.Authorization]bool)
	now := time.Now()
	for _, c := range chals {
		c.RLock()
		authz := c.Authz
		c.RUnlock()
		if authz == nil || seen[authz] {
			continue
		}
		seen[authz] = true
		authz.Lock()
		if authz.Status == acme.StatusValid && authz.ExpiresDate.After(now) {
			hs = append(hs, hidden{authz, authz.ExpiresDate})
			authz.ExpiresDate = hiddenExpiry
		}
		authz.Unlock()
	}
	return func() {
		for _, h := range hs {
			h.authz.Lock()
			if h.authz.ExpiresDate.Equal(hiddenExpiry) {
				h.authz.ExpiresDate = h.expires
			}
			h.authz.Unlock()
		}
	}
}

// Close stops the server. It waits for the API requests being handled and
// for the validations in progress (each bounded by Pebble's timeouts, so a
// server under test that hangs can hold Close up to acmeSettleTimeout), then
// stops Pebble's validator. It is safe to call more than once.
func (a *ACME) Close() {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		_ = a.srv.Close()
		<-a.serveDone
		a.inflight.Wait() // no more challenges reach the VA
		a.waitValidations(time.Now().Add(acmeSettleTimeout))
		stopVA(a.va)
		waitPebbleIdle(time.Now().Add(acmeIdleGrace))
	})
}

// waitValidations waits until no challenge submitted to this server is
// still being validated, or until deadline.
func (a *ACME) waitValidations(deadline time.Time) {
	a.mu.Lock()
	chals := slices.Clone(a.chals)
	a.mu.Unlock()
	for _, c := range chals {
		for {
			c.RLock()
			busy := c.Status == acme.StatusProcessing
			c.RUnlock()
			if !busy || time.Now().After(deadline) {
				break
			}
			time.Sleep(acmePoll)
		}
	}
}

// stopVA closes the task queue of Pebble's validator, which ends the
// dispatcher goroutine that va.New starts: Pebble has no way to stop it.
// The queue is an unexported field, reached by reflection; it must not be
// closed while an API request may still submit a task. If a future Pebble
// renames the field, stopVA does nothing and the goroutine stays blocked
// (TestACMECloseLeavesNoGoroutines notices).
func stopVA(v *va.VAImpl) {
	f := reflect.ValueOf(v).Elem().FieldByName("tasks")
	if !f.IsValid() || f.Kind() != reflect.Chan || f.Type().ChanDir() != reflect.BothDir {
		return
	}
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Close()
}

// waitPebbleIdle waits until no goroutine runs Pebble code, other than the
// idle task dispatchers of ACME servers still open, or until deadline. It
// looks at every goroutine of the process, so it may also wait for the work
// of another ACME server; the deadline keeps that short.
func waitPebbleIdle(deadline time.Time) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if !pebbleBusy(buf[:n]) || time.Now().After(deadline) {
			return
		}
		time.Sleep(acmePoll)
	}
}

// pebbleBusy reports whether a goroutine dump shows a goroutine running
// Pebble code, other than a task dispatcher blocked on its open queue. (The
// dispatcher of a closed queue is runnable until it returns. A frame line
// has the function's arguments in parentheses, a "created by" line does
// not.)
func pebbleBusy(dump []byte) bool {
	for g := range bytes.SplitSeq(dump, []byte("\n\n")) {
		if !bytes.Contains(g, []byte("github.com/letsencrypt/pebble/v2/")) {
			continue
		}
		header, _, _ := bytes.Cut(g, []byte("\n"))
		idle := bytes.Contains(header, []byte("[chan receive")) &&
			bytes.Contains(g, []byte("va.VAImpl.processTasks("))
		if !idle {
			return true
		}
	}
	return false
}
