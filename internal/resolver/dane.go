package resolver

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/stscache"
)

// DANEEvidence is the DNS evidence behind a DANE verdict.
type DANEEvidence struct {
	Root  *resolve.Answer      `json:"root_soa,omitempty"`
	Input sendpolicy.DANEInput `json:"input"`
}

type daneResult struct {
	verdict sendpolicy.DANEVerdict
	proof   *DANEEvidence
}

// daneFor returns the DANE verdict of domain: the cached one while it is
// fresh (refreshed in the background when it nears its end), otherwise a
// new one, waited for at most LookupTimeout. A lookup that does not finish
// in time is a temporary verdict: DANE may apply, so nothing else may
// decide (RFC 7672 §2.2).
func (r *Resolver) daneFor(ctx context.Context, domain string, e *stscache.Entry, now time.Time) (sendpolicy.DANEVerdict, string, *DANEEvidence) {
	if e != nil && e.DANE != nil && now.Unix() < int64(e.DANEUntil) {
		if int64(e.DANEUntil)-now.Unix() < int64(DANEMinTTL/time.Second)/2 {
			r.daneAsync(domain) // refresh a hot domain before its verdict ends
		}
		return *e.DANE, "hit", nil
	}
	c := r.daneAsync(domain)
	if c == nil {
		return sendpolicy.DANEVerdict{State: sendpolicy.DANETemporary, Reason: "shutting down"}, "pending", nil
	}
	t := time.NewTimer(r.o.LookupTimeout)
	defer t.Stop()
	select {
	case <-c.done:
		return c.val.verdict, "miss", c.val.proof
	case <-t.C:
	case <-ctx.Done():
	}
	return sendpolicy.DANEVerdict{State: sendpolicy.DANETemporary, Reason: "the DANE lookups did not finish in time"}, "pending", nil
}

func (r *Resolver) daneAsync(domain string) *call[daneResult] {
	if r.closed.Load() {
		return nil
	}
	c, run := r.dane.start(domain)
	if !run {
		return c
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		var res daneResult
		defer func() {
			if p := recover(); p != nil {
				r.o.Log.Error("resolver: DANE lookup panic", "domain", domain, "panic", p)
				r.o.Metrics.panic()
				res = daneResult{verdict: sendpolicy.DANEVerdict{State: sendpolicy.DANETemporary, Reason: "internal error"}}
			}
			r.dane.finish(domain, c, res)
		}()
		ctx, cancel := context.WithTimeout(r.bgCtx, r.o.DiscoveryTimeout)
		defer cancel()
		in, proof, ttl := r.gatherDANE(ctx, domain)
		res = daneResult{verdict: sendpolicy.JudgeDANE(in), proof: proof}
		switch res.verdict.State {
		case sendpolicy.DANETemporary:
			ttl = DANETemporaryTTL
		case sendpolicy.DANENotValidating:
			ttl = 5 * time.Minute
		}
		until := stscache.Sec(r.o.Now().Add(ttl).Unix())
		v := internVerdict(res.verdict)
		r.o.Cache.Update(domain, func(old *stscache.Entry) *stscache.Entry {
			e := &stscache.Entry{Domain: domain}
			if old != nil {
				e = old.Clone()
			}
			e.DANE, e.DANEUntil = v, until
			return e
		})
	}()
	return c
}

// validating reports whether the resolver validates DNSSEC: it is trusted
// (resolve's AD rules: loopback or configured) and sets AD on the signed
// root (RFC 4035 §3.2.3), as check does. The answer is kept 5 minutes.
func (r *Resolver) validating(ctx context.Context) (bool, *resolve.Answer) {
	r.rootMu.Lock()
	if time.Now().Before(r.rootUntil) {
		ok := r.rootOK
		r.rootMu.Unlock()
		return ok, nil
	}
	r.rootMu.Unlock()
	a := r.o.DNS.Lookup(ctx, ".", dns.TypeSOA)
	ok := a.Authenticated
	r.rootMu.Lock()
	r.rootOK = ok
	r.rootUntil = time.Now().Add(5 * time.Minute)
	if a.Status.Temporary() {
		r.rootUntil = time.Now().Add(10 * time.Second)
	}
	r.rootMu.Unlock()
	return ok, a
}

// gatherDANE makes the DNS lookups of RFC 7672 §2.2: MX, then for each MX
// host (or the domain as implicit MX) A and AAAA, then TLSA when the
// addresses are signed. It returns the evidence and its smallest TTL,
// bounded by DANEMinTTL and DANEMaxTTL.
func (r *Resolver) gatherDANE(ctx context.Context, domain string) (sendpolicy.DANEInput, *DANEEvidence, time.Duration) {
	valid, root := r.validating(ctx)
	in := sendpolicy.DANEInput{Validating: valid}
	proof := &DANEEvidence{Root: root}
	ttl := DANEMaxTTL
	note := func(a *resolve.Answer) {
		if a != nil && a.Status == resolve.StatusOK {
			if t := time.Duration(a.MinTTL()) * time.Second; t < ttl {
				ttl = t
			}
		}
	}
	defer func() { proof.Input = in }()
	if !valid {
		return in, proof, ttl
	}
	in.MX = r.o.DNS.Lookup(ctx, domain, dns.TypeMX)
	note(in.MX)
	mx := in.MX
	if mx.Status.Temporary() || !mx.Authenticated {
		return in, proof, max(ttl, DANEMinTTL)
	}
	var hosts []sendpolicy.DANEHost
	switch mx.Status {
	case resolve.StatusOK:
		list := mx.MX()
		slices.SortStableFunc(list, func(a, b resolve.MX) int { return int(a.Preference) - int(b.Preference) })
		seen := map[string]bool{}
		for _, m := range list {
			h := strings.ToLower(m.Host)
			if h == "." || h == "" || seen[h] || len(hosts) == maxMX {
				continue
			}
			seen[h] = true
			hosts = append(hosts, sendpolicy.DANEHost{Host: h})
		}
	case resolve.StatusNoData:
		hosts = []sendpolicy.DANEHost{{Host: domain, Implicit: true}} // RFC 7672 §2.2.2
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for i := range hosts {
		h := &hosts[i]
		wg.Go(func() {
			var aw sync.WaitGroup
			aw.Go(func() { h.A = r.o.DNS.Lookup(ctx, h.Host, dns.TypeA) })
			aw.Go(func() { h.AAAA = r.o.DNS.Lookup(ctx, h.Host, dns.TypeAAAA) })
			aw.Wait()
			if secureAddrs(h.A) || secureAddrs(h.AAAA) {
				h.TLSA = r.tlsa(ctx, h)
			}
			mu.Lock()
			note(h.A)
			note(h.AAAA)
			note(h.TLSA)
			mu.Unlock()
		})
	}
	wg.Wait()
	in.Hosts = hosts
	return in, proof, max(ttl, DANEMinTTL)
}

func secureAddrs(a *resolve.Answer) bool {
	return a != nil && a.Status == resolve.StatusOK && a.Authenticated && len(a.Addrs()) > 0
}

// tlsa looks up the TLSA records of a host with secure addresses (RFC 7672
// §2.2.2): when the host is an alias whose expansion is secure, the
// expanded name first, and the original name when the expanded one has
// none.
func (r *Resolver) tlsa(ctx context.Context, h *sendpolicy.DANEHost) *resolve.Answer {
	for _, a := range []*resolve.Answer{h.A, h.AAAA} {
		if secureAddrs(a) && len(a.CNAMEs) > 0 {
			x := r.o.DNS.Lookup(ctx, "_25._tcp."+a.Target(), dns.TypeTLSA)
			if x.Status == resolve.StatusOK || x.Status.Temporary() {
				return x
			}
			break
		}
	}
	return r.o.DNS.Lookup(ctx, "_25._tcp."+h.Host, dns.TypeTLSA)
}

// verdicts holds the DANE verdicts without hosts (the common "not signed"
// and "not validating" ones), shared by every cache entry that has them.
var verdicts sync.Map // state + "\x00" + reason → *DANEVerdict

func internVerdict(v sendpolicy.DANEVerdict) *sendpolicy.DANEVerdict {
	if len(v.Hosts) > 0 {
		return &v
	}
	p, _ := verdicts.LoadOrStore(string(v.State)+"\x00"+v.Reason, &v)
	return p.(*sendpolicy.DANEVerdict)
}
