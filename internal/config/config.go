// Package config is the configuration of `mailtls serve`: one YAML file,
// documented in docs/config.md, whose defaults work with no file at all.
// Unknown keys are errors with their line number, so a typo never passes
// silently.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/mtasts"
)

// MaxFileSize bounds the configuration file.
const MaxFileSize = 8 << 20

// Config is the whole configuration.
type Config struct {
	Log   Log   `yaml:"log"`
	Admin Admin `yaml:"admin"`
	// Host is the MTA-STS policy host role; absent means off.
	Host *Host `yaml:"host"`
	// Resolver is the sending-side policy resolver for Postfix (socketmap);
	// absent means off.
	Resolver *Resolver `yaml:"resolver"`
	// Web is the web checker and its JSON API; absent means off. Without
	// a configuration file it runs with its defaults.
	Web *Web `yaml:"web"`
}

// Resolver is the resolver role: Postfix smtp_tls_policy_maps lookups over
// the socketmap protocol, answered with DANE and MTA-STS.
type Resolver struct {
	Listen   []string `yaml:"listen"`    // TCP "host:port"; [] turns TCP off
	Unix     string   `yaml:"unix"`      // a unix socket path ("" = none)
	UnixMode string   `yaml:"unix_mode"` // octal permissions of the socket
	// CacheFile is the SQLite file of the policy cache; "none" keeps the
	// cache in memory only (a restart forgets every policy).
	CacheFile string `yaml:"cache_file"`
	CacheSize int    `yaml:"cache_size"` // policies kept in memory (LRU)
	// Resolvers are the DNS servers ("" = /etc/resolv.conf). DANE needs a
	// DNSSEC-validating resolver reached over a trusted path: loopback, or
	// an address listed in trust_ad.
	Resolvers []string `yaml:"resolvers"`
	TrustAD   []string `yaml:"trust_ad"`
	// LookupTimeout bounds how long Postfix waits for a domain that is not
	// cached; the lookup goes on in the background after it.
	LookupTimeout   Duration `yaml:"lookup_timeout"`
	CheckInterval   Duration `yaml:"check_interval"`   // TXT id re-check of a cached policy
	NegativeTTL     Duration `yaml:"negative_ttl"`     // no MTA-STS record
	TemporaryTTL    Duration `yaml:"temporary_ttl"`    // failed lookups
	RefreshInterval Duration `yaml:"refresh_interval"` // proactive refetch, at most this long after a fetch
	MaxConns        int      `yaml:"max_conns"`
	MaxConnsPerIP   int      `yaml:"max_conns_per_ip"` // 0: no limit
	IdleTimeout     Duration `yaml:"idle_timeout"`
	DefaultZone     Zone     `yaml:"default_zone"`
	// Zones are per socketmap name (socketmap:inet:HOST:PORT:NAME).
	Zones map[string]Zone `yaml:"zones"`
}

// Zone is the answer style for one socketmap name.
type Zone struct {
	StrictTesting     bool  `yaml:"strict_testing"`
	RequireSNI        *bool `yaml:"require_sni"` // default true
	TLSRPT            bool  `yaml:"tlsrpt"`
	DeferOnSTSFailure bool  `yaml:"defer_on_sts_failure"`
}

// Web is the web checker role (docs/config.md, docs/api.md).
type Web struct {
	// Listen are plain-HTTP addresses: for a local checker, or behind a
	// reverse proxy that terminates TLS.
	Listen []string `yaml:"listen"`
	// ListenHTTPS are HTTPS addresses, served with TLS.Cert and TLS.Key.
	ListenHTTPS []string `yaml:"listen_https"`
	TLS         WebTLS   `yaml:"tls"`
	// PublicURL is the address people use, e.g. https://check.example.com;
	// an https URL turns on HSTS (also behind a proxy), and its origin is
	// trusted for form posts.
	PublicURL string `yaml:"public_url"`
	// TrustedProxies are networks (CIDR) whose X-Forwarded-For header names
	// the client, for the per-client limits.
	TrustedProxies []string   `yaml:"trusted_proxies"`
	Limits         WebLimits  `yaml:"limits"`
	Scanner        WebScanner `yaml:"scanner"`
}

// WebTLS is the certificate of the HTTPS listeners.
type WebTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// WebLimits bound the web checker.
type WebLimits struct {
	ConcurrentScans     int      `yaml:"concurrent_scans"`      // scans run at once
	Queue               int      `yaml:"queue"`                 // scans waiting beyond those
	ScansPerMinute      float64  `yaml:"scans_per_minute"`      // new scans per client; -1: no limit
	ScanBurst           int      `yaml:"scan_burst"`            // per client
	ConcurrentPerClient int      `yaml:"concurrent_per_client"` // queued and running per client; -1: no limit
	StreamsPerClient    int      `yaml:"streams_per_client"`    // open progress streams per client
	ResultTTL           Duration `yaml:"result_ttl"`            // how long a result is kept, at most 1h
	Reuse               Duration `yaml:"reuse"`                 // a result this fresh answers a new request
	ReadHeaderTimeout   Duration `yaml:"read_header_timeout"`
	ReadTimeout         Duration `yaml:"read_timeout"`
	WriteTimeout        Duration `yaml:"write_timeout"`
	IdleTimeout         Duration `yaml:"idle_timeout"`
	MaxHeaderBytes      int      `yaml:"max_header_bytes"`
}

// WebScanner configures the scans of the web checker. There is no
// connect-to, CA or per-request resolver setting: what a visitor can
// reach is fixed here.
type WebScanner struct {
	// EHLO is the name the SMTP probes greet with ("" means the address
	// literal of the local end); give it a matching PTR record.
	EHLO string `yaml:"ehlo"`
	// Resolvers answer the scans' DNS queries ("" = /etc/resolv.conf).
	Resolvers   []string `yaml:"resolvers"`
	Timeout     Duration `yaml:"timeout"`      // the whole budget of one scan
	SMTPTimeout Duration `yaml:"smtp_timeout"` // each SMTP phase
	// AllowPrivateTargets lets scans connect to loopback, private,
	// link-local and other special-purpose addresses (an internal
	// deployment); AllowNetworks lets through only the networks listed.
	AllowPrivateTargets bool     `yaml:"allow_private_targets"`
	AllowNetworks       []string `yaml:"allow_networks"`
}

// Log configures logging (log/slog).
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Admin is the listener for /healthz and /metrics.
type Admin struct {
	Listen string `yaml:"listen"` // "off" disables it
}

// Host is the policy host role.
type Host struct {
	ListenHTTPS []string `yaml:"listen_https"`
	ListenHTTP  []string `yaml:"listen_http"` // ACME HTTP-01 and 404; empty list disables
	Storage     string   `yaml:"storage"`     // certificates, ACME account and policy ids
	// CacheControl is sent with the policy; short, so that a CDN in front
	// does not serve an old policy under a new id (STS-HOST-5).
	CacheControl string `yaml:"cache_control"`
	// PublicName is the host name customers delegate mta-sts.<domain> to
	// with a CNAME; PublicAddresses are this server's public addresses.
	// Both only feed `mailtls serve records`.
	PublicName      string   `yaml:"public_name"`
	PublicAddresses []string `yaml:"public_addresses"`
	// Resolvers answer the follow_mx lookups ("" = /etc/resolv.conf).
	Resolvers        []string `yaml:"resolvers"`
	FollowMXInterval Duration `yaml:"follow_mx_interval"`
	ACME             ACME     `yaml:"acme"`
	Limits           Limits   `yaml:"limits"`
	Domains          Domains  `yaml:"domains"`
}

// ACME configures automatic certificates (github.com/caddyserver/certmagic).
type ACME struct {
	Disabled   bool     `yaml:"disabled"`
	CA         string   `yaml:"ca"` // directory URL
	Email      string   `yaml:"email"`
	Challenges []string `yaml:"challenges"` // http-01, tls-alpn-01
	// TrustedRoots is a PEM file of roots for the ACME server's own HTTPS
	// (a private ACME CA); empty means the system roots.
	TrustedRoots string `yaml:"trusted_roots"`
}

// Limits bound what one client can take.
type Limits struct {
	MaxConnsPerIP     int      `yaml:"max_conns_per_ip"`    // -1: no limit
	RequestsPerSecond float64  `yaml:"requests_per_second"` // per client IP; -1: no limit
	Burst             int      `yaml:"burst"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	ReadTimeout       Duration `yaml:"read_timeout"`
	WriteTimeout      Duration `yaml:"write_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
}

// Domains are the hosted policy domains by name. The type decodes itself:
// yaml.v3 looks for duplicate keys by comparing every key of a mapping with
// every other, which at 10,000 domains costs 0.4 s per load and grows with
// the square (1.7 s at 20,000).
type Domains map[string]Domain

// domainKeys are the keys a domain may have (its yaml tags).
var domainKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[Domain]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		keys[name] = true
	}
	return keys
}()

// UnmarshalYAML implements yaml.Unmarshaler with the checks the decoder
// makes (duplicate domains, unknown keys with their lines), in linear time.
func (m *Domains) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.ShortTag() == "!!null" {
		*m = nil
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: host.domains must map domain names to their settings", n.Line)}}
	}
	out := make(Domains, len(n.Content)/2)
	var errs []string
	// Merged mappings (<<: *anchor) first: explicit keys override them.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			for _, src := range mergeSources(n.Content[i+1]) {
				var merged Domains
				if err := merged.UnmarshalYAML(src); err != nil {
					return err
				}
				maps.Copy(out, merged)
			}
		}
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			continue
		}
		if first, dup := seen[k.Value]; dup {
			errs = append(errs, fmt.Sprintf("line %d: mapping key %#v already defined at line %d", k.Line, k.Value, first))
			continue
		}
		seen[k.Value] = k.Line
		errs = unknownDomainKeys(errs, v)
		var d Domain
		if err := v.Decode(&d); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return err
			}
			errs = append(errs, te.Errors...)
		}
		out[k.Value] = d
	}
	if len(errs) > 0 {
		return &yaml.TypeError{Errors: errs}
	}
	*m = out
	return nil
}

// unknownDomainKeys reports the keys of a domain that Domain does not
// have, as the decoder's KnownFields words them.
func unknownDomainKeys(errs []string, v *yaml.Node) []string {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind != yaml.MappingNode {
		return errs // Decode reports the wrong type
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k := v.Content[i]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			for _, src := range mergeSources(v.Content[i+1]) {
				errs = unknownDomainKeys(errs, src)
			}
			continue
		}
		if !domainKeys[k.Value] {
			errs = append(errs, fmt.Sprintf("line %d: field %s not found in type config.Domain", k.Line, k.Value))
		}
	}
	return errs
}

// mergeSources are the mappings a merge key (<<) refers to: one, or a
// sequence of them.
func mergeSources(v *yaml.Node) []*yaml.Node {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		return v.Content
	}
	return []*yaml.Node{v}
}

// Domain is one hosted policy domain.
type Domain struct {
	Mode     string   `yaml:"mode"`
	MX       []string `yaml:"mx"`
	FollowMX bool     `yaml:"follow_mx"`
	MaxAge   *int64   `yaml:"max_age"`
	// OnDemand issues the certificate at the first TLS handshake for
	// mta-sts.<domain> (customers who delegate by CNAME), never for a
	// name that is not configured.
	OnDemand bool `yaml:"on_demand"`
	// Cert and Key are PEM files of a static certificate instead of ACME.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Duration is a time.Duration written as "30s", "1h".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 1h", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Defaults.
const (
	DefaultAdminListen       = "127.0.0.1:9470"
	DefaultACMECA            = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultCacheControl      = "max-age=60"
	DefaultStorage           = "/var/lib/mailtls"
	DefaultFollowMXInterval  = time.Hour
	DefaultMaxConnsPerIP     = 64
	DefaultRequestsPerSecond = 50
	DefaultBurst             = 100
	DefaultResolverListen    = "127.0.0.1:8461"
	DefaultResolverCacheFile = "/var/lib/mailtls/resolver-cache.db"
	DefaultWebListen         = "127.0.0.1:8080"
	MaxWebResultTTL          = time.Hour
)

// Default returns the configuration used without a file: the web
// checker on DefaultWebListen and the admin listener.
func Default() *Config {
	c := &Config{Web: &Web{}}
	c.applyDefaults()
	return c
}

func (c *Config) applyDefaults() {
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = DefaultAdminListen
	}
	if r := c.Resolver; r != nil {
		if r.Listen == nil {
			r.Listen = []string{DefaultResolverListen}
		}
		if r.UnixMode == "" {
			r.UnixMode = "0666"
		}
		if r.CacheSize == 0 {
			r.CacheSize = 100000
		}
		if r.CacheFile == "" {
			r.CacheFile = DefaultResolverCacheFile
		}
	}
	if c.Web != nil {
		c.Web.applyDefaults()
	}
	h := c.Host
	if h == nil {
		return
	}
	if h.ListenHTTPS == nil {
		h.ListenHTTPS = []string{":443"}
	}
	if h.ListenHTTP == nil {
		h.ListenHTTP = []string{":80"}
	}
	if h.Storage == "" {
		h.Storage = DefaultStorage
	}
	if h.CacheControl == "" {
		h.CacheControl = DefaultCacheControl
	}
	if h.FollowMXInterval == 0 {
		h.FollowMXInterval = Duration(DefaultFollowMXInterval)
	}
	if h.ACME.CA == "" {
		h.ACME.CA = DefaultACMECA
	}
	if h.ACME.Challenges == nil {
		h.ACME.Challenges = []string{"http-01", "tls-alpn-01"}
	}
	l := &h.Limits
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setInt(&l.MaxConnsPerIP, DefaultMaxConnsPerIP)
	setInt(&l.Burst, DefaultBurst)
	setInt(&l.MaxHeaderBytes, 8<<10)
	if l.RequestsPerSecond == 0 {
		l.RequestsPerSecond = DefaultRequestsPerSecond
	}
	setDur := func(v *Duration, d time.Duration) {
		if *v == 0 {
			*v = Duration(d)
		}
	}
	setDur(&l.ReadHeaderTimeout, 5*time.Second)
	setDur(&l.ReadTimeout, 10*time.Second)
	setDur(&l.WriteTimeout, 10*time.Second)
	setDur(&l.IdleTimeout, 60*time.Second)
}

func (w *Web) applyDefaults() {
	if w.Listen == nil && len(w.ListenHTTPS) == 0 {
		w.Listen = []string{DefaultWebListen}
	}
	l := &w.Limits
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setInt(&l.ConcurrentScans, 4)
	setInt(&l.Queue, 64)
	setInt(&l.ScanBurst, 5)
	setInt(&l.ConcurrentPerClient, 2)
	setInt(&l.StreamsPerClient, 8)
	setInt(&l.MaxHeaderBytes, 8<<10)
	if l.ScansPerMinute == 0 {
		l.ScansPerMinute = 10
	}
	setDur := func(v *Duration, d time.Duration) {
		if *v == 0 {
			*v = Duration(d)
		}
	}
	setDur(&l.ResultTTL, MaxWebResultTTL)
	setDur(&l.Reuse, 2*time.Minute)
	setDur(&l.ReadHeaderTimeout, 5*time.Second)
	setDur(&l.ReadTimeout, 10*time.Second)
	// Long enough for a waiting progress page (20s) and ?wait (60s) to
	// extend it; event streams extend it on every write.
	setDur(&l.WriteTimeout, 30*time.Second)
	setDur(&l.IdleTimeout, 60*time.Second)
	setDur(&w.Scanner.Timeout, 60*time.Second)
}

func (w *Web) validate(bad func(string, ...any)) {
	for _, l := range append(append([]string{}, w.Listen...), w.ListenHTTPS...) {
		if err := checkListen(l); err != nil {
			bad("web listen address %q: %v", l, err)
		}
	}
	if len(w.Listen)+len(w.ListenHTTPS) == 0 {
		bad("web: give at least one address in listen or listen_https")
	}
	if len(w.ListenHTTPS) > 0 && (w.TLS.Cert == "" || w.TLS.Key == "") {
		bad("web.listen_https needs web.tls.cert and web.tls.key")
	}
	if (w.TLS.Cert == "") != (w.TLS.Key == "") {
		bad("web.tls: give both cert and key, or neither")
	}
	for _, f := range []string{w.TLS.Cert, w.TLS.Key} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad("web.tls: %v", err)
		}
	}
	if w.PublicURL != "" {
		u, err := url.Parse(w.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			bad("web.public_url %q: want an origin such as https://check.example.com", w.PublicURL)
		}
	}
	for _, p := range w.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			bad("web.trusted_proxies: %q is not a network such as 10.0.0.0/8", p)
		}
	}
	for _, p := range w.Scanner.AllowNetworks {
		if _, err := netip.ParsePrefix(p); err != nil {
			bad("web.scanner.allow_networks: %q is not a network such as 10.0.0.0/8", p)
		}
	}
	l := w.Limits
	if l.ConcurrentScans < 1 || l.Queue < 1 || l.ScanBurst < 1 || l.StreamsPerClient < 1 || l.MaxHeaderBytes < 1024 ||
		(l.ScansPerMinute < 0 && l.ScansPerMinute != -1) || l.ConcurrentPerClient < -1 {
		bad("web.limits: values must be positive (scans_per_minute and concurrent_per_client may be -1 for no limit; max_header_bytes at least 1024)")
	}
	if l.ResultTTL.D() > MaxWebResultTTL {
		bad("web.limits.result_ttl %s: anonymous results are kept at most %s", l.ResultTTL.D(), MaxWebResultTTL)
	}
	if l.Reuse.D() > l.ResultTTL.D() {
		bad("web.limits.reuse %s is longer than result_ttl %s", l.Reuse.D(), l.ResultTTL.D())
	}
	if e := w.Scanner.EHLO; e != "" && !strings.HasPrefix(e, "[") && domain.CheckHostname(strings.TrimSuffix(e, ".")) != nil {
		bad("web.scanner.ehlo %q is not a host name or address literal", e)
	}
	if w.Scanner.Timeout.D() > 10*time.Minute {
		bad("web.scanner.timeout %s: at most 10m", w.Scanner.Timeout.D())
	}
}

var lineRe = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)

// Load reads and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// ReadFile reads a configuration file, at most MaxFileSize bytes.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

// Parse decodes and validates configuration bytes; name labels errors.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, decodeError(name, err)
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// decodeError rewrites YAML errors as "file:line: message".
func decodeError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var msgs []string
		for _, e := range te.Errors {
			if m := lineRe.FindStringSubmatch(e); m != nil {
				msgs = append(msgs, fmt.Sprintf("%s:%s: unknown key %q", name, m[1], m[2]))
				continue
			}
			msgs = append(msgs, name+":"+strings.TrimPrefix(e, "line "))
		}
		return errors.New(strings.Join(msgs, "\n"))
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if strings.HasPrefix(msg, "line ") {
		return fmt.Errorf("%s:%s", name, strings.TrimPrefix(msg, "line "))
	}
	return fmt.Errorf("%s: %s", name, msg)
}

// Validate checks the configuration; the error names the key.
func (c *Config) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level %q: use debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format %q: use text or json", c.Log.Format)
	}
	if c.Admin.Listen != "off" {
		if err := checkListen(c.Admin.Listen); err != nil {
			bad("admin.listen: %v", err)
		}
	}
	if h := c.Host; h != nil {
		h.validate(bad)
	}
	if r := c.Resolver; r != nil {
		r.validate(bad)
	}
	if w := c.Web; w != nil {
		w.validate(bad)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

func (h *Host) validate(bad func(string, ...any)) {
	for _, l := range append(append([]string{}, h.ListenHTTPS...), h.ListenHTTP...) {
		if err := checkListen(l); err != nil {
			bad("host listen address %q: %v", l, err)
		}
	}
	if len(h.ListenHTTPS) == 0 {
		bad("host.listen_https: at least one address is needed")
	}
	if h.PublicName != "" && domain.CheckHostname(strings.TrimSuffix(h.PublicName, ".")) != nil {
		bad("host.public_name %q is not a host name", h.PublicName)
	}
	for _, a := range h.PublicAddresses {
		if net.ParseIP(a) == nil {
			bad("host.public_addresses: %q is not an IP address", a)
		}
	}
	for _, ch := range h.ACME.Challenges {
		if ch != "http-01" && ch != "tls-alpn-01" {
			bad("host.acme.challenges: %q: use http-01 and/or tls-alpn-01", ch)
		}
	}
	if !h.ACME.Disabled && len(h.ListenHTTP) == 0 && !slices.Contains(h.ACME.Challenges, "tls-alpn-01") {
		bad("host.acme: with no listen_http, the tls-alpn-01 challenge is needed")
	}
	l := h.Limits
	if l.Burst < 0 || l.MaxHeaderBytes < 1024 || l.MaxConnsPerIP < -1 || l.RequestsPerSecond < -1 {
		bad("host.limits: values must be positive, or -1 for no limit (max_header_bytes at least 1024)")
	}
	names := make([]string, 0, len(h.Domains))
	for d := range h.Domains {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		h.Domains[d] = h.validateDomain(d, h.Domains[d], bad)
	}
}

func (h *Host) validateDomain(name string, d Domain, bad func(string, ...any)) Domain {
	where := "host.domains." + name
	if n, _, err := domain.Parse(name); err != nil || n != name {
		bad("%s: %q is not a domain in canonical form (lower case, A-labels, no trailing dot)", where, name)
	}
	switch mtasts.Mode(d.Mode) {
	case mtasts.ModeEnforce, mtasts.ModeTesting, mtasts.ModeNone:
	default:
		bad("%s.mode %q: use enforce, testing or none", where, d.Mode)
	}
	for _, p := range d.MX {
		if err := mtasts.CheckPattern(p); err != nil {
			bad("%s.mx %q: %v", where, p, err)
		}
	}
	switch {
	case d.FollowMX && len(d.MX) > 0:
		bad("%s: give either mx or follow_mx, not both", where)
	case !d.FollowMX && len(d.MX) == 0 && d.Mode != string(mtasts.ModeNone):
		bad("%s: mode %s needs mx patterns or follow_mx: true (RFC 8461 §3.2)", where, d.Mode)
	}
	if d.MaxAge != nil && (*d.MaxAge < 0 || *d.MaxAge > mtasts.MaxMaxAge) {
		bad("%s.max_age %d: must be 0 to %d seconds (RFC 8461 §3.2)", where, *d.MaxAge, mtasts.MaxMaxAge)
	}
	if (d.Cert == "") != (d.Key == "") {
		bad("%s: give both cert and key, or neither", where)
	}
	if d.Cert != "" && d.OnDemand {
		bad("%s: on_demand issues certificates; it cannot be combined with a static cert", where)
	}
	if d.Cert == "" && h.ACME.Disabled {
		bad("%s: ACME is disabled, so the domain needs a static cert and key", where)
	}
	for _, f := range []string{d.Cert, d.Key} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad("%s: %v", where, err)
		}
	}
	return d
}

// EffectiveMaxAge is the domain's max_age, or the default for its mode.
func (d Domain) EffectiveMaxAge() int64 {
	if d.MaxAge != nil {
		return *d.MaxAge
	}
	if d.Mode == string(mtasts.ModeEnforce) {
		return 604800
	}
	return 86400
}

func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: bad port", addr)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("%q: the host must be an IP address (or empty for all)", addr)
	}
	return nil
}

func (r *Resolver) validate(bad func(string, ...any)) {
	for _, l := range r.Listen {
		if err := checkListen(l); err != nil {
			bad("resolver.listen %q: %v", l, err)
		}
	}
	if len(r.Listen) == 0 && r.Unix == "" {
		bad("resolver: give listen addresses or a unix socket")
	}
	if r.Unix != "" && !strings.HasPrefix(r.Unix, "/") {
		bad("resolver.unix %q: use an absolute path", r.Unix)
	}
	if m, err := strconv.ParseUint(r.UnixMode, 8, 32); err != nil || m > 0o777 {
		bad("resolver.unix_mode %q: use octal permissions such as 0660", r.UnixMode)
	}
	if r.CacheSize < 1 {
		bad("resolver.cache_size %d: at least 1", r.CacheSize)
	}
	for _, a := range r.TrustAD {
		if net.ParseIP(strings.Trim(a, "[]")) == nil {
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad("resolver.trust_ad %q: an IP address or IP:port", a)
			}
		}
	}
	if r.MaxConns < 0 || r.MaxConnsPerIP < 0 {
		bad("resolver: max_conns and max_conns_per_ip must not be negative")
	}
	for name := range r.Zones {
		if name == "" || strings.ContainsAny(name, " \t:") {
			bad("resolver.zones %q: a socketmap name has no spaces or colons", name)
		}
	}
}

// SNI reports whether the zone adds servername=hostname (default yes).
func (z Zone) SNI() bool { return z.RequireSNI == nil || *z.RequireSNI }
