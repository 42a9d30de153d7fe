package resolver

import (
	"context"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/stscache"
)

// RefreshTick is how often the refresh loop looks for due policies.
const RefreshTick = 30 * time.Second

// Run refreshes cached policies before they expire (RFC 8461 §3.3, §10.2;
// STS-SND-5) until ctx ends: every RefreshTick it refetches, at most
// RefreshWorkers at a time, the policies whose jittered refresh time has
// come, whether or not their id changed, so that the expiry clock restarts
// on a successful fetch. A failed refresh keeps the policy and is retried
// after FetchRetry; it is logged as a warning unless the mode is none.
func (r *Resolver) Run(ctx context.Context) {
	t := time.NewTicker(RefreshTick)
	defer t.Stop()
	for {
		r.RefreshDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RefreshDue refreshes the policies that are due now and waits for them.
func (r *Resolver) RefreshDue(ctx context.Context) int {
	now := r.o.Now().Unix()
	sem := make(chan struct{}, r.o.RefreshWorkers)
	n := 0
	for _, e := range r.o.Cache.Entries() {
		if !e.Valid(now) || r.sts.inFlight(e.Domain) {
			continue
		}
		if e.RefreshAt == 0 {
			// Loaded from the file: schedule it, spreading overdue ones
			// over the next ten minutes rather than all at once.
			at := r.refreshAt(e)
			if int64(at) <= now {
				at = stscache.Sec(now + int64(r.o.Jitter(10*time.Minute)/time.Second))
			}
			r.o.Cache.Update(e.Domain, func(old *stscache.Entry) *stscache.Entry {
				if old == nil || old.RefreshAt != 0 {
					return nil
				}
				c := old.Clone()
				c.RefreshAt = at
				return c
			})
			continue
		}
		if int64(e.RefreshAt) > now {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return n
		}
		n++
		domain, mode := e.Domain, e.Policy.Mode
		c := r.discoverAsync(domain, true)
		if c == nil {
			<-sem
			return n
		}
		go func() {
			defer func() { <-sem }()
			<-c.done
			ok := c.val != nil && c.val.Policy != nil
			r.o.Metrics.refresh(ok)
			if !ok && mode != mtasts.ModeNone && c.val != nil {
				r.o.Log.Warn("resolver: proactive refresh failed; the cached policy stays in force until it expires",
					"domain", domain, "record", string(c.val.Record), "reason", string(c.val.Failure), "detail", c.val.FailDetail)
			}
		}()
	}
	for range cap(sem) { // wait for the refreshes started
		sem <- struct{}{}
	}
	return n
}
