// Package difftest builds `mailtls check` documents for the tests of the
// diff, the history rules and alerts: a healthy enforce setup that a test
// then changes field by field, with the evidence the rules read
// (certificates of the policy host and the MX addresses).
package difftest

import (
	"time"

	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/webpki"
)

// Cert is a leaf certificate for the evidence.
func Cert(name, issuer, key string, notAfter time.Time) webpki.Cert {
	return webpki.Cert{Subject: "CN=" + name, Issuer: issuer, DNSNames: []string{name}, NotBefore: notAfter.Add(-90 * 24 * time.Hour),
		NotAfter: notAfter, KeyType: "ECDSA P-256", SHA256: "cert-" + key + "-" + notAfter.Format("20060102"), SPKISHA256: "spki-" + key, Size: 600}
}

// Expiry is when the certificates of Healthy expire.
var Expiry = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

// Healthy returns example.com scanned at at: record id "1", an enforce
// policy covering mx1 and mx2.example.com, both with one IPv4 address
// whose certificates (key "k1" and "k2") expire at Expiry, DANE valid on
// mx1, TLS-RPT published, grade A.
func Healthy(at time.Time) *report.Document {
	exp := Expiry
	grade := "A"
	yes := true
	d := &report.Document{
		SchemaVersion: report.SchemaVersion, Domain: "example.com", ScannedAt: at.UTC().Format(time.RFC3339),
		Grade: &grade, GradeReasons: []string{}, PolicyStatus: "enforce",
		Policy:   &report.Policy{ID: "1", Mode: "enforce", MX: []string{"mx1.example.com", "mx2.example.com"}, MaxAge: 604800},
		TLSRPT:   &report.TLSRPT{RUA: []string{"mailto:tlsrpt@example.com"}, UsableRUA: []string{"mailto:tlsrpt@example.com"}},
		Findings: []report.Finding{}, Fixes: []report.Fix{},
		Evidence: &scan.Observations{Domain: "example.com", StartedAt: at.UTC(), PolicyHost: "mta-sts.example.com"},
	}
	d.Evidence.Fetches = []*fetch.Result{{URL: "https://mta-sts.example.com/.well-known/mta-sts.txt", Host: "mta-sts.example.com", Address: "192.0.2.1:443",
		Status: 200, TLS: &fetch.TLS{Version: "TLS 1.3", Chain: []webpki.Cert{Cert("mta-sts.example.com", "CN=Test CA", "p1", exp)}}}}
	for i, h := range []string{"mx1.example.com", "mx2.example.com"} {
		ip := []string{"192.0.2.10", "192.0.2.20"}[i]
		key := []string{"k1", "k2"}[i]
		na := exp.Format(time.RFC3339)
		m := report.MX{Host: h, Preference: uint16(10 * (i + 1)), PolicyMatch: &yes, Pattern: h,
			Addresses: []report.Address{{IP: ip, STARTTLS: true, CertValid: true, CertNotAfter: &na, PolicyMatch: &yes, Pass: true,
				DANE: &report.AddressDANE{Status: "not-applicable"}}},
			DANE: &report.MXDANE{Status: "none", DNSSEC: "secure", Owner: "_25._tcp." + h, Records: []string{}}}
		if i == 0 {
			m.DANE = &report.MXDANE{Status: "valid", DNSSEC: "secure", Owner: "_25._tcp." + h, Records: []string{"3 1 1 aaaa"}}
			m.Addresses[0].DANE = &report.AddressDANE{Status: "valid", MatchedRecord: "3 1 1 aaaa"}
		}
		d.MX = append(d.MX, m)
		d.Evidence.MXHosts = append(d.Evidence.MXHosts, &scan.MXHost{Host: h, Preference: m.Preference,
			Probes: []*smtpprobe.Result{{Host: h, Address: ip + ":25", STARTTLS: true,
				TLS: &smtpprobe.TLS{Version: "TLS 1.3", Chain: []webpki.Cert{Cert(h, "CN=Test CA", key, exp)}}}}})
	}
	return d
}

// SetGrade sets the grade ("" for undetermined).
func SetGrade(d *report.Document, g string) {
	if g == "" {
		d.Grade = nil
		return
	}
	d.Grade = &g
}

// AddFinding adds a finding to the document.
func AddFinding(d *report.Document, id, severity, component, subject, message string) {
	d.Findings = append(d.Findings, report.Finding{ID: id, Severity: severity, Component: component, Subject: subject, Message: message, Ref: "RFC"})
}

// MXCert replaces the certificate presented at mx host index i.
func MXCert(d *report.Document, i int, c webpki.Cert) {
	d.Evidence.MXHosts[i].Probes[0].TLS.Chain = []webpki.Cert{c}
	na := c.NotAfter.Format(time.RFC3339)
	d.MX[i].Addresses[0].CertNotAfter = &na
}

// PolicyCert replaces the policy host's certificate.
func PolicyCert(d *report.Document, c webpki.Cert) {
	d.Evidence.Fetches[0].TLS.Chain = []webpki.Cert{c}
}

// AddMX adds an MX host with one address; covered says whether the
// policy matches it.
func AddMX(d *report.Document, host, ip string, covered bool, c webpki.Cert) {
	na := c.NotAfter.Format(time.RFC3339)
	d.MX = append(d.MX, report.MX{Host: host, Preference: 30, PolicyMatch: &covered,
		Addresses: []report.Address{{IP: ip, STARTTLS: true, CertValid: true, CertNotAfter: &na, PolicyMatch: &covered,
			DANE: &report.AddressDANE{Status: "not-applicable"}}},
		DANE: &report.MXDANE{Status: "none", DNSSEC: "secure", Owner: "_25._tcp." + host, Records: []string{}}})
	d.Evidence.MXHosts = append(d.Evidence.MXHosts, &scan.MXHost{Host: host, Preference: 30,
		Probes: []*smtpprobe.Result{{Host: host, Address: ip + ":25", STARTTLS: true, TLS: &smtpprobe.TLS{Version: "TLS 1.3", Chain: []webpki.Cert{c}}}}})
}
