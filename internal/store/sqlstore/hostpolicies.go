package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

const hostPolicyCols = "domain, body_hash, policy_id, mx_hosts, mx_patterns, mx_checked_at, updated_at"

// casAttempts bounds the compare-and-set loop of one domain's id; each
// failed attempt means another instance changed the row in between.
const casAttempts = 20

// AssignPolicyIDs implements store.HostPolicies. Unchanged domains cost
// one read of the table in all; each changed one a compare-and-set.
func (db *DB) AssignPolicyIDs(ctx context.Context, hashes map[string]string, newID func(prev string) string) (map[string]string, error) {
	type cur struct{ hash, id string }
	stored := map[string]cur{}
	rows, err := db.w.QueryContext(ctx, `SELECT domain, body_hash, policy_id FROM host_policies`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: host policies: %w", err)
	}
	if _, err := collect(rows, func(row interface{ Scan(...any) error }) (struct{}, error) {
		var d string
		var c cur
		err := row.Scan(&d, &c.hash, &c.id)
		stored[d] = c
		return struct{}{}, err
	}); err != nil {
		return nil, fmt.Errorf("sqlstore: host policies: %w", err)
	}
	out := make(map[string]string, len(hashes))
	for _, d := range slices.Sorted(maps.Keys(hashes)) {
		hash := hashes[d]
		c, ok := stored[d]
		for n := 0; ; n++ {
			if ok && c.hash == hash && c.id != "" {
				out[d] = c.id
				break
			}
			if n == casAttempts {
				return nil, fmt.Errorf("sqlstore: the policy id of %s changed %d times while it was being set", d, n)
			}
			id := newID(c.id)
			var res sql.Result
			if ok {
				// Compare-and-set: only over the row as it was read.
				res, err = db.w.ExecContext(ctx, `UPDATE host_policies SET body_hash = $2, policy_id = $3, updated_at = $4
					WHERE domain = $1 AND body_hash = $5 AND policy_id = $6`, d, hash, id, tv(db.clock()), c.hash, c.id)
			} else {
				res, err = db.w.ExecContext(ctx, `INSERT INTO host_policies (domain, body_hash, policy_id, updated_at)
					VALUES ($1, $2, $3, $4) ON CONFLICT (domain) DO NOTHING`, d, hash, id, tv(db.clock()))
			}
			switch err := affected(res, err, errLost); {
			case err == nil:
				c, ok = cur{hash, id}, true
				continue // and return it
			case !errors.Is(err, errLost):
				return nil, fmt.Errorf("sqlstore: setting the policy id of %s: %w", d, err)
			}
			// Another instance changed the row first: take what it stored.
			err = db.w.QueryRowContext(ctx, `SELECT body_hash, policy_id FROM host_policies WHERE domain = $1`, d).Scan(&c.hash, &c.id)
			if ok = err == nil; err != nil && !errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("sqlstore: host policy %s: %w", d, err)
			}
		}
	}
	return out, nil
}

var errLost = errors.New("lost the compare-and-set")

func scanHostPolicy(row interface{ Scan(...any) error }) (store.HostPolicy, error) {
	var p store.HostPolicy
	var hosts, patterns sql.NullString
	err := row.Scan(&p.Domain, &p.BodyHash, &p.PolicyID, &hosts, &patterns, at(&p.MXChecked), at(&p.UpdatedAt))
	p.MXHosts, p.MXPatterns = words(hosts), words(patterns)
	return p, err
}

// words reads a space-separated list (NULL: nil; "": empty, not nil).
func words(s sql.NullString) []string {
	if !s.Valid {
		return nil
	}
	return append([]string{}, strings.Fields(s.String)...)
}

// joinWords stores a list (nil: NULL).
func joinWords(l []string) any {
	if l == nil {
		return nil
	}
	return strings.Join(l, " ")
}

// HostPolicy implements store.HostPolicies.
func (db *DB) HostPolicy(ctx context.Context, domain string) (store.HostPolicy, error) {
	p, err := scanHostPolicy(db.w.QueryRowContext(ctx, `SELECT `+hostPolicyCols+` FROM host_policies WHERE domain = $1`, domain))
	return p, db.wrap(err)
}

// ListHostPolicies implements store.HostPolicies.
func (db *DB) ListHostPolicies(ctx context.Context) ([]store.HostPolicy, error) {
	rows, err := db.w.QueryContext(ctx, `SELECT `+hostPolicyCols+` FROM host_policies ORDER BY domain`)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanHostPolicy)
}

// SetMXSet implements store.HostPolicies.
func (db *DB) SetMXSet(ctx context.Context, domain string, hosts, patterns []string, checked time.Time) error {
	if hosts == nil {
		hosts = []string{}
	}
	if patterns == nil {
		patterns = []string{}
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO host_policies (domain, mx_hosts, mx_patterns, mx_checked_at, updated_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (domain) DO UPDATE SET mx_hosts = excluded.mx_hosts,
			mx_patterns = excluded.mx_patterns, mx_checked_at = excluded.mx_checked_at, updated_at = excluded.updated_at`,
		domain, joinWords(hosts), joinWords(patterns), tv(checked), tv(db.clock()))
	return db.wrap(err)
}

// ImportHostPolicy implements store.HostPolicies.
func (db *DB) ImportHostPolicy(ctx context.Context, p store.HostPolicy) error {
	if p.BodyHash == "" || p.PolicyID == "" {
		p.BodyHash, p.PolicyID = "", ""
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO host_policies (`+hostPolicyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (domain) DO UPDATE SET
			body_hash = CASE WHEN host_policies.policy_id = '' THEN excluded.body_hash ELSE host_policies.body_hash END,
			policy_id = CASE WHEN host_policies.policy_id = '' THEN excluded.policy_id ELSE host_policies.policy_id END,
			mx_hosts = COALESCE(host_policies.mx_hosts, excluded.mx_hosts),
			mx_checked_at = CASE WHEN host_policies.mx_patterns IS NULL THEN excluded.mx_checked_at ELSE host_policies.mx_checked_at END,
			mx_patterns = COALESCE(host_policies.mx_patterns, excluded.mx_patterns)`,
		p.Domain, p.BodyHash, p.PolicyID, joinWords(p.MXHosts), joinWords(p.MXPatterns), tv(p.MXChecked), tv(db.clock()))
	return db.wrap(err)
}

// ReplacePolicyID implements store.HostPolicies.
func (db *DB) ReplacePolicyID(ctx context.Context, domain, hash, old, id string) (bool, error) {
	res, err := db.w.ExecContext(ctx, `UPDATE host_policies SET policy_id = $4, updated_at = $5
		WHERE domain = $1 AND body_hash = $2 AND policy_id = $3`, domain, hash, old, id, tv(db.clock()))
	switch err := affected(res, err, errLost); {
	case errors.Is(err, errLost):
		return false, nil
	case err != nil:
		return false, db.wrap(err)
	}
	return true, nil
}
