package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/policyhost"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
)

// DomainRecords is what one hosted domain must publish, and whether DNS
// already says it.
type DomainRecords struct {
	Domain string `json:"domain"`
	Mode   string `json:"mode"`
	// ID is the id of the policy the server serves; empty while Pending.
	ID string `json:"id,omitempty"`
	// Pending says why there is no id yet (the server has not loaded this
	// configuration, or a follow_mx domain's MX set is unknown).
	Pending string         `json:"pending,omitempty"`
	Records []check.Record `json:"records"`
	// PublishedID is the id found in DNS (when checked).
	PublishedID string `json:"published_id,omitempty"`
	// Findings are what `mailtls check` says about the published _mta-sts
	// record (the same rule and IDs); Problems are what else DNS shows
	// that is wrong or stale; Unknown is what could not be checked
	// (temporary DNS failures: retry).
	Findings []finding.Finding `json:"findings,omitempty"`
	Problems []string          `json:"problems,omitempty"`
	Unknown  []string          `json:"unknown,omitempty"`
}

// OK reports whether the domain needs nothing more: nothing pending,
// stale or unknown, and no error or warning on the published record.
func (r *DomainRecords) OK() bool {
	if r.Pending != "" || len(r.Problems) > 0 || len(r.Unknown) > 0 {
		return false
	}
	return !slices.ContainsFunc(r.Findings, func(f finding.Finding) bool { return f.Severity >= finding.Warning })
}

// Records lists, for every domain the host configuration serves, the
// _mta-sts TXT record with the id the server serves, and the CNAME (to
// host.public_name) or A/AAAA records (host.public_addresses) of its policy
// host. It reads the server's state and never changes it: an id exists only
// once a server has loaded the configuration. With res, it also looks the
// records up and reports stale or missing ones. With st (the store, when
// the configuration sets store:, StoreForRecords) the ids and MX sets are
// the ones every host instance shares; otherwise those of host.storage.
func Records(ctx context.Context, h *config.Host, st store.HostPolicies, res Resolver) ([]*DomainRecords, error) {
	var lookup func(domain string) (id, hash string, ok bool, err error)
	var mx policyhost.MXSource
	if st != nil {
		lctx, cancel := context.WithTimeout(ctx, hostStateTimeout)
		ps, err := st.ListHostPolicies(lctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("reading the policy ids from the store: %w", err)
		}
		byDomain := make(map[string]store.HostPolicy, len(ps))
		for _, p := range ps {
			byDomain[p.Domain] = p
		}
		lookup = func(d string) (string, string, bool, error) {
			p, ok := byDomain[d]
			return p.PolicyID, p.BodyHash, ok && p.PolicyID != "", nil
		}
		mx = func(d string) ([]string, bool) {
			p := byDomain[d]
			return p.MXPatterns, len(p.MXPatterns) > 0
		}
	} else {
		ids, err := policyhost.OpenIDStore(filepath.Join(h.Storage, IDsFile))
		if err != nil {
			return nil, err
		}
		mxw, err := newMXWatcher(discardLogger(), nil, filepath.Join(h.Storage, FollowMXFile), time.Now, func(string) {})
		if err != nil {
			return nil, err
		}
		lookup, mx = ids.Lookup, mxw.Patterns
	}
	names := make([]string, 0, len(h.Domains))
	for d := range h.Domains {
		names = append(names, d)
	}
	sort.Strings(names)
	out := make([]*DomainRecords, len(names))
	for i, d := range names {
		dc := h.Domains[d]
		r := &DomainRecords{Domain: d, Mode: dc.Mode}
		out[i] = r
		pol, known := dc.ServedPolicy(d, mx)
		var id, hash string
		var ok bool
		if known {
			var err error
			if id, hash, ok, err = lookup(d); err != nil {
				return nil, err
			}
		}
		switch {
		case !known:
			r.Pending = "the server has not learnt this domain's MX set yet (follow_mx): start it, or check its DNS resolvers"
		case !ok || hash != policyhost.HashBody([]byte(pol.String())):
			r.Pending = "the server has not loaded this configuration yet: start or reload `mailtls serve`, then run this again"
		default:
			r.ID = id
			r.Records = append(r.Records, check.STSRecord(d, id))
		}
		r.Records = append(r.Records, check.HostRecords(d, h.PublicName, h.PublicAddresses)...)
	}
	if res != nil {
		var wg sync.WaitGroup
		sem := make(chan struct{}, lookupConcurrency)
		for _, r := range out {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				checkPublished(lctx, h, res, r)
			}()
		}
		wg.Wait()
	}
	return out, nil
}

// checkPublished compares DNS with what the domain must publish.
func checkPublished(ctx context.Context, h *config.Host, res Resolver, r *DomainRecords) {
	// The record is judged by check's rule, with its finding IDs (RFC
	// 8461 §3.1): what senders see is what `mailtls check` reports.
	txtName := "_mta-sts." + r.Domain
	a := res.Lookup(ctx, txtName, resolve.TypeTXT)
	rec, findings, undetermined, absent := check.STSRecordVerdict(r.Domain, a)
	switch {
	case undetermined:
		r.Unknown = append(r.Unknown, fmt.Sprintf("could not look up %s (%s): retry", txtName, a.Status))
	case absent:
		r.Problems = append(r.Problems, fmt.Sprintf("%s has no MTA-STS record: publish the one above", txtName))
		r.Findings = findings
	default:
		r.Findings = findings
		if rec != nil {
			r.PublishedID = rec.ID
			if r.ID != "" && rec.ID != r.ID {
				r.Problems = append(r.Problems, fmt.Sprintf("%s publishes id=%s but the server serves the policy with id=%s: senders that cached the old policy will not fetch the new one until you publish the TXT record above (RFC 8461 §3.1)", txtName, rec.ID, r.ID))
			}
		}
	}
	hostName := "mta-sts." + r.Domain
	if h.PublicName == "" && len(h.PublicAddresses) == 0 {
		return
	}
	var addrs []netip.Addr
	var chain []string
	for _, t := range []uint16{resolve.TypeA, resolve.TypeAAAA} {
		a := res.Lookup(ctx, hostName, t)
		if a.Status.Temporary() {
			r.Unknown = append(r.Unknown, fmt.Sprintf("could not look up %s %s (%s): retry", hostName, resolve.TypeString(t), a.Status))
			return
		}
		addrs = append(addrs, a.Addrs()...)
		for _, c := range a.CNAMEs {
			chain = append(chain, strings.TrimSuffix(strings.ToLower(c.Host), "."))
		}
	}
	if h.PublicName != "" {
		want := strings.TrimSuffix(strings.ToLower(h.PublicName), ".")
		if !slices.Contains(chain, want) {
			r.Problems = append(r.Problems, fmt.Sprintf("%s is not a CNAME to %s: publish the CNAME above (RFC 8461 §8.2)", hostName, want))
		}
		return
	}
	if len(addrs) == 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%s has no address: publish the records above", hostName))
		return
	}
	for _, ip := range addrs {
		if !slices.ContainsFunc(h.PublicAddresses, func(s string) bool { p, _ := netip.ParseAddr(s); return p.Unmap() == ip.Unmap() }) {
			r.Problems = append(r.Problems, fmt.Sprintf("%s has the address %s, which is not this server (host.public_addresses)", hostName, ip))
		}
	}
}

// SharedHostState reports whether the host role of c keeps its policy ids
// in the store, which `mailtls serve records` must then read.
func SharedHostState(c *config.Config) bool { return sharedHostState(c) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
