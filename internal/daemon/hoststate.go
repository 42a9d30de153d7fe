package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/policyhost"
	"github.com/mailtls/mailtls/internal/store"
)

// sharedHostState reports whether the host role keeps its policy ids and
// the MX sets of follow_mx domains in the store (store: is set), where
// every host instance on that store shares them (docs/scaling.md), rather
// than in host.storage (ids.json, follow-mx.json). It depends on the
// configuration file alone, so that `mailtls serve records` reads where
// the server writes.
func sharedHostState(c *config.Config) bool { return c.Store != "" && c.Host != nil }

// hostStateTimeout bounds each read or write of the shared host state.
const hostStateTimeout = 30 * time.Second

// storeIDs assigns the policy ids in the store: a compare-and-set per
// changed body, so that instances loading the same change at once agree on
// one id (RFC 8461 §3.1: the id changes exactly when the body does).
type storeIDs struct {
	ctx context.Context
	st  store.HostPolicies
}

func (s storeIDs) Assign(bodies map[string][]byte, now time.Time) (map[string]string, error) {
	hashes := make(map[string]string, len(bodies))
	for d, b := range bodies {
		hashes[d] = policyhost.HashBody(b)
	}
	ctx, cancel := context.WithTimeout(s.ctx, hostStateTimeout)
	defer cancel()
	ids, err := s.st.AssignPolicyIDs(ctx, hashes, func(prev string) string { return mtasts.NewID(now, prev) })
	if err != nil {
		return nil, fmt.Errorf("policy ids: %w", err)
	}
	return ids, nil
}

// importHostFiles brings the ids and MX sets an instance kept in its
// host.storage folder before it had a store into the store, so that the
// ids already published in DNS stay. Only what the store lacks is taken
// (store.HostPolicies.ImportHostPolicy), so it runs at every start; the
// files are left as they are.
func importHostFiles(ctx context.Context, log *slog.Logger, st store.HostPolicies, storage string) error {
	ids, err := policyhost.OpenIDStore(filepath.Join(storage, IDsFile))
	if err != nil {
		return err
	}
	entries, err := ids.Entries()
	if err != nil {
		return err
	}
	sets := map[string]mxState{}
	path := filepath.Join(storage, FollowMXFile)
	switch data, err := os.ReadFile(path); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("follow_mx: %w", err)
	default:
		if err := json.Unmarshal(data, &sets); err != nil {
			// Only a cache: looked up again.
			log.Warn("follow_mx: the saved MX sets are damaged; not importing them", "file", path, "error", err)
			sets = map[string]mxState{}
		}
	}
	domains := slices.Sorted(maps.Keys(entries))
	for d := range sets {
		if _, ok := entries[d]; !ok {
			domains = append(domains, d)
		}
	}
	for _, d := range domains {
		p := store.HostPolicy{Domain: d, BodyHash: entries[d].Hash, PolicyID: entries[d].ID}
		if s, ok := sets[d]; ok && len(s.Patterns) > 0 {
			p.MXHosts, p.MXPatterns, p.MXChecked = s.Hosts, s.Patterns, s.Checked
		}
		if p.PolicyID != "" && !mtasts.ValidID(p.PolicyID) {
			p.BodyHash, p.PolicyID = "", ""
		}
		if err := importOne(ctx, st, p); err != nil {
			return fmt.Errorf("importing the host state of %s into the store: %w", d, err)
		}
	}
	if len(domains) > 0 {
		log.Info("host: the policy ids and MX sets of host.storage are in the store (what it lacked was taken from the files)", "domains", len(domains))
	}
	return nil
}

// importOne imports p. When the store holds another id for the same body,
// made later than the file's (instances starting together: one without
// this file made an id before this one imported it), the file's id wins:
// it is the one published in DNS. Which id is kept is so decided by when
// the ids were made, not by which instance started first. Only the
// `_mta-sts` record carries an id (RFC 8461 §3.1); the policy body served
// is the same, so no instance serves anything different meanwhile.
func importOne(ctx context.Context, st store.HostPolicies, p store.HostPolicy) error {
	ctx, cancel := context.WithTimeout(ctx, hostStateTimeout)
	defer cancel()
	if err := st.ImportHostPolicy(ctx, p); err != nil || p.PolicyID == "" {
		return err
	}
	cur, err := st.HostPolicy(ctx, p.Domain)
	if err != nil {
		return err
	}
	if cur.BodyHash == p.BodyHash && cur.PolicyID != p.PolicyID && madeBefore(p.PolicyID, cur.PolicyID) {
		_, err = st.ReplacePolicyID(ctx, p.Domain, cur.BodyHash, cur.PolicyID, p.PolicyID)
	}
	return err
}

// madeBefore reports whether id a was made before id b, both made by
// mtasts.NewID (UTC YYYYMMDDhhmmss, then a counter within the second);
// false when either is not of that form.
func madeBefore(a, b string) bool {
	at, an, aok := splitID(a)
	bt, bn, bok := splitID(b)
	if !aok || !bok {
		return false
	}
	if at != bt {
		return at < bt
	}
	return len(an) < len(bn) || (len(an) == len(bn) && an < bn)
}

func splitID(id string) (stamp, counter string, ok bool) {
	if len(id) < 14 || strings.Trim(id, "0123456789") != "" {
		return "", "", false
	}
	return id[:14], id[14:], true
}
