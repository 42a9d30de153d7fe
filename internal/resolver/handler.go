package resolver

import (
	"context"
	"strings"
	"time"

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
		r.o.Metrics.lookup(d.Kind, time.Since(start))
		return d.Reply(zone)
	}
}
