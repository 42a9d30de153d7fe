// Package resolver is the sending side of mailtls: for a next-hop domain
// it finds the TLS policy a sending MTA must apply, DANE first (RFC 7672,
// RFC 8461 §2) and then MTA-STS (RFC 8461), keeps MTA-STS policies in the
// cache RFC 8461 §5.1 describes, and answers Postfix over the socketmap
// protocol. The lookups reuse the scan core (resolve, fetch, mtasts,
// dane); the decisions are sendpolicy's; the cache is stscache.
//
// Cache rules (RFC 8461 §3.3, §5.1, spec-checklist §D):
//   - an unexpired policy applies whatever later refreshes find: TXT
//     gone, invalid or failing, fetch failed, policy invalid (STS-SND-4,
//     STS-FETCH-15, STS-POL-19);
//   - the TXT id is checked before refetching: the same id needs no fetch
//     (STS-SND-2); the expiry clock restarts only on a successful fetch
//     (STS-SND-1), so the background refresh refetches before expiry;
//   - a fetched policy replaces the cached one at once, mode none included
//     (STS-SND-3);
//   - a failed fetch of an id is not retried for five minutes
//     (STS-FETCH-14);
//   - "no record" and temporary failures are cached briefly (STS-SND-16,
//     STS-SND-17), so a domain without MTA-STS costs one DNS query per
//     NegativeTTL, not one per message;
//   - concurrent lookups of one domain share one discovery.
package resolver

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/stscache"
)

// DNS answers questions; *resolve.Client is the real one.
type DNS interface {
	Lookup(ctx context.Context, name string, qtype uint16) *resolve.Answer
}

// Fetcher gets a policy from one address; *fetch.Fetcher is the real one.
type Fetcher interface {
	Fetch(ctx context.Context, host string, ip netip.Addr) *fetch.Result
}

// Defaults of Options.
const (
	DefaultLookupTimeout    = 10 * time.Second // what a request waits for a discovery
	DefaultDiscoveryTimeout = time.Minute      // one discovery in the background (RFC 8461 §3.3 suggests one minute)
	DefaultCheckInterval    = 5 * time.Minute  // the TXT id of a cached policy is checked again after this
	DefaultNegativeTTL      = 10 * time.Minute // no record, invalid record
	DefaultTemporaryTTL     = time.Minute      // failed lookups
	DefaultFetchRetry       = 5 * time.Minute  // RFC 8461 §3.3, STS-FETCH-14
	DefaultRefreshInterval  = 24 * time.Hour   // RFC 8461 §3.3: "once per day"
	DefaultRefreshWorkers   = 8
	DANEMinTTL              = time.Minute
	DANEMaxTTL              = time.Hour
	DANETemporaryTTL        = 30 * time.Second
	maxMX                   = 16
	maxFetchAddrs           = 4
)

// Options configure a Resolver. DNS, Fetcher and Cache are required.
type Options struct {
	DNS     DNS
	Fetcher Fetcher
	// Dialer tells about connect-to rules (tests, --connect-to): a rule for
	// the policy host replaces its address lookup.
	Dialer *dial.Dialer
	Cache  *stscache.Cache
	Now    func() time.Time
	// Jitter returns a random duration in [0, d); nil uses math/rand.
	Jitter func(d time.Duration) time.Duration

	LookupTimeout    time.Duration
	DiscoveryTimeout time.Duration
	CheckInterval    time.Duration
	NegativeTTL      time.Duration
	TemporaryTTL     time.Duration
	FetchRetry       time.Duration
	RefreshInterval  time.Duration
	RefreshWorkers   int

	Metrics *Metrics
	Log     *slog.Logger
}

// Resolver finds the policies. It is safe for concurrent use.
type Resolver struct {
	o        Options
	sts      flight[*Discovery]
	dane     flight[daneResult]
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
	closed   atomic.Bool

	render rendered

	rootMu    sync.Mutex
	rootUntil time.Time
	rootOK    bool
}

// New makes a Resolver.
func New(o Options) *Resolver {
	o.LookupTimeout = cmp.Or(o.LookupTimeout, DefaultLookupTimeout)
	o.DiscoveryTimeout = cmp.Or(o.DiscoveryTimeout, DefaultDiscoveryTimeout)
	o.CheckInterval = cmp.Or(o.CheckInterval, DefaultCheckInterval)
	o.NegativeTTL = cmp.Or(o.NegativeTTL, DefaultNegativeTTL)
	o.TemporaryTTL = cmp.Or(o.TemporaryTTL, DefaultTemporaryTTL)
	o.FetchRetry = cmp.Or(o.FetchRetry, DefaultFetchRetry)
	o.RefreshInterval = cmp.Or(o.RefreshInterval, DefaultRefreshInterval)
	o.RefreshWorkers = cmp.Or(o.RefreshWorkers, DefaultRefreshWorkers)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Jitter == nil {
		o.Jitter = func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return rand.N(d)
		}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &Resolver{o: o}
	r.bgCtx, r.bgCancel = context.WithCancel(context.Background())
	return r
}

// Close stops the background work (discoveries and refreshes) and waits
// for it.
func (r *Resolver) Close() {
	r.closed.Store(true)
	r.bgCancel()
	r.bg.Wait()
}

// Cache returns the policy cache.
func (r *Resolver) Cache() *stscache.Cache { return r.o.Cache }

// Result is what a lookup found, with what an explanation needs.
type Result struct {
	Domain string `json:"domain"`
	// Cache says how the MTA-STS state was obtained: "hit" (fresh in the
	// cache), "refreshing" (a policy in force was served while its check
	// runs in the background), "miss" (looked up now) or "pending" (the
	// lookup did not finish in time; it goes on in the background).
	Cache     string                 `json:"cache"`
	Entry     *stscache.Entry        `json:"-"`
	Discovery *Discovery             `json:"discovery,omitempty"`
	STS       sendpolicy.STS         `json:"-"`
	DANE      sendpolicy.DANEVerdict `json:"dane"`
	DANECache string                 `json:"dane_cache"` // hit, miss, pending
	DANEProof *DANEEvidence          `json:"dane_evidence,omitempty"`
}

// Lookup finds the policy state of domain (an A-label name from
// sendpolicy.NextHop). It waits for DNS and HTTPS only when nothing
// usable is cached, and at most LookupTimeout.
func (r *Resolver) Lookup(ctx context.Context, domain string) *Result {
	now := r.o.Now()
	res := &Result{Domain: domain}
	e := r.o.Cache.Get(domain)
	if e == nil || e.DANE == nil || now.Unix() >= int64(e.DANEUntil) {
		r.daneAsync(domain) // beside the MTA-STS lookup, not after it
	}
	switch {
	case e != nil && now.Unix() < int64(e.NextCheck):
		res.Cache = "hit"
		r.o.Metrics.cache("hit")
	case e.Valid(now.Unix()):
		// RFC 8461 §5.1 step 1: a policy in force is applied; its check
		// runs in the background so that Postfix never waits for it.
		res.Cache = "refreshing"
		r.o.Metrics.cache("refresh")
		r.discoverAsync(domain, false)
	default:
		res.Cache = "miss"
		r.o.Metrics.cache("miss")
		d, ok := r.discoverWait(ctx, domain, false)
		res.Discovery = d
		if !ok {
			res.Cache = "pending"
		}
		e = r.o.Cache.Peek(domain)
	}
	res.Entry = e
	res.STS = stsState(e, now.Unix(), res.Discovery)
	res.DANE, res.DANECache, res.DANEProof = r.daneFor(ctx, domain, e, now)
	return res
}

// stsState is the MTA-STS side of the decision from the entry.
func stsState(e *stscache.Entry, now int64, d *Discovery) sendpolicy.STS {
	switch {
	case e.Valid(now):
		return sendpolicy.STS{Policy: e.Policy, Why: func() string {
			why := "cached policy id " + e.ID + " fetched " + time.Unix(int64(e.FetchedAt), 0).UTC().Format(time.RFC3339) + ", expires " + time.Unix(e.Expires(), 0).UTC().Format(time.RFC3339)
			if e.Outcome != stscache.OutcomePolicy && e.Outcome != stscache.OutcomeNone {
				why += "; kept although the last check found: " + e.Outcome.String() + " (" + e.Detail + ") (RFC 8461 §3.3)"
			}
			return why
		}}
	case e == nil && d == nil:
		return sendpolicy.STS{Temporary: true, Reason: "the MTA-STS lookup did not finish in time"}
	case e == nil:
		return sendpolicy.STS{Reason: "no MTA-STS state"}
	case e.Outcome == stscache.OutcomeTemporary:
		return sendpolicy.STS{Temporary: true, Reason: e.Detail}
	case e.Policy != nil:
		return sendpolicy.STS{Why: func() string {
			return "the cached policy expired at " + time.Unix(e.Expires(), 0).UTC().Format(time.RFC3339) + " and the last check found: " + e.Outcome.String() + " (" + e.Detail + ")"
		}}
	}
	return sendpolicy.STS{Why: func() string { return e.Outcome.String() + ": " + e.Detail }}
}

// discoverWait runs (or joins) the discovery of domain and waits for it
// at most LookupTimeout. ok is false when it did not finish in time; it
// goes on in the background so that the next message finds the policy.
func (r *Resolver) discoverWait(ctx context.Context, domain string, force bool) (*Discovery, bool) {
	c := r.discoverAsync(domain, force)
	if c == nil {
		return nil, false
	}
	t := time.NewTimer(r.o.LookupTimeout)
	defer t.Stop()
	select {
	case <-c.done:
		return c.val, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, false
}

// discoverAsync starts the discovery of domain unless one is running, and
// returns its call (nil after Close).
func (r *Resolver) discoverAsync(domain string, force bool) *call[*Discovery] {
	if r.closed.Load() {
		return nil
	}
	c, run := r.sts.start(domain)
	if !run {
		return c
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		var d *Discovery
		defer func() {
			if p := recover(); p != nil {
				r.o.Log.Error("resolver: discovery panic", "domain", domain, "panic", p)
				r.o.Metrics.panic()
				d = &Discovery{Domain: domain, Record: sendpolicy.RecordTemporary, RecordDetail: "internal error"}
				r.o.Cache.Update(domain, func(old *stscache.Entry) *stscache.Entry { return r.merge(old, d) })
			}
			r.sts.finish(domain, c, d)
		}()
		ctx, cancel := context.WithTimeout(r.bgCtx, r.o.DiscoveryTimeout)
		defer cancel()
		old := r.o.Cache.Peek(domain)
		d = r.discover(ctx, domain, old, force)
		r.o.Cache.Update(domain, func(old *stscache.Entry) *stscache.Entry { return r.merge(old, d) })
	}()
	return c
}

// Discovery is one MTA-STS discovery of a domain, as evidence.
type Discovery struct {
	Domain       string                 `json:"domain"`
	At           time.Time              `json:"at"`
	Forced       bool                   `json:"forced,omitempty"` // a proactive refresh: refetch even if the id is unchanged
	TXT          *resolve.Answer        `json:"txt"`
	Record       sendpolicy.RecordState `json:"record"`
	RecordID     string                 `json:"record_id,omitempty"`
	RecordDetail string                 `json:"record_detail"`
	// IDUnchanged: the cached policy has this id, so nothing was fetched
	// (RFC 8461 §3.3, STS-SND-2).
	IDUnchanged bool `json:"id_unchanged,omitempty"`
	// RetryLater: this id failed to fetch less than FetchRetry ago, so
	// nothing was fetched (RFC 8461 §3.3, STS-FETCH-14).
	RetryLater bool                    `json:"retry_later,omitempty"`
	Fetches    []FetchAttempt          `json:"fetches,omitempty"`
	Policy     *mtasts.Policy          `json:"policy,omitempty"`
	Failure    sendpolicy.FetchFailure `json:"failure,omitempty"`
	FailDetail string                  `json:"failure_detail,omitempty"`
	DurationMS float64                 `json:"duration_ms"`
}

// FetchAttempt is one HTTPS fetch of the policy.
type FetchAttempt struct {
	Address string                  `json:"address"`
	Failure sendpolicy.FetchFailure `json:"failure,omitempty"`
	Detail  string                  `json:"detail"`
	MS      float64                 `json:"ms"`
}

// discover looks the domain up: the TXT record, then (when needed) the
// policy over HTTPS from each address of the policy host until one gives a
// valid policy.
func (r *Resolver) discover(ctx context.Context, domain string, old *stscache.Entry, force bool) *Discovery {
	start := time.Now()
	now := r.o.Now()
	d := &Discovery{Domain: domain, At: now.UTC(), Forced: force}
	defer func() { d.DurationMS = float64(time.Since(start).Microseconds()) / 1000 }()
	d.TXT = r.o.DNS.Lookup(ctx, "_mta-sts."+domain, dns.TypeTXT)
	d.Record, d.RecordID, d.RecordDetail = sendpolicy.JudgeRecord(d.TXT)
	r.o.Metrics.discovery(d.Record)
	if d.Record != sendpolicy.RecordValid {
		return d
	}
	switch {
	case !force && old.Valid(now.Unix()) && old.ID == d.RecordID:
		d.IDUnchanged = true
		return d
	case old != nil && old.FailedID == d.RecordID && now.Unix() < int64(old.At)+int64(r.o.FetchRetry/time.Second):
		d.RetryLater = true
		d.FailDetail = "the fetch of this id failed less than " + r.o.FetchRetry.String() + " ago; not retried yet (RFC 8461 §3.3)"
		return d
	}
	d.Policy, d.Failure, d.FailDetail = r.fetchPolicy(ctx, domain, d)
	if d.Failure != sendpolicy.FetchOK {
		r.o.Metrics.fetchFailure(d.Failure)
		level := slog.LevelInfo
		if old.Valid(now.Unix()) && old.Policy.Mode != mtasts.ModeNone {
			level = slog.LevelWarn // RFC 8461 §3.3: alert on refresh failures unless the mode is none
		}
		r.o.Log.Log(ctx, level, "resolver: policy fetch failed", "domain", domain, "id", d.RecordID, "reason", string(d.Failure), "detail", d.FailDetail, "cached_policy", old.Valid(now.Unix()))
	}
	return d
}

// fetchPolicy fetches from the policy host's addresses in order, IPv4
// first, until one gives a valid policy.
func (r *Resolver) fetchPolicy(ctx context.Context, domain string, d *Discovery) (*mtasts.Policy, sendpolicy.FetchFailure, string) {
	host := "mta-sts." + domain
	var addrs []netip.Addr
	if _, ok := r.o.Dialer.HostOverride(host, 443); ok {
		addrs = []netip.Addr{{}}
	} else {
		var a, aaaa *resolve.Answer
		var wg sync.WaitGroup
		wg.Go(func() { a = r.o.DNS.Lookup(ctx, host, dns.TypeA) })
		wg.Go(func() { aaaa = r.o.DNS.Lookup(ctx, host, dns.TypeAAAA) })
		wg.Wait()
		addrs = append(a.Addrs(), aaaa.Addrs()...)
		if len(addrs) == 0 {
			if a.Status.Temporary() || aaaa.Status.Temporary() {
				return nil, sendpolicy.FetchDNS, "the address lookup of " + host + " failed"
			}
			return nil, sendpolicy.FetchNoAddress, host + " has no A or AAAA record"
		}
	}
	var (
		fail   sendpolicy.FetchFailure
		detail string
	)
	for i, ip := range addrs {
		if i == maxFetchAddrs || ctx.Err() != nil {
			break
		}
		res := r.o.Fetcher.Fetch(ctx, host, ip)
		p, f, why := sendpolicy.JudgeFetch(res)
		addr := res.Address
		if addr == "" {
			addr = res.Dialed
		}
		d.Fetches = append(d.Fetches, FetchAttempt{Address: addr, Failure: f, Detail: why, MS: res.Timings.Total})
		if f == sendpolicy.FetchOK {
			return p, f, why
		}
		fail, detail = f, why
	}
	return nil, fail, detail
}

// merge applies a discovery to the entry (RFC 8461 §3.3, §5.1; see the
// package comment).
func (r *Resolver) merge(old *stscache.Entry, d *Discovery) *stscache.Entry {
	now := d.At.Unix()
	e := &stscache.Entry{Domain: d.Domain}
	if old != nil {
		e = old.Clone()
	}
	e.At = stscache.Sec(now)
	ttl := func(d time.Duration) uint32 { return stscache.Sec(now + int64(d/time.Second)) }
	switch {
	case d.Record == sendpolicy.RecordTemporary:
		e.Outcome, e.Detail, e.NextCheck = stscache.OutcomeTemporary, d.RecordDetail, ttl(r.o.TemporaryTTL)
	case d.Record == sendpolicy.RecordAbsent:
		e.Outcome, e.Detail, e.NextCheck = stscache.OutcomeNoRecord, d.RecordDetail, ttl(r.o.NegativeTTL)
	case d.Record == sendpolicy.RecordInvalid:
		e.Outcome, e.Detail, e.NextCheck = stscache.OutcomeBadRecord, d.RecordDetail, ttl(r.o.NegativeTTL)
	case d.IDUnchanged:
		e.Outcome, e.Detail, e.CheckedAt, e.NextCheck = stscache.OutcomePolicy, "", stscache.Sec(now), ttl(r.o.CheckInterval)
	case d.RetryLater:
		e.NextCheck = stscache.Sec(int64(old.At) + int64(r.o.FetchRetry/time.Second))
		e.At = old.At
	case d.Policy != nil:
		// STS-SND-3: a fetched policy replaces the cached one, mode none too.
		e.ID, e.Policy, e.FetchedAt, e.CheckedAt = d.RecordID, d.Policy, stscache.Sec(now), stscache.Sec(now)
		// The detail of a fetched policy is its id and times: not stored.
		e.Outcome, e.Detail, e.FailedID = stscache.OutcomePolicy, "", ""
		e.NextCheck = ttl(r.o.CheckInterval)
		e.RefreshAt = r.refreshAt(e)
	default:
		// STS-FETCH-15, STS-POL-19: keep any unexpired policy.
		e.Outcome, e.Detail, e.FailedID = stscache.OutcomeFetchFailed, string(d.Failure)+": "+d.FailDetail, d.RecordID
		e.NextCheck = ttl(r.o.FetchRetry)
	}
	if e.Valid(now) && int64(e.RefreshAt) <= now {
		// A refresh that found no new policy is tried again later, not at
		// every tick.
		e.RefreshAt = ttl(r.o.FetchRetry + r.o.Jitter(r.o.FetchRetry))
	}
	if len(e.Detail) > 300 {
		e.Detail = e.Detail[:300]
	}
	return e
}

// refreshAt schedules the proactive refetch of a policy: after half its
// max_age or RefreshInterval, whichever is sooner, less up to a tenth of
// that at random, so that refreshes spread out and a hot domain is
// refetched long before it expires (RFC 8461 §3.3, §10.2; STS-SND-5).
func (r *Resolver) refreshAt(e *stscache.Entry) uint32 {
	life := time.Duration(e.Policy.MaxAge) * time.Second / 2
	life = min(life, r.o.RefreshInterval)
	life = max(life, time.Minute)
	return stscache.Sec(int64(e.FetchedAt) + int64((life-r.o.Jitter(life/10))/time.Second))
}

// Busy reports whether a discovery or DANE lookup of domain is running.
func (r *Resolver) Busy(domain string) bool {
	return r.sts.inFlight(domain) || r.dane.inFlight(domain)
}
