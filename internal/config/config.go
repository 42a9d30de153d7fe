// Package config is the configuration of `mailtls serve`: one YAML file,
// documented in docs/config.md, whose defaults work with no file at all.
// Unknown keys are errors with their line number, so a typo never passes
// silently.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/mail"
	"github.com/mailtls/mailtls/internal/mtasts"
)

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
	// Reports takes TLS-RPT reports in (HTTPS POST, SMTP, IMAP); absent
	// means off.
	Reports *Reports `yaml:"reports"`
	// Store is the database of what serve keeps: accounts, saved domains,
	// their history and alerts, TLS-RPT reports (docs/store.md). The path
	// of a SQLite file, created with its directory when missing ("" means
	// mailtls.db in the data directory, sqlstore.DefaultPath), or the
	// postgres:// URL of a database several instances share
	// (docs/scaling.md).
	Store string `yaml:"store"`
	// Mail is the relay for the server's own mail (verification and reset
	// links, alerts); absent: such mail is written to the log instead.
	Mail *Mail `yaml:"mail"`
}

// Mail is the relay that submits the server's mail (RFC 6409).
type Mail struct {
	Relay string `yaml:"relay"` // host:port
	// TLS is starttls (default; port 587), tls (implicit TLS, port 465,
	// RFC 8314 §3.3) or none (a relay on a loopback address only).
	TLS string `yaml:"tls"`
	// Username and a password (inline, or better in PasswordFile) log in
	// with SMTP AUTH after TLS; no username: no AUTH.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// From is the From address, e.g. "mailtls <noreply@check.example.com>".
	From    string   `yaml:"from"`
	HELO    string   `yaml:"helo"`    // the EHLO name ("" = the host name)
	Timeout Duration `yaml:"timeout"` // one submission, default 30s
}

// MaxPasswordFileSize bounds mail.password_file.
const MaxPasswordFileSize = 4 << 10

// RelayPassword returns the relay password: Password, or the first line
// of PasswordFile.
func (m *Mail) RelayPassword() (string, error) {
	if m.PasswordFile == "" {
		return m.Password, nil
	}
	b, err := ReadLimited(m.PasswordFile, MaxPasswordFileSize)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSuffix(line, "\r"), nil
}

// RelayConfig is the mail.Relay these settings describe (the password
// left out: RelayPassword reads it).
func (m *Mail) RelayConfig() *mail.Relay {
	return &mail.Relay{Addr: m.Relay, TLS: mail.TLSMode(m.TLS), Username: m.Username, Password: m.Password,
		From: m.From, HELO: m.HELO, Timeout: m.Timeout.D()}
}

func (m *Mail) validate(v *validator) {
	if m.Relay == "" {
		v.bad("mail.relay", "mail.relay: give the relay as host:port, e.g. smtp.example.com:587")
	}
	if m.From == "" {
		v.bad("mail.from", "mail.from: give the From address, e.g. \"mailtls <noreply@check.example.com>\"")
	}
	if m.Password != "" && m.PasswordFile != "" {
		v.bad("mail.password", "mail: give password or password_file, not both")
	}
	if (m.Password != "" || m.PasswordFile != "") && m.Username == "" {
		v.bad("mail.username", "mail: a password needs a username")
	}
	if m.PasswordFile != "" {
		checkFile(v, "mail.password_file", m.PasswordFile)
	}
	if m.Relay != "" && m.From != "" {
		if err := m.RelayConfig().Check(); err != nil {
			v.bad("mail", "%s", strings.Replace(err.Error(), "mail: ", "mail.", 1))
		}
	}
}

// Registration modes (web.accounts.registration).
const (
	RegistrationOpen   = "open"   // anyone may sign up
	RegistrationInvite = "invite" // only with an invitation link (mailtls user invite)
	RegistrationClosed = "closed" // only mailtls user add creates accounts
)

// WebAccounts configure accounts and sessions (docs/web.md).
type WebAccounts struct {
	Registration string `yaml:"registration"` // open (default), invite or closed
	// SessionIdleTimeout ends a session not used for this long (default
	// 12h); SessionLifetime ends any session this long after the login
	// (default 168h, 7 days).
	SessionIdleTimeout Duration `yaml:"session_idle_timeout"`
	SessionLifetime    Duration `yaml:"session_lifetime"`
}

// Bounds and defaults of sessions.
const (
	DefaultSessionIdleTimeout = 12 * time.Hour
	DefaultSessionLifetime    = 7 * 24 * time.Hour
	MaxSessionLifetime        = 30 * 24 * time.Hour
)

// Reports is the TLS-RPT intake role (RFC 8460; docs/reports.md).
type Reports struct {
	// Domains whose reports count, besides the host role's domains;
	// reports about other domains are held aside.
	Domains []string `yaml:"domains"`
	// Resolvers answer the DKIM key lookups ("" = /etc/resolv.conf).
	Resolvers []string      `yaml:"resolvers"`
	HTTPS     ReportsHTTPS  `yaml:"https"`
	SMTP      *ReportsSMTP  `yaml:"smtp"`
	IMAP      []ReportsIMAP `yaml:"imap"`
	Retention ReportsRetain `yaml:"retention"`
}

// ReportsHTTPS is the HTTPS POST intake (RFC 8460 §5.4) on the host and
// web listeners.
type ReportsHTTPS struct {
	Path           string  `yaml:"path"` // default /tlsrpt; "off" turns it off
	MaxBytes       int64   `yaml:"max_bytes"`
	PostsPerMinute float64 `yaml:"posts_per_minute"` // per client address; -1: no limit
	Burst          int     `yaml:"burst"`
}

// ReportsSMTP is the SMTP listener for report mail (RFC 8460 §3 mailto:).
type ReportsSMTP struct {
	Listen []string `yaml:"listen"`
	// Hostname is the greeting's name and the certificate's: the host
	// role's certificate for it serves STARTTLS unless TLS names files.
	Hostname          string   `yaml:"hostname"`
	Addresses         []string `yaml:"addresses"`
	TLS               WebTLS   `yaml:"tls"`
	MaxMessageBytes   int64    `yaml:"max_message_bytes"`
	MessagesPerMinute float64  `yaml:"messages_per_minute"` // per client address; -1: no limit
	Burst             int      `yaml:"burst"`
	MaxConns          int      `yaml:"max_conns"`        // -1: no limit
	MaxConnsPerIP     int      `yaml:"max_conns_per_ip"` // -1: no limit
	Timeout           Duration `yaml:"timeout"`
}

// ReportsIMAP is one mailbox to fetch report mail from.
type ReportsIMAP struct {
	Server       string   `yaml:"server"` // host:port
	TLS          string   `yaml:"tls"`    // implicit (default) or starttls; plain text is not offered
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	Mailbox      string   `yaml:"mailbox"`  // default INBOX
	Interval     Duration `yaml:"interval"` // default 10m
	// Keyword marks processed messages (default $TLSRPTProcessed); MoveTo,
	// if set, moves them to that mailbox too.
	Keyword string `yaml:"keyword"`
	MoveTo  string `yaml:"move_to"`
	// CAFile holds the roots for a server with a private CA ("" = system).
	CAFile string `yaml:"ca_file"`
}

// ReportsRetain is how long reports are kept.
type ReportsRetain struct {
	Raw     Duration `yaml:"raw"`     // the raw bytes, after arrival; default 90 days
	Reports Duration `yaml:"reports"` // parsed reports, after their range ended; default 2 years
}

// Defaults of the reports role.
const (
	DefaultReportsHTTPSPath  = "/tlsrpt"
	DefaultReportsSMTPListen = ":25"
	DefaultIMAPInterval      = 10 * time.Minute
	DefaultIMAPKeyword       = "$TLSRPTProcessed"
	DefaultReportsRaw        = 90 * 24 * time.Hour
	DefaultReportsKept       = 2 * 365 * 24 * time.Hour
)

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
	TrustedProxies []string    `yaml:"trusted_proxies"`
	Limits         WebLimits   `yaml:"limits"`
	Scanner        WebScanner  `yaml:"scanner"`
	Accounts       WebAccounts `yaml:"accounts"`
	// Retention is how long the history of saved domains is kept.
	Retention WebRetention `yaml:"retention"`
	// Worker tunes the worker that rescans saved domains and delivers
	// their alerts (the worker role, docs/monitoring.md).
	Worker WebWorker `yaml:"worker"`
}

// WebWorker tunes the worker role; zero takes the defaults
// (monitor.DefaultScans, DefaultPoll, DefaultLeaseTTL).
type WebWorker struct {
	// Scans is how many saved domains this instance scans at once
	// (default 4).
	Scans int `yaml:"scans"`
	// Poll is how often the worker looks in the store for due domains and
	// alerts when nothing woke it (default 30s): the longest a rescan
	// asked for on another instance, or a domain that fell due, waits.
	Poll Duration `yaml:"poll"`
	// Lease is how long a claimed domain stays this instance's without
	// being renewed (default 5m; renewed every third of it while the scan
	// runs): an instance that dies loses its domains to the others after
	// it (docs/scaling.md).
	Lease Duration `yaml:"lease"`
}

// WebRetention is how long the monitor's janitor keeps saved scans
// (docs/store.md, "Retention"); zero takes the store's default
// (store.DefaultRetention: 30 days, the latest 10, two years).
type WebRetention struct {
	// FullReports: scans younger than this keep their full report with the
	// evidence; older ones are reduced to their summary (grade, counts,
	// findings), which history and diffs still show.
	FullReports Duration `yaml:"full_reports"`
	// KeepFullReports: the latest this many finished scans of each domain
	// keep their full report whatever their age.
	KeepFullReports int `yaml:"keep_full_reports"`
	// Scans: summaries older than this are deleted; a domain's latest scan
	// never is.
	Scans Duration `yaml:"scans"`
}

// WebTLS is the certificate of the HTTPS listeners: PEM files, or from an
// ACME CA through certmagic as the host role gets its certificates.
type WebTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ACME, when given instead of Cert and Key, obtains and renews the
	// certificate of public_url's host name. HTTP-01 is answered on the
	// plain listener, TLS-ALPN-01 on the HTTPS one.
	ACME *ACME `yaml:"acme"`
	// Storage is the folder of the ACME account and certificates (default
	// /var/lib/mailtls, shared with the host role).
	Storage string `yaml:"storage"`
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
	MaxConns          int      `yaml:"max_conns"`           // open connections in all; -1: no limit
	MaxConnsPerIP     int      `yaml:"max_conns_per_ip"`    // -1: no limit
	RequestsPerSecond float64  `yaml:"requests_per_second"` // per client IP; -1: no limit
	Burst             int      `yaml:"burst"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	ReadTimeout       Duration `yaml:"read_timeout"`
	WriteTimeout      Duration `yaml:"write_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
}

// Domains are the hosted policy domains by name.
type Domains map[string]Domain

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
	if n.Kind != yaml.ScalarNode || err != nil || v < 0 {
		return &typeError{want: "a duration such as 30s or 1h"}
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
	DefaultMaxConns          = 10000
	DefaultMaxConnsPerIP     = 64
	DefaultRequestsPerSecond = 50
	DefaultBurst             = 100
	DefaultResolverListen    = "127.0.0.1:8461"
	DefaultResolverCacheFile = "/var/lib/mailtls/resolver-cache.db"
	DefaultWebListen         = "127.0.0.1:8080"
	MaxWebResultTTL          = time.Hour
	MaxWorkerScans           = 1000
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
	if c.Reports != nil {
		c.Reports.applyDefaults()
	}
	if m := c.Mail; m != nil {
		if m.TLS == "" {
			m.TLS = string(mail.StartTLS)
		}
		if m.Timeout == 0 {
			m.Timeout = Duration(mail.DefaultTimeout)
		}
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
	setInt(&l.MaxConns, DefaultMaxConns)
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
	a := &w.Accounts
	if a.Registration == "" {
		a.Registration = RegistrationOpen
	}
	setDur(&a.SessionIdleTimeout, DefaultSessionIdleTimeout)
	setDur(&a.SessionLifetime, DefaultSessionLifetime)
	if a := w.TLS.ACME; a != nil {
		if a.CA == "" {
			a.CA = DefaultACMECA
		}
		if a.Challenges == nil {
			a.Challenges = []string{"http-01", "tls-alpn-01"}
		}
		if w.TLS.Storage == "" {
			w.TLS.Storage = DefaultStorage
		}
	}
}

// ACMEHost is the name the web role's ACME certificate is for: the host of
// public_url ("" without ACME).
func (w *Web) ACMEHost() string {
	if w.TLS.ACME == nil {
		return ""
	}
	u, err := url.Parse(w.PublicURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func (w *Web) validate(v *validator) {
	for _, l := range append(append([]string{}, w.Listen...), w.ListenHTTPS...) {
		if err := checkListen(l); err != nil {
			v.bad("web.listen", "web listen address %q: %v", l, err)
		}
	}
	if len(w.Listen)+len(w.ListenHTTPS) == 0 {
		v.bad("web.listen", "web: give at least one address in listen or listen_https")
	}
	acme := w.TLS.ACME
	if len(w.ListenHTTPS) > 0 && (w.TLS.Cert == "" || w.TLS.Key == "") && acme == nil {
		v.bad("web.listen_https", "web.listen_https needs web.tls.cert and web.tls.key, or web.tls.acme")
	}
	if acme != nil {
		u, err := url.Parse(w.PublicURL)
		switch {
		case w.TLS.Cert != "" || w.TLS.Key != "":
			v.bad("web.tls.acme", "web.tls: give cert and key, or acme, not both")
		case len(w.ListenHTTPS) == 0:
			v.bad("web.tls.acme", "web.tls.acme needs an HTTPS listener (web.listen_https)")
		case err != nil || u.Scheme != "https" || domain.CheckHostname(u.Hostname()) != nil || net.ParseIP(u.Hostname()) != nil:
			v.bad("web.tls.acme", "web.tls.acme gets the certificate of web.public_url's host: set public_url to https://<host name>")
		}
		for _, ch := range acme.Challenges {
			if ch != "http-01" && ch != "tls-alpn-01" {
				v.bad("web.tls.acme.challenges", "web.tls.acme.challenges: %q: use http-01 and/or tls-alpn-01", ch)
			}
		}
		if len(w.Listen) == 0 && !slices.Contains(acme.Challenges, "tls-alpn-01") {
			v.bad("web.tls.acme", "web.tls.acme: with no plain listener (web.listen), the tls-alpn-01 challenge is needed")
		}
		if acme.Disabled {
			v.bad("web.tls.acme.disabled", "web.tls.acme.disabled: leave acme out instead")
		}
		if acme.TrustedRoots != "" {
			checkFile(v, "web.tls.acme.trusted_roots", acme.TrustedRoots)
		}
	}
	if (w.TLS.Cert == "") != (w.TLS.Key == "") {
		v.bad("web.tls", "web.tls: give both cert and key, or neither")
	}
	for key, f := range map[string]string{"web.tls.cert": w.TLS.Cert, "web.tls.key": w.TLS.Key} {
		if f != "" {
			checkFile(v, key, f)
		}
	}
	if w.PublicURL != "" {
		u, err := url.Parse(w.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			v.bad("web.public_url", "web.public_url %q: want an origin such as https://check.example.com", w.PublicURL)
		}
	}
	for _, p := range w.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			v.bad("web.trusted_proxies", "web.trusted_proxies: %q is not a network such as 10.0.0.0/8", p)
		}
	}
	for _, p := range w.Scanner.AllowNetworks {
		if _, err := netip.ParsePrefix(p); err != nil {
			v.bad("web.scanner.allow_networks", "web.scanner.allow_networks: %q is not a network such as 10.0.0.0/8", p)
		}
	}
	l := w.Limits
	if l.ConcurrentScans < 1 || l.Queue < 1 || l.ScanBurst < 1 || l.StreamsPerClient < 1 || l.MaxHeaderBytes < 1024 ||
		(l.ScansPerMinute < 0 && l.ScansPerMinute != -1) || l.ConcurrentPerClient < -1 {
		v.bad("web.limits", "web.limits: values must be positive (scans_per_minute and concurrent_per_client may be -1 for no limit; max_header_bytes at least 1024)")
	}
	if l.ResultTTL.D() > MaxWebResultTTL {
		v.bad("web.limits.result_ttl", "web.limits.result_ttl %s: anonymous results are kept at most %s", l.ResultTTL.D(), MaxWebResultTTL)
	}
	if l.Reuse.D() > l.ResultTTL.D() {
		v.bad("web.limits.reuse", "web.limits.reuse %s is longer than result_ttl %s", l.Reuse.D(), l.ResultTTL.D())
	}
	if e := w.Scanner.EHLO; e != "" && !strings.HasPrefix(e, "[") && domain.CheckHostname(strings.TrimSuffix(e, ".")) != nil {
		v.bad("web.scanner.ehlo", "web.scanner.ehlo %q is not a host name or address literal", e)
	}
	if w.Scanner.Timeout.D() > 10*time.Minute {
		v.bad("web.scanner.timeout", "web.scanner.timeout %s: at most 10m", w.Scanner.Timeout.D())
	}
	a := w.Accounts
	switch a.Registration {
	case RegistrationOpen, RegistrationInvite, RegistrationClosed:
	default:
		v.bad("web.accounts.registration", "web.accounts.registration %q: use open, invite or closed", a.Registration)
	}
	if a.SessionLifetime.D() > MaxSessionLifetime {
		v.bad("web.accounts.session_lifetime", "web.accounts.session_lifetime %s: at most %s", a.SessionLifetime.D(), MaxSessionLifetime)
	}
	if a.SessionIdleTimeout.D() > a.SessionLifetime.D() {
		v.bad("web.accounts.session_idle_timeout", "web.accounts.session_idle_timeout %s is longer than session_lifetime %s", a.SessionIdleTimeout.D(), a.SessionLifetime.D())
	}
	if wk := w.Worker; wk.Scans < 0 || wk.Scans > MaxWorkerScans {
		v.bad("web.worker.scans", "web.worker.scans %d: want 1 to %d (0 takes the default)", wk.Scans, MaxWorkerScans)
	}
	if p := w.Worker.Poll.D(); p != 0 && (p < time.Second || p > time.Hour) {
		v.bad("web.worker.poll", "web.worker.poll %s: want 1s to 1h", p)
	}
	if l := w.Worker.Lease.D(); l != 0 && (l < 3*time.Second || l > time.Hour) {
		v.bad("web.worker.lease", "web.worker.lease %s: want 3s to 1h (it is renewed every third of it)", l)
	}
	ret := w.Retention
	if ret.KeepFullReports < 0 {
		v.bad("web.retention.keep_full_reports", "web.retention.keep_full_reports %d: want 0 (the default) or more", ret.KeepFullReports)
	}
	if ret.FullReports != 0 && ret.Scans != 0 && ret.Scans < ret.FullReports {
		v.bad("web.retention.scans", "web.retention.scans %s is shorter than full_reports %s: a scan's summary outlives its full report", ret.Scans.D(), ret.FullReports.D())
	}
}

// Load reads and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// ReadFile reads a configuration file, at most MaxFileSize bytes.
func ReadFile(path string) ([]byte, error) { return ReadLimited(path, MaxFileSize) }

// ReadLimited reads a file the configuration names, which must be a
// regular file (not a device such as /dev/zero, nor a pipe that never
// ends) of at most limit bytes. Errors are *Error of kind ErrFile.
func ReadLimited(path string, limit int) ([]byte, error) {
	fail := func(msg string, err error) error {
		return &Error{File: path, Kind: ErrFile, Msg: msg, Err: err}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fail(pathErrorText(err), err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fail("not a regular file", nil)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(pathErrorText(err), err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fail(pathErrorText(err), err)
	}
	if len(data) > limit {
		return nil, fail(fmt.Sprintf("larger than %d bytes", limit), nil)
	}
	return data, nil
}

// pathErrorText is an *os.PathError's text without the path, which the
// Error names already.
func pathErrorText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

// Parse decodes and validates configuration bytes; name labels errors.
// Errors are Errors: every problem found, each with its line when it has
// one.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{}
	lines, errs := decode(name, data, c)
	if len(errs) > 0 {
		return nil, errs
	}
	c.applyDefaults()
	if errs := c.validate(name, lines); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// Validate checks the configuration; each error names its key.
func (c *Config) Validate() error { return c.validate("", nil).orNil() }

// validator collects validation errors, with the line of the key when the
// decoder recorded it.
type validator struct {
	file  string
	lines map[string]int
	errs  Errors
}

// bad records a problem with key; the message starts with the key.
func (v *validator) bad(key, format string, args ...any) {
	line := 0
	// The line of the key, or of the closest enclosing key recorded (a
	// domain's keys take the domain's line).
	for k := key; k != "" && v.lines != nil; {
		if l, ok := v.lines[k]; ok {
			line = l
			break
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Key: key, Kind: ErrInvalid, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate(file string, lines map[string]int) Errors {
	v := &validator{file: file, lines: lines}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.bad("log.level", "log.level %q: use debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		v.bad("log.format", "log.format %q: use text or json", c.Log.Format)
	}
	if c.Admin.Listen != "off" {
		if err := checkListen(c.Admin.Listen); err != nil {
			v.bad("admin.listen", "admin.listen: %v", err)
		}
	}
	if h := c.Host; h != nil {
		h.validate(v)
	}
	if r := c.Resolver; r != nil {
		r.validate(v)
	}
	if w := c.Web; w != nil {
		w.validate(v)
	}
	if r := c.Reports; r != nil {
		r.validate(v, c)
	}
	if m := c.Mail; m != nil {
		m.validate(v)
	}
	// A URL's password never goes into a message.
	if strings.Contains(c.Store, "://") && !IsPostgresURL(c.Store) {
		v.bad("store", "store: give the path of a SQLite file or a postgres:// URL")
	}
	return v.errs
}

// IsPostgresURL reports whether store names a PostgreSQL database (a
// postgres:// or postgresql:// URL) rather than a SQLite file.
func IsPostgresURL(store string) bool {
	return strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://")
}

func (h *Host) validate(v *validator) {
	for _, l := range h.ListenHTTPS {
		if err := checkListen(l); err != nil {
			v.bad("host.listen_https", "host.listen_https %q: %v", l, err)
		}
	}
	for _, l := range h.ListenHTTP {
		if err := checkListen(l); err != nil {
			v.bad("host.listen_http", "host.listen_http %q: %v", l, err)
		}
	}
	if len(h.ListenHTTPS) == 0 {
		v.bad("host.listen_https", "host.listen_https: at least one address is needed")
	}
	// A header value must not end the header early (RFC 9110 §5.5).
	if strings.ContainsFunc(h.CacheControl, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
		v.bad("host.cache_control", "host.cache_control %q: a header value cannot hold control characters such as CR or LF", h.CacheControl)
	}
	if h.PublicName != "" && domain.CheckHostname(strings.TrimSuffix(h.PublicName, ".")) != nil {
		v.bad("host.public_name", "host.public_name %q is not a host name", h.PublicName)
	}
	for _, a := range h.PublicAddresses {
		if net.ParseIP(a) == nil {
			v.bad("host.public_addresses", "host.public_addresses: %q is not an IP address", a)
		}
	}
	for _, ch := range h.ACME.Challenges {
		if ch != "http-01" && ch != "tls-alpn-01" {
			v.bad("host.acme.challenges", "host.acme.challenges: %q: use http-01 and/or tls-alpn-01", ch)
		}
	}
	if !h.ACME.Disabled && len(h.ListenHTTP) == 0 && !slices.Contains(h.ACME.Challenges, "tls-alpn-01") {
		v.bad("host.acme", "host.acme: with no listen_http, the tls-alpn-01 challenge is needed")
	}
	l := h.Limits
	if l.Burst < 0 || l.MaxHeaderBytes < 1024 || l.MaxConnsPerIP < -1 || l.MaxConns < -1 || l.RequestsPerSecond < -1 {
		v.bad("host.limits", "host.limits: values must be positive, or -1 for no limit (max_header_bytes at least 1024)")
	}
	names := make([]string, 0, len(h.Domains))
	for d := range h.Domains {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		h.validateDomain(v, d, h.Domains[d])
	}
}

func (h *Host) validateDomain(v *validator, name string, d Domain) {
	where := "host.domains." + name
	if n, _, err := domain.Parse(name); err != nil || n != name {
		v.bad(where, "%s: %q is not a domain in canonical form (lower case, A-labels, no trailing dot)", where, name)
	}
	modeOK := true
	switch mtasts.Mode(d.Mode) {
	case mtasts.ModeEnforce, mtasts.ModeTesting, mtasts.ModeNone:
	default:
		modeOK = false
		v.bad(where+".mode", "%s.mode %q: use enforce, testing or none", where, d.Mode)
	}
	for _, p := range d.MX {
		if err := mtasts.CheckPattern(p); err != nil {
			v.bad(where+".mx", "%s.mx %q: %v", where, p, err)
		}
	}
	switch {
	case d.FollowMX && len(d.MX) > 0:
		v.bad(where, "%s: give either mx or follow_mx, not both", where)
	case modeOK && !d.FollowMX && len(d.MX) == 0 && d.Mode != string(mtasts.ModeNone):
		// Only for a valid mode: a mistyped one has its own error.
		v.bad(where+".mx", "%s: mode %s needs mx patterns or follow_mx: true (RFC 8461 §3.2)", where, d.Mode)
	}
	if d.MaxAge != nil && (*d.MaxAge < 0 || *d.MaxAge > mtasts.MaxMaxAge) {
		v.bad(where+".max_age", "%s.max_age %d: must be 0 to %d seconds (RFC 8461 §3.2)", where, *d.MaxAge, mtasts.MaxMaxAge)
	}
	if (d.Cert == "") != (d.Key == "") {
		v.bad(where, "%s: give both cert and key, or neither", where)
	}
	if d.Cert != "" && d.OnDemand {
		v.bad(where, "%s: on_demand issues certificates; it cannot be combined with a static cert", where)
	}
	if d.Cert == "" && h.ACME.Disabled {
		v.bad(where, "%s: ACME is disabled, so the domain needs a static cert and key", where)
	}
	for key, f := range map[string]string{"cert": d.Cert, "key": d.Key} {
		if f != "" {
			checkFile(v, where+"."+key, f)
		}
	}
}

// checkFile checks that a file the configuration names is a regular file:
// it is read later, and a device or a pipe would never end.
func checkFile(v *validator, key, f string) {
	if fi, err := os.Stat(f); err != nil {
		v.bad(key, "%s: %v", key, err)
	} else if !fi.Mode().IsRegular() {
		v.bad(key, "%s %s: not a regular file", key, f)
	}
}

// ServedPolicy is the policy served for the domain name: its mode, its
// max_age (the mode's default when unset) and its mx patterns, or for
// follow_mx the patterns learnt from its MX set; ok is false while those
// are not known. The host and `serve records` both take it from here.
func (d Domain) ServedPolicy(name string, learnt func(domain string) ([]string, bool)) (pol *mtasts.Policy, ok bool) {
	pol = &mtasts.Policy{Version: "STSv1", Mode: mtasts.Mode(d.Mode), MaxAge: d.EffectiveMaxAge(), MX: d.MX}
	if d.FollowMX {
		if pol.MX, ok = learnt(name); !ok {
			return nil, false
		}
	}
	return pol, true
}

// EffectiveMaxAge is the domain's max_age, or the default for its mode.
func (d Domain) EffectiveMaxAge() int64 {
	if d.MaxAge != nil {
		return *d.MaxAge
	}
	return mtasts.RecommendedMaxAge(mtasts.Mode(d.Mode))
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

func (r *Resolver) validate(v *validator) {
	for _, l := range r.Listen {
		if err := checkListen(l); err != nil {
			v.bad("resolver.listen", "resolver.listen %q: %v", l, err)
		}
	}
	if len(r.Listen) == 0 && r.Unix == "" {
		v.bad("resolver.listen", "resolver: give listen addresses or a unix socket")
	}
	if r.Unix != "" && !strings.HasPrefix(r.Unix, "/") {
		v.bad("resolver.unix", "resolver.unix %q: use an absolute path", r.Unix)
	}
	if m, err := strconv.ParseUint(r.UnixMode, 8, 32); err != nil || m > 0o777 {
		v.bad("resolver.unix_mode", "resolver.unix_mode %q: use octal permissions such as 0660", r.UnixMode)
	}
	if r.CacheSize < 1 {
		v.bad("resolver.cache_size", "resolver.cache_size %d: at least 1", r.CacheSize)
	}
	for _, a := range r.TrustAD {
		if net.ParseIP(strings.Trim(a, "[]")) == nil {
			if _, _, err := net.SplitHostPort(a); err != nil {
				v.bad("resolver.trust_ad", "resolver.trust_ad %q: an IP address or IP:port", a)
			}
		}
	}
	if r.MaxConns < 0 || r.MaxConnsPerIP < 0 {
		v.bad("resolver", "resolver: max_conns and max_conns_per_ip must not be negative")
	}
	for name := range r.Zones {
		if name == "" || strings.ContainsAny(name, " \t:") {
			v.bad("resolver.zones", "resolver.zones %q: a socketmap name has no spaces or colons", name)
		}
	}
}

// SNI reports whether the zone adds servername=hostname (default yes).
func (z Zone) SNI() bool { return z.RequireSNI == nil || *z.RequireSNI }
