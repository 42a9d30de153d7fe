package resolver

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"

	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/socketmap"
)

// Zones map socketmap names to zone settings. A name not listed uses
// Default; the name "QUERYwithTLSRPT" (any case) — postfix-tlspol's way of
// asking for the Postfix 3.10 TLSRPT attributes — uses Default with TLSRPT
// on unless it is listed.
type Zones struct {
	Default sendpolicy.Zone
	Named   map[string]sendpolicy.Zone
}

// For returns the zone of a socketmap name.
func (z Zones) For(name string) sendpolicy.Zone {
	if zone, ok := z.Named[name]; ok {
		return zone
	}
	if strings.EqualFold(name, "QUERYwithTLSRPT") {
		zone := z.Default
		zone.TLSRPT = true
		return zone
	}
	return z.Default
}

// Decide looks key up and decides for zone.
func (r *Resolver) Decide(ctx context.Context, key string, zone sendpolicy.Zone) (sendpolicy.Decision, *Result) {
	domain, why, ok := sendpolicy.NextHop(key)
	if !ok {
		return sendpolicy.Invalid(key, why), nil
	}
	res := r.Lookup(ctx, domain)
	return sendpolicy.Decide(domain, res.DANE, res.STS, zone), res
}

// Handler answers socketmap requests.
func (r *Resolver) Handler(zones Zones) socketmap.Handler {
	return func(ctx context.Context, req socketmap.Request) socketmap.Reply {
		start := time.Now()
		zone := zones.For(req.Name)
		d, _ := r.Decide(ctx, req.Key, zone)
		var rep socketmap.Reply
		if d.Kind == sendpolicy.KindSecure {
			rep = socketmap.Reply{Status: socketmap.OK, Data: r.secureValue(d, zone)}
		} else {
			rep = d.Reply(zone)
		}
		r.o.Metrics.lookup(d.Kind, time.Since(start))
		return rep
	}
}

// rendered memoizes secure reply values: cached policies are immutable, so
// one policy in one zone always renders the same; a busy domain is
// rendered once, not per message. The memo is dropped whole when it grows
// past maxRendered.
type rendered struct {
	mu sync.RWMutex
	m  map[renderKey]string
}

type renderKey struct {
	p      *mtasts.Policy
	domain string
	zone   sendpolicy.Zone
}

const maxRendered = 1 << 16

func (r *Resolver) secureValue(d sendpolicy.Decision, z sendpolicy.Zone) string {
	k := renderKey{d.Policy, d.Domain, z}
	r.render.mu.RLock()
	v, ok := r.render.m[k]
	r.render.mu.RUnlock()
	if ok {
		return v
	}
	v = sendpolicy.SecureValue(d.Domain, d.Policy, z)
	r.render.mu.Lock()
	if len(r.render.m) >= maxRendered || r.render.m == nil {
		r.render.m = map[renderKey]string{}
	}
	r.render.m[k] = v
	r.render.mu.Unlock()
	return v
}
