// Package policyhost serves MTA-STS policies for many domains over HTTPS at
// https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461 §3.2, §3.3):
// only configured hosts, exactly one path, the policy bytes written by the
// canonical writer, a short Cache-Control, never a redirect. Certificates
// come from static files or from ACME (certmagic), chosen by SNI; an
// unknown SNI gets a handshake failure, never another name's certificate
// (STS-HOST-3).
package policyhost

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
)

// Site is what is served for one policy domain.
type Site struct {
	Domain   string
	Host     string // mta-sts.<domain>
	Policy   *mtasts.Policy
	Body     []byte // Policy.String(), served as is
	ID       string // the id the _mta-sts TXT record must carry
	Static   *tls.Certificate
	OnDemand bool
	FollowMX bool
	// CertFile and the validity of Static, for the expiry warnings.
	CertFile            string
	NotBefore, NotAfter time.Time
}

// MaxCertFileSize bounds a certificate or key file: a chain is a few
// kilobytes, and a file such as /dev/zero must not fill the memory.
const MaxCertFileSize = 1 << 20

// ExpiryWarning is how long before a static certificate expires that it
// is reported (log, metric, /healthz): a sender refuses an expired one
// (RFC 8461 §3.3), and renewing by hand takes time.
const ExpiryWarning = 14 * 24 * time.Hour

// CertState is the validity of a static certificate at some time.
type CertState string

// The CertStates; the empty state is a site without a static certificate.
const (
	CertOK          CertState = "ok"
	CertExpiring    CertState = "expiring" // within ExpiryWarning
	CertExpired     CertState = "expired"
	CertNotYetValid CertState = "not_yet_valid"
)

// CertStates lists them in order of gravity, least first.
var CertStates = []CertState{CertOK, CertExpiring, CertExpired, CertNotYetValid}

// CertState is the state of the site's static certificate at now.
func (s *Site) CertState(now time.Time) CertState {
	switch {
	case s.Static == nil:
		return ""
	case now.Before(s.NotBefore):
		return CertNotYetValid
	case !now.Before(s.NotAfter):
		return CertExpired
	case s.NotAfter.Sub(now) <= ExpiryWarning:
		return CertExpiring
	}
	return CertOK
}

// CertError is a static certificate that cannot be served: a file that
// cannot be read, a key that does not match, or a certificate that does
// not cover mta-sts.<domain> (senders would refuse it, RFC 8461 §3.3).
type CertError struct {
	Domain string
	File   string
	Err    error
}

func (e *CertError) Error() string {
	return fmt.Sprintf("policyhost: %s: certificate %s: %v", e.Domain, e.File, e.Err)
}

func (e *CertError) Unwrap() error { return e.Err }

// loadCert loads the static certificate of site, checking its name.
func loadCert(site *Site, certFile string, certPEM, keyPEM []byte) error {
	fail := func(err error) error { return &CertError{Domain: site.Domain, File: certFile, Err: err} }
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fail(err)
	}
	leaf := c.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fail(err)
		}
	}
	if err := leaf.VerifyHostname(site.Host); err != nil {
		names := leaf.DNSNames
		if len(names) > 5 {
			names = append(names[:5:5], "…")
		}
		return fail(fmt.Errorf("it is for %s, not %s", strings.Join(names, ", "), site.Host))
	}
	// Handshakes use only the DER chain and the key: the parsed leaf
	// (about 2.7 KB a domain) would be a third of the memory.
	c.Leaf = nil
	site.Static, site.CertFile, site.NotBefore, site.NotAfter = &c, certFile, leaf.NotBefore, leaf.NotAfter
	return nil
}

// Sites is an immutable snapshot of everything served; a reload builds a new
// one and swaps it in.
type Sites struct {
	byHost       map[string]*Site
	CacheControl string
}

// Lookup returns the site for a host name (any case, optional dot).
func (s *Sites) Lookup(host string) *Site {
	if s == nil {
		return nil
	}
	return s.byHost[strings.TrimSuffix(strings.ToLower(host), ".")]
}

// All returns the sites sorted by domain.
func (s *Sites) All() []*Site {
	out := make([]*Site, 0, len(s.byHost))
	for _, v := range s.byHost {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out
}

// Len is the number of sites.
func (s *Sites) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byHost)
}

// MXSource gives the current MX patterns of follow_mx domains; ok false
// when they are not known (yet).
type MXSource func(domain string) (patterns []string, ok bool)

// Domain is one policy domain to serve: its policy, and where its
// certificate comes from (static, read by the caller, or ACME).
type Domain struct {
	Name     string
	Policy   *mtasts.Policy
	OnDemand bool
	FollowMX bool
	// CertFile names the static certificate in messages and warnings;
	// CertPEM and KeyPEM are its chain and key (nil with ACME).
	CertFile        string
	CertPEM, KeyPEM []byte
}

// IDAssigner gives each domain's policy body its id: the same id while the
// body stays the same, a new one when it changes (RFC 8461 §3.1,
// STS-HOST-4). IDStore keeps them in a file; with a store, the daemon keeps
// them in the database shared by every host instance.
type IDAssigner interface {
	Assign(bodies map[string][]byte, now time.Time) (map[string]string, error)
}

// Build makes the Sites for domains. Policy ids come from ids: an id
// changes exactly when a domain's policy body changes. Every static
// certificate that cannot be served is reported at once (*CertError).
func Build(domains []Domain, cacheControl string, ids IDAssigner, now time.Time) (*Sites, error) {
	sites := &Sites{byHost: make(map[string]*Site, len(domains)), CacheControl: cacheControl}
	bodies := make(map[string][]byte, len(domains))
	var certErrs []error
	for _, d := range domains {
		body := []byte(d.Policy.String())
		bodies[d.Name] = body
		site := &Site{Domain: d.Name, Host: "mta-sts." + d.Name, Policy: d.Policy, Body: body, OnDemand: d.OnDemand, FollowMX: d.FollowMX}
		if d.CertPEM != nil || d.KeyPEM != nil {
			if err := loadCert(site, d.CertFile, d.CertPEM, d.KeyPEM); err != nil {
				certErrs = append(certErrs, err)
				continue
			}
		}
		sites.byHost[site.Host] = site
	}
	if len(certErrs) > 0 {
		// Every bad certificate at once, in a stable order.
		sort.Slice(certErrs, func(i, j int) bool { return certErrs[i].Error() < certErrs[j].Error() })
		return nil, errors.Join(certErrs...)
	}
	assigned, err := ids.Assign(bodies, now)
	if err != nil {
		return nil, err
	}
	for _, site := range sites.byHost {
		site.ID = assigned[site.Domain]
	}
	return sites, nil
}

// IDStore keeps, per domain, the hash of the served body and the id that
// goes with it, so that ids survive restarts and change exactly when the
// body changes (RFC 8461 §3.1, STS-HOST-4). The file is shared by the
// server and `mailtls serve records`: every update is a locked
// read-modify-write, so both always agree on a body's id.
type IDStore struct {
	path string // "" keeps the ids in memory only
	mu   sync.Mutex
	mem  map[string]IDEntry
}

// IDEntry is one domain's body hash and id.
type IDEntry struct {
	Hash string `json:"sha256"`
	ID   string `json:"id"`
}

// OpenIDStore opens the store at path (a missing file is an empty store; a
// damaged one is an error). An empty path keeps ids in memory.
func OpenIDStore(path string) (*IDStore, error) {
	s := &IDStore{path: path, mem: map[string]IDEntry{}}
	if path == "" {
		return s, nil
	}
	if _, err := s.read(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *IDStore) read() (map[string]IDEntry, error) {
	entries := map[string]IDEntry{}
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return entries, nil
	case err != nil:
		return nil, fmt.Errorf("policyhost: reading the id store: %w", err)
	}
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("policyhost: %s is damaged (%v); move it away to start new ids", s.path, err)
	}
	return entries, nil
}

// HashBody is the hash the store keeps for a body.
func HashBody(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// Assign returns the id of each domain's body, making a new one (from the
// UTC time, never the previous id) for a body not seen before, and saves
// the store.
func (s *IDStore) Assign(bodies map[string][]byte, now time.Time) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries := s.mem
	if s.path != "" {
		if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
			return nil, fmt.Errorf("policyhost: %w", err)
		}
		unlock, err := lockFile(s.path + ".lock")
		if err != nil {
			return nil, fmt.Errorf("policyhost: locking the id store: %w", err)
		}
		defer unlock()
		if entries, err = s.read(); err != nil {
			return nil, err
		}
	}
	out := make(map[string]string, len(bodies))
	changed := false
	for d, body := range bodies {
		h := HashBody(body)
		e, ok := entries[d]
		if !ok || e.Hash != h || !mtasts.ValidID(e.ID) {
			e = IDEntry{Hash: h, ID: mtasts.NewID(now, e.ID)}
			entries[d] = e
			changed = true
		}
		out[d] = e.ID
	}
	if s.path == "" || !changed {
		return out, nil
	}
	return out, s.write(entries)
}

// Entries returns every domain's hash and id.
func (s *IDStore) Entries() (map[string]IDEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return maps.Clone(s.mem), nil
	}
	return s.read()
}

// Lookup returns the stored id and body hash of a domain, without
// changing anything.
func (s *IDStore) Lookup(domain string) (id, hash string, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries := s.mem
	if s.path != "" {
		if entries, err = s.read(); err != nil {
			return "", "", false, err
		}
	}
	e, ok := entries[domain]
	return e.ID, e.Hash, ok, nil
}

// write replaces the file.
func (s *IDStore) write(entries map[string]IDEntry) error {
	data, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(s.path, data); err != nil {
		return fmt.Errorf("policyhost: writing the id store: %w", err)
	}
	return nil
}

// WriteFileAtomic replaces a file of the host's storage (mode 0600,
// creating its folder) through a temporary file and a rename, so that a
// crash never leaves half a file.
func WriteFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
