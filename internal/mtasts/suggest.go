package mtasts

import (
	"slices"
	"strings"

	"github.com/mailtls/mailtls/internal/domain"
)

// providerParent lists the MX host families whose tenant hosts share one
// provider parent domain: a one-label wildcard there covers every tenant
// host and survives the provider renaming them.
var providerParents = []string{
	"mail.protection.outlook.com", // Microsoft 365: <tenant>.mail.protection.outlook.com
	"olc.protection.outlook.com",  // Outlook.com
	"mx.cloudflare.net",           // Cloudflare Email Routing: routeN.mx.cloudflare.net
}

// SuggestPatterns builds mx patterns for a set of MX hosts: each host as itself,
// except hosts of a provider family that are listed as the family's
// one-label wildcard (Microsoft 365's *.mail.protection.outlook.com, and
// Microsoft's DNSSEC hosts <tenant>.<x>-v1.mx.microsoft, which need
// "*.<x>-v1.mx.microsoft": "*.mx.microsoft" never matches them, RFC 8461
// §4.1). A host that is not a valid pattern (an underscore label) is covered
// by a wildcard on its parent.
func SuggestPatterns(hosts []string) []string {
	var out []string
	add := func(p string) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, h := range hosts {
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		_, parent, _ := strings.Cut(h, ".")
		switch {
		case slices.Contains(providerParents, parent):
			add("*." + parent)
		case strings.HasSuffix(parent, ".mx.microsoft") && strings.Count(parent, ".") == 2:
			add("*." + parent)
		case domain.CheckHostname(h) != nil && parent != "":
			add("*." + parent)
		default:
			add(h)
		}
	}
	return out
}
