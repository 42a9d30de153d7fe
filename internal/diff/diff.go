// Package diff compares two scans of a domain: findings added, removed and
// sustained, the grade, the effective policy (id, mode, max_age, mx
// patterns), the MX set, the certificates of the policy host and of every
// MX address (issuer, expiry, key), and the TLSA records of every MX host.
//
// It is pure: it reads two JSON documents of `mailtls check` (package
// report, evidence included) and decides nothing. A scan that retention
// reduced to its summary has no document; then only its grade and findings
// are compared, and Diff.Limited says what could not be.
package diff

import (
	"cmp"
	"net"
	"slices"
	"time"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/webpki"
)

// Scan is one side of a diff.
type Scan struct {
	Grade    string // "" when undetermined
	Findings []report.Finding
	// Doc is the full document; nil for a scan kept as a summary.
	Doc *report.Document
	// NotRead: components whose findings this scan did not judge.
	NotRead []report.NotRead
}

// FromDocument is the side of a diff for a full document.
func FromDocument(d *report.Document) Scan {
	s := Scan{Findings: d.Findings, Doc: d, NotRead: d.NotRead}
	if d.Grade != nil {
		s.Grade = *d.Grade
	}
	return s
}

// Diff is what changed from scan A (older) to scan B (newer).
type Diff struct {
	Added   []report.Finding `json:"added"`   // in B, not in A
	Removed []report.Finding `json:"removed"` // in A, not in B, which judged them
	// NotCompared: in A, of a component B did not read (B.NotRead), so
	// not known to be gone; never counted as fixed.
	NotCompared []report.Finding `json:"not_compared,omitempty"`
	Sustained   []Sustained      `json:"sustained"` // in both (by ID and subject)
	Grade       GradeChange      `json:"grade"`
	// Policy is nil when neither scan has an effective policy, or one of
	// them was reduced to a summary.
	Policy *PolicyChange `json:"policy"`
	// MX is nil when it could not be compared (a summary).
	MX    *SetChange   `json:"mx"`
	Certs []CertChange `json:"certificates"`
	TLSA  []TLSAChange `json:"tlsa"`
	// Limited says why the policy, MX, certificate and TLSA parts are
	// missing ("" when both documents were there).
	Limited string `json:"limited,omitempty"`
}

// Sustained is a finding present in both scans; its severity or message
// may have changed.
type Sustained struct {
	Before report.Finding `json:"before"`
	After  report.Finding `json:"after"`
}

// GradeChange compares the grades; "" is an undetermined grade.
type GradeChange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Changed reports whether the grade differs.
func (g GradeChange) Changed() bool { return g.From != g.To }

// Dropped reports whether B's grade is worse than A's; an undetermined
// grade on either side is not a drop (temporary is not worse).
func (g GradeChange) Dropped() bool {
	return g.From != "" && g.To != "" && Rank(g.To) > Rank(g.From)
}

// Improved reports whether B's grade is better than A's.
func (g GradeChange) Improved() bool {
	return g.From != "" && g.To != "" && Rank(g.To) < Rank(g.From)
}

// Rank orders grades, best first: A+ is 0, F is 5; an unknown grade -1.
func Rank(g string) int {
	return slices.Index([]finding.Grade{finding.GradeAPlus, finding.GradeA, finding.GradeB, finding.GradeC, finding.GradeD, finding.GradeF}, finding.Grade(g))
}

// PolicyChange compares the effective policies. A nil side has no
// effective policy (none published, or it could not be fetched).
type PolicyChange struct {
	From       *report.Policy `json:"from"`
	To         *report.Policy `json:"to"`
	IDChanged  bool           `json:"id_changed"`
	Mode       bool           `json:"mode_changed"`
	MaxAge     bool           `json:"max_age_changed"`
	MXAdded    []string       `json:"mx_added"`
	MXRemoved  []string       `json:"mx_removed"`
	Extensions bool           `json:"extensions_changed"`
}

// Changed reports whether anything of the policy changed.
func (p *PolicyChange) Changed() bool {
	return p != nil && ((p.From == nil) != (p.To == nil) || p.IDChanged || p.BodyChanged())
}

// BodyChanged reports whether what the policy says changed (mode, max_age,
// mx patterns, extensions), whatever the id did.
func (p *PolicyChange) BodyChanged() bool {
	if p == nil || p.From == nil || p.To == nil {
		return false
	}
	return p.Mode || p.MaxAge || len(p.MXAdded) > 0 || len(p.MXRemoved) > 0 || p.Extensions
}

// SetChange is a change of a set of names.
type SetChange struct {
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
}

// Changed reports whether the set changed.
func (s *SetChange) Changed() bool { return s != nil && (len(s.Added) > 0 || len(s.Removed) > 0) }

// Cert roles.
const (
	RolePolicyHost = "policy-host"
	RoleMX         = "mx"
)

// Cert is what a diff compares of a leaf certificate.
type Cert struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	KeyType  string    `json:"key_type"`
	SPKI     string    `json:"spki_sha256"` // the key, as TLSA "3 1 1" sees it
	SHA256   string    `json:"sha256"`      // the whole certificate
}

// CertChange is a changed leaf certificate at one address of the policy
// host or of an MX host, looked at in both scans. From or To is nil when
// TLS failed on that side, so no certificate was seen.
type CertChange struct {
	Role    string `json:"role"` // RolePolicyHost or RoleMX
	Host    string `json:"host"`
	Address string `json:"address"` // the IP address
	From    *Cert  `json:"from"`
	To      *Cert  `json:"to"`
	Issuer  bool   `json:"issuer_changed"`
	Expiry  bool   `json:"expiry_changed"`
	Key     bool   `json:"key_changed"`
}

// TLSAChange is a change of an MX host's TLSA records.
type TLSAChange struct {
	Host    string   `json:"host"`
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
}

// Compare returns the changes from a to b.
func Compare(a, b Scan) Diff {
	d := Diff{Grade: GradeChange{From: a.Grade, To: b.Grade}}
	d.Added, d.Removed, d.Sustained = findings(a.Findings, b.Findings)
	d.Removed, d.NotCompared = unread(d.Removed, b.NotRead)
	if a.Doc == nil || b.Doc == nil {
		d.Limited = "the full report of a scan was removed by retention: only the grade and the findings are compared"
		return d
	}
	d.Policy = policy(a.Doc.Policy, b.Doc.Policy)
	d.MX = mxSet(a.Doc, b.Doc)
	d.Certs = certs(a.Doc, b.Doc)
	d.TLSA = tlsa(a.Doc, b.Doc)
	return d
}

// Key identifies a finding across scans: the same ID about the same
// subject is the same problem.
func Key(f report.Finding) string { return f.ID + "\x00" + f.Subject }

func findings(a, b []report.Finding) (added, removed []report.Finding, sustained []Sustained) {
	inA := map[string]report.Finding{}
	for _, f := range a {
		if _, dup := inA[Key(f)]; !dup {
			inA[Key(f)] = f
		}
	}
	inB := map[string]bool{}
	for _, f := range b {
		k := Key(f)
		if inB[k] {
			continue
		}
		inB[k] = true
		if old, ok := inA[k]; ok {
			sustained = append(sustained, Sustained{Before: old, After: f})
		} else {
			added = append(added, f)
		}
	}
	seen := map[string]bool{}
	for _, f := range a {
		if k := Key(f); !inB[k] && !seen[k] {
			seen[k] = true
			removed = append(removed, f)
		}
	}
	return added, removed, sustained
}

// unread moves the removed findings of a component the newer scan did not
// read from removed to notCompared: a report never claims a problem fixed
// that it did not look at.
func unread(removed []report.Finding, notRead []report.NotRead) (gone, notCompared []report.Finding) {
	skipped := map[string]bool{}
	for _, n := range notRead {
		skipped[n.Component] = true
	}
	for _, f := range removed {
		if skipped[f.Component] {
			notCompared = append(notCompared, f)
		} else {
			gone = append(gone, f)
		}
	}
	return gone, notCompared
}

func policy(a, b *report.Policy) *PolicyChange {
	if a == nil && b == nil {
		return nil
	}
	p := &PolicyChange{From: a, To: b}
	if a == nil || b == nil {
		return p
	}
	p.IDChanged = a.ID != b.ID
	p.Mode = a.Mode != b.Mode
	p.MaxAge = a.MaxAge != b.MaxAge
	p.MXAdded, p.MXRemoved = setDiff(a.MX, b.MX)
	p.Extensions = !slices.Equal(a.Extensions, b.Extensions)
	return p
}

// mxSet compares the MX host names (the implicit MX of a domain without
// MX records counts as its own name).
func mxSet(a, b *report.Document) *SetChange {
	names := func(d *report.Document) []string {
		var out []string
		for _, m := range d.MX {
			out = append(out, m.Host)
		}
		return out
	}
	added, removed := setDiff(names(a), names(b))
	return &SetChange{Added: added, Removed: removed}
}

// setDiff returns what b has that a does not, and the reverse, sorted.
func setDiff(a, b []string) (added, removed []string) {
	for _, x := range b {
		if !slices.Contains(a, x) && !slices.Contains(added, x) {
			added = append(added, x)
		}
	}
	for _, x := range a {
		if !slices.Contains(b, x) && !slices.Contains(removed, x) {
			removed = append(removed, x)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}

// Location is where a certificate was seen: the role of the host, the
// host and the IP address.
type Location struct{ Role, Host, Address string }

// Leaves returns the leaf certificate seen at every address of the policy
// host and of the MX hosts, from the document's evidence; nil for an
// address that was looked at but presented none (TLS failed). Addresses
// the scan did not look at are absent.
func Leaves(d *report.Document) map[Location]*Cert {
	out := map[Location]*Cert{}
	if d == nil || d.Evidence == nil {
		return out
	}
	leaf := func(chain []webpki.Cert) *Cert {
		if len(chain) == 0 {
			return nil
		}
		c := chain[0]
		return &Cert{Subject: c.Subject, Issuer: c.Issuer, NotAfter: c.NotAfter.UTC(), KeyType: c.KeyType, SPKI: c.SPKISHA256, SHA256: c.SHA256}
	}
	for _, f := range d.Evidence.Fetches {
		k := Location{RolePolicyHost, f.Host, hostOf(f.Address)}
		if f.TLS != nil {
			out[k] = leaf(f.TLS.Chain)
		} else {
			out[k] = nil
		}
	}
	for _, h := range d.Evidence.MXHosts {
		for _, p := range h.Probes {
			if p.Class != "" && !p.Class.Observed() {
				continue // not probed: nothing is known
			}
			k := Location{RoleMX, h.Host, hostOf(p.Address)}
			if p.TLS != nil {
				out[k] = leaf(p.TLS.Chain)
			} else {
				out[k] = nil
			}
		}
	}
	return out
}

func certs(a, b *report.Document) []CertChange {
	la, lb := Leaves(a), Leaves(b)
	keys := map[Location]bool{}
	for k := range la {
		keys[k] = true
	}
	for k := range lb {
		keys[k] = true
	}
	var out []CertChange
	for k := range keys {
		ca, okA := la[k]
		cb, okB := lb[k]
		if !okA || !okB {
			// The address was not looked at in one scan (new, gone, or
			// not probed): nothing is known to compare. The MX set says
			// what is new or gone.
			continue
		}
		c := CertChange{Role: k.Role, Host: k.Host, Address: k.Address, From: ca, To: cb}
		switch {
		case ca == nil && cb == nil:
			continue
		case ca == nil || cb == nil:
		default:
			c.Issuer = ca.Issuer != cb.Issuer
			c.Expiry = !ca.NotAfter.Equal(cb.NotAfter)
			c.Key = ca.SPKI != cb.SPKI
			if !c.Issuer && !c.Expiry && !c.Key && ca.SHA256 == cb.SHA256 {
				continue
			}
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y CertChange) int {
		return cmp.Or(cmp.Compare(x.Role, y.Role), cmp.Compare(x.Host, y.Host), cmp.Compare(x.Address, y.Address))
	})
	return out
}

func tlsa(a, b *report.Document) []TLSAChange {
	records := func(d *report.Document) map[string][]string {
		out := map[string][]string{}
		for _, m := range d.MX {
			if m.DANE != nil {
				out[m.Host] = m.DANE.Records
			}
		}
		return out
	}
	ra, rb := records(a), records(b)
	hosts := map[string]bool{}
	for h := range ra {
		hosts[h] = true
	}
	for h := range rb {
		hosts[h] = true
	}
	var out []TLSAChange
	for h := range hosts {
		// A host that is new or gone is an MX set change; its records
		// are compared only while it is in both scans.
		if _, ok := ra[h]; !ok {
			continue
		}
		if _, ok := rb[h]; !ok {
			continue
		}
		added, removed := setDiff(ra[h], rb[h])
		if len(added) > 0 || len(removed) > 0 {
			out = append(out, TLSAChange{Host: h, Added: added, Removed: removed})
		}
	}
	slices.SortFunc(out, func(x, y TLSAChange) int { return cmp.Compare(x.Host, y.Host) })
	return out
}

// hostOf strips the port of "ip:port" (or "[ip]:port").
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
