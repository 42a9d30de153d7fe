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

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/policyhost"
	"github.com/mailtls/mailtls/internal/rollout"
)

// RecordTTL is the TTL suggested for the records a hosted domain publishes:
// short, so that a new id reaches senders soon (RFC 8461 §3.1).
const RecordTTL = 300

// DomainRecords is what one hosted domain must publish, and whether DNS
// already says it.
type DomainRecords struct {
	Domain string `json:"domain"`
	Mode   string `json:"mode"`
	// ID is the id of the policy the server serves; empty while Pending.
	ID string `json:"id,omitempty"`
	// Pending says why there is no id yet (the server has not loaded this
	// configuration, or a follow_mx domain's MX set is unknown).
	Pending string           `json:"pending,omitempty"`
	Records []rollout.Record `json:"records"`
	// PublishedID is the id found in DNS (when checked).
	PublishedID string `json:"published_id,omitempty"`
	// Problems are what DNS shows that is wrong or stale; Unknown is what
	// could not be checked (temporary DNS failures: retry).
	Problems []string `json:"problems,omitempty"`
	Unknown  []string `json:"unknown,omitempty"`
}

// OK reports whether the domain needs nothing more.
func (r *DomainRecords) OK() bool {
	return r.Pending == "" && len(r.Problems) == 0 && len(r.Unknown) == 0
}

// Records lists, for every domain the host configuration serves, the
// _mta-sts TXT record with the id the server serves, and the CNAME (to
// host.public_name) or A/AAAA records (host.public_addresses) of its policy
// host. It reads the server's state and never changes it: an id exists only
// once a server has loaded the configuration. With res, it also looks the
// records up and reports stale or missing ones.
func Records(ctx context.Context, h *config.Host, res Resolver) ([]*DomainRecords, error) {
	ids, err := policyhost.OpenIDStore(filepath.Join(h.Storage, IDsFile))
	if err != nil {
		return nil, err
	}
	mxw, err := newMXWatcher(discardLogger(), nil, filepath.Join(h.Storage, FollowMXFile), time.Now, func(string) {})
	if err != nil {
		return nil, err
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
		pol := &mtasts.Policy{Version: "STSv1", Mode: mtasts.Mode(dc.Mode), MaxAge: dc.EffectiveMaxAge(), MX: dc.MX}
		known := true
		if dc.FollowMX {
			pol.MX, known = mxw.Patterns(d)
		}
		id, hash, ok, err := ids.Lookup(d)
		if err != nil {
			return nil, err
		}
		switch {
		case !known:
			r.Pending = "the server has not learnt this domain's MX set yet (follow_mx): start it, or check its DNS resolvers"
		case !ok || hash != policyhost.HashBody([]byte(pol.String())):
			r.Pending = "the server has not loaded this configuration yet: start or reload `mailtls serve`, then run this again"
		default:
			r.ID = id
			r.Records = append(r.Records, rollout.Record{Action: "publish", Name: "_mta-sts." + d, Type: "TXT", TTL: RecordTTL, Value: "v=STSv1; id=" + id})
		}
		r.Records = append(r.Records, hostRecords(h, d)...)
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

// hostRecords points mta-sts.<domain> at this server.
func hostRecords(h *config.Host, d string) []rollout.Record {
	name := "mta-sts." + d
	if h.PublicName != "" {
		return []rollout.Record{{Action: "publish", Name: name, Type: "CNAME", TTL: RecordTTL, Value: strings.TrimSuffix(h.PublicName, ".") + "."}}
	}
	var out []rollout.Record
	for _, a := range h.PublicAddresses {
		typ := "A"
		if ip, _ := netip.ParseAddr(a); ip.Is6() && !ip.Is4In6() {
			typ = "AAAA"
		}
		out = append(out, rollout.Record{Action: "publish", Name: name, Type: typ, TTL: RecordTTL, Value: a})
	}
	return out
}

// checkPublished compares DNS with what the domain must publish.
func checkPublished(ctx context.Context, h *config.Host, res Resolver, r *DomainRecords) {
	txtName := "_mta-sts." + r.Domain
	a := res.Lookup(ctx, txtName, dns.TypeTXT)
	switch {
	case a.Status.Temporary():
		r.Unknown = append(r.Unknown, fmt.Sprintf("could not look up %s (%s): retry", txtName, a.Status))
	case a.Status.Absent():
		r.Problems = append(r.Problems, fmt.Sprintf("%s has no TXT record: publish the one above", txtName))
	default:
		var found []string
		for _, rec := range a.Records {
			txt := strings.Join(rec.Text, "")
			if !mtasts.IsCandidate(txt) {
				continue
			}
			if pr, _ := mtasts.ParseRecord(txt); pr != nil {
				found = append(found, pr.ID)
			}
		}
		switch {
		case len(found) == 0:
			r.Problems = append(r.Problems, fmt.Sprintf("%s has no v=STSv1 record: publish the one above", txtName))
		case len(found) > 1:
			r.Problems = append(r.Problems, fmt.Sprintf("%s has %d v=STSv1 records; senders ignore them all (RFC 8461 §3.1): keep only the one above", txtName, len(found)))
		default:
			r.PublishedID = found[0]
			if r.ID != "" && found[0] != r.ID {
				r.Problems = append(r.Problems, fmt.Sprintf("%s publishes id=%s but the server serves the policy with id=%s: senders that cached the old policy will not fetch the new one until you publish the TXT record above (RFC 8461 §3.1)", txtName, found[0], r.ID))
			}
		}
	}
	hostName := "mta-sts." + r.Domain
	if h.PublicName == "" && len(h.PublicAddresses) == 0 {
		return
	}
	var addrs []netip.Addr
	var chain []string
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a := res.Lookup(ctx, hostName, t)
		if a.Status.Temporary() {
			r.Unknown = append(r.Unknown, fmt.Sprintf("could not look up %s %s (%s): retry", hostName, dns.TypeToString[t], a.Status))
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

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
