package store

import (
	"context"
	"time"
)

// HostPolicy is what the policy host (the host role of `mailtls serve`)
// keeps of one domain, shared by every host instance on the store: the id
// of the policy body it serves (RFC 8461 §3.1: the id changes exactly when
// the body does, STS-HOST-4) and, for a follow_mx domain, the last known
// MX set.
type HostPolicy struct {
	Domain string
	// BodyHash is the hex SHA-256 of the served body and PolicyID its id;
	// both "" until a body was served.
	BodyHash string
	PolicyID string
	// MXHosts and MXPatterns are the last known MX set and the mx
	// patterns made of it; nil while none is known.
	MXHosts    []string
	MXPatterns []string
	MXChecked  time.Time
	UpdatedAt  time.Time
}

// HostPolicies is the shared state of the policy host.
type HostPolicies interface {
	// AssignPolicyIDs returns, for each domain of hashes (domain → body
	// hash), the id of that body: the stored one when the stored hash is
	// the same, else newID(the previous id, "" for none), stored in its
	// place. Each change is a compare-and-set on the stored hash and id, so
	// that of callers seeing the same change at once (host instances
	// loading the same configuration) one id wins and every caller gets it.
	AssignPolicyIDs(ctx context.Context, hashes map[string]string, newID func(prev string) string) (map[string]string, error)
	// HostPolicy returns one domain's state (ErrNotFound when none).
	HostPolicy(ctx context.Context, domain string) (HostPolicy, error)
	// ListHostPolicies returns every domain's state, by domain.
	ListHostPolicies(ctx context.Context) ([]HostPolicy, error)
	// SetMXSet stores a domain's MX set and patterns, checked at checked.
	SetMXSet(ctx context.Context, domain string, hosts, patterns []string, checked time.Time) error
	// ReplacePolicyID sets the id of domain to id if the row still holds
	// hash and old (compare-and-set), and reports whether it did.
	ReplacePolicyID(ctx context.Context, domain, hash, old, id string) (bool, error)
	// ImportHostPolicy stores what p holds that the domain's row lacks:
	// the hash and id when the row has none, the MX set when the row has
	// none. It brings the files of a host that had no store (ids.json,
	// follow-mx.json) in without changing anything already shared, so it
	// may run at every start.
	ImportHostPolicy(ctx context.Context, p HostPolicy) error
}
