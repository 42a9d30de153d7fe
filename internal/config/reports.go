package config

import (
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/domain"
)

func (r *Reports) applyDefaults() {
	if r.HTTPS.Path == "" {
		r.HTTPS.Path = DefaultReportsHTTPSPath
	}
	if s := r.SMTP; s != nil && s.Listen == nil {
		s.Listen = []string{DefaultReportsSMTPListen}
	}
	for i := range r.IMAP {
		m := &r.IMAP[i]
		if m.TLS == "" {
			m.TLS = "implicit"
		}
		if m.Mailbox == "" {
			m.Mailbox = "INBOX"
		}
		if m.Interval == 0 {
			m.Interval = Duration(DefaultIMAPInterval)
		}
		if m.Keyword == "" {
			m.Keyword = DefaultIMAPKeyword
		}
	}
	if r.Retention.Raw == 0 {
		r.Retention.Raw = Duration(DefaultReportsRaw)
	}
	if r.Retention.Reports == 0 {
		r.Retention.Reports = Duration(DefaultReportsKept)
	}
}

// ReportDomains are the domains whose reports count: reports.domains and
// the host role's domains.
func (c *Config) ReportDomains() map[string]bool {
	out := map[string]bool{}
	if c.Reports != nil {
		for _, d := range c.Reports.Domains {
			out[domain.Canonical(d)] = true
		}
	}
	if c.Host != nil {
		for d := range c.Host.Domains {
			out[d] = true
		}
	}
	return out
}

func (r *Reports) validate(v *validator, c *Config) {
	for _, d := range r.Domains {
		if n, _, err := domain.Parse(d); err != nil || n != d {
			v.bad("reports.domains", "reports.domains: %q is not a domain in canonical form (lower case, A-labels, no trailing dot)", d)
		}
	}
	if p := r.HTTPS.Path; p != "off" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# \t") || p == "/" || p == "/.well-known/mta-sts.txt") {
		v.bad("reports.https.path", "reports.https.path %q: a path such as /tlsrpt (not / nor the policy path), or off", p)
	}
	if r.HTTPS.MaxBytes < 0 || r.HTTPS.Burst < 0 || (r.HTTPS.PostsPerMinute < 0 && r.HTTPS.PostsPerMinute != -1) {
		v.bad("reports.https", "reports.https: values must be positive (posts_per_minute may be -1 for no limit)")
	}
	if r.HTTPS.Path != "off" && c.Host == nil && c.Web == nil {
		v.bad("reports.https", "reports.https: the HTTPS intake answers on the host or web listeners, and neither role is on (set reports.https.path: off, or turn one on)")
	}
	if s := r.SMTP; s != nil {
		for _, l := range s.Listen {
			if err := checkListen(l); err != nil {
				v.bad("reports.smtp.listen", "reports.smtp.listen %q: %v", l, err)
			}
		}
		if len(s.Listen) == 0 {
			v.bad("reports.smtp.listen", "reports.smtp.listen: at least one address is needed")
		}
		if domain.CheckHostname(strings.TrimSuffix(s.Hostname, ".")) != nil {
			v.bad("reports.smtp.hostname", "reports.smtp.hostname %q: the host name the SMTP listener greets with (and its certificate's name)", s.Hostname)
		}
		if len(s.Addresses) == 0 {
			v.bad("reports.smtp.addresses", "reports.smtp.addresses: name the report addresses (the mailto: of your rua), at least one")
		}
		for _, a := range s.Addresses {
			if addr, err := mail.ParseAddress(a); err != nil || addr.Address != a {
				v.bad("reports.smtp.addresses", "reports.smtp.addresses: %q is not an address such as tlsrpt@example.com", a)
			}
		}
		if (s.TLS.Cert == "") != (s.TLS.Key == "") {
			v.bad("reports.smtp.tls", "reports.smtp.tls: give both cert and key, or neither")
		}
		for key, f := range map[string]string{"reports.smtp.tls.cert": s.TLS.Cert, "reports.smtp.tls.key": s.TLS.Key} {
			if f != "" {
				checkFile(v, key, f)
			}
		}
		if s.TLS.Cert == "" && c.Host == nil {
			v.bad("reports.smtp.tls", "reports.smtp: STARTTLS needs a certificate: the host role's (turn it on) or reports.smtp.tls.cert and key")
		}
		if s.MaxMessageBytes < 0 || s.Burst < 0 || s.MaxConns < -1 || s.MaxConnsPerIP < -1 || (s.MessagesPerMinute < 0 && s.MessagesPerMinute != -1) {
			v.bad("reports.smtp", "reports.smtp: values must be positive, or -1 for no limit")
		}
		if s.Timeout.D() > time.Hour {
			v.bad("reports.smtp.timeout", "reports.smtp.timeout %s: at most 1h", s.Timeout.D())
		}
	}
	for i, m := range r.IMAP {
		key := "reports.imap"
		if m.Server == "" || checkHostPort(m.Server) != nil {
			v.bad(key, "reports.imap[%d].server %q: HOST:PORT of the IMAP server", i, m.Server)
		}
		if m.TLS != "implicit" && m.TLS != "starttls" {
			v.bad(key, "reports.imap[%d].tls %q: implicit or starttls (plain text is not offered: the password would travel in clear)", i, m.TLS)
		}
		if m.Username == "" || m.PasswordFile == "" {
			v.bad(key, "reports.imap[%d]: username and password_file are needed", i)
		}
		if m.PasswordFile != "" {
			checkFile(v, key, m.PasswordFile)
		}
		if m.CAFile != "" {
			checkFile(v, key, m.CAFile)
		}
		if m.Interval.D() < 10*time.Second {
			v.bad(key, "reports.imap[%d].interval %s: at least 10s", i, m.Interval.D())
		}
		if strings.ContainsAny(m.Keyword, " ()[]{}%*\"\\") || strings.HasPrefix(m.Keyword, "\\") {
			v.bad(key, "reports.imap[%d].keyword %q: an IMAP keyword (RFC 3501 atom), such as $TLSRPTProcessed", i, m.Keyword)
		}
	}
}

// checkHostPort checks a HOST:PORT to connect to.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	if net.ParseIP(host) == nil && domain.CheckHostname(host) != nil {
		return fmt.Errorf("bad host %q", host)
	}
	return nil
}
