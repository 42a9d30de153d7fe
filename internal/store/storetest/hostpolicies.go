package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

// testHostPolicies: the policy host's ids change exactly when a domain's
// body does (RFC 8461 §3.1, STS-HOST-4), MX sets round-trip, and an import
// fills only what the shared row lacks.
func testHostPolicies(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	made := 0
	newID := func(prev string) string {
		made++
		return fmt.Sprintf("id%d", made)
	}
	if _, err := s.HostPolicy(ctx(t), "a.example"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("HostPolicy of an unknown domain: %v", err)
	}
	ids := must[map[string]string](t)(s.AssignPolicyIDs(ctx(t), map[string]string{"a.example": "h1", "b.example": "h2"}, newID))
	if len(ids) != 2 || ids["a.example"] == "" || ids["b.example"] == "" || ids["a.example"] == ids["b.example"] {
		t.Fatalf("first ids = %v", ids)
	}
	// The same bodies keep their ids; a changed body gets a new one, made
	// from the previous.
	var prevSeen []string
	again := must[map[string]string](t)(s.AssignPolicyIDs(ctx(t), map[string]string{"a.example": "h1", "b.example": "h3"},
		func(prev string) string { prevSeen = append(prevSeen, prev); return "new" }))
	if again["a.example"] != ids["a.example"] || again["b.example"] != "new" || !slices.Equal(prevSeen, []string{ids["b.example"]}) {
		t.Fatalf("ids after b changed = %v (previous ids given: %v)", again, prevSeen)
	}
	c.Advance(time.Hour)
	p := must[store.HostPolicy](t)(s.HostPolicy(ctx(t), "b.example"))
	if p.BodyHash != "h3" || p.PolicyID != "new" || p.MXHosts != nil || p.MXPatterns != nil || !p.MXChecked.IsZero() {
		t.Fatalf("b.example = %+v", p)
	}
	sameTime(t, "UpdatedAt", p.UpdatedAt, start)

	// MX sets.
	checked := start.Add(time.Minute)
	check(t, s.SetMXSet(ctx(t), "mx.example", []string{"mx1.mx.example", "mx2.mx.example"}, []string{"*.mx.example"}, checked))
	check(t, s.SetMXSet(ctx(t), "b.example", []string{"b.example"}, []string{"b.example"}, checked))
	p = must[store.HostPolicy](t)(s.HostPolicy(ctx(t), "mx.example"))
	if !slices.Equal(p.MXHosts, []string{"mx1.mx.example", "mx2.mx.example"}) || !slices.Equal(p.MXPatterns, []string{"*.mx.example"}) || p.PolicyID != "" {
		t.Fatalf("mx.example = %+v", p)
	}
	sameTime(t, "MXChecked", p.MXChecked, checked)
	if p = must[store.HostPolicy](t)(s.HostPolicy(ctx(t), "b.example")); p.PolicyID != "new" || !slices.Equal(p.MXHosts, []string{"b.example"}) {
		t.Fatalf("b.example after its MX set = %+v", p)
	}

	// Import: fills what is missing, never replaces what is shared.
	check(t, s.ImportHostPolicy(ctx(t), store.HostPolicy{Domain: "b.example", BodyHash: "old", PolicyID: "old", MXHosts: []string{"x"}, MXPatterns: []string{"x"}}))
	check(t, s.ImportHostPolicy(ctx(t), store.HostPolicy{Domain: "mx.example", BodyHash: "hm", PolicyID: "published", MXHosts: []string{"x"}, MXPatterns: []string{"x"}}))
	check(t, s.ImportHostPolicy(ctx(t), store.HostPolicy{Domain: "c.example", BodyHash: "hc", PolicyID: "fromfile", MXHosts: []string{"mx.c.example"}, MXPatterns: []string{"mx.c.example"}, MXChecked: checked}))
	all := must[[]store.HostPolicy](t)(s.ListHostPolicies(ctx(t)))
	var got []string
	for _, p := range all {
		got = append(got, fmt.Sprintf("%s %s %s %v %v", p.Domain, p.BodyHash, p.PolicyID, p.MXHosts, p.MXPatterns))
	}
	want := []string{
		"a.example h1 " + ids["a.example"] + " [] []",
		"b.example h3 new [b.example] [b.example]",
		"c.example hc fromfile [mx.c.example] [mx.c.example]",
		"mx.example hm published [mx1.mx.example mx2.mx.example] [*.mx.example]",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after the imports:\n%q\nwant\n%q", got, want)
	}
	// Replacing an id is a compare-and-set too.
	if ok := must[bool](t)(s.ReplacePolicyID(ctx(t), "c.example", "hc", "other", "x")); ok {
		t.Fatal("ReplacePolicyID over an id the row does not hold")
	}
	if ok := must[bool](t)(s.ReplacePolicyID(ctx(t), "c.example", "hx", "fromfile", "x")); ok {
		t.Fatal("ReplacePolicyID over a hash the row does not hold")
	}
	if ok := must[bool](t)(s.ReplacePolicyID(ctx(t), "c.example", "hc", "fromfile", "older")); !ok {
		t.Fatal("ReplacePolicyID did not replace")
	}
	check(t, s.ImportHostPolicy(ctx(t), store.HostPolicy{Domain: "c.example", BodyHash: "hc", PolicyID: "fromfile"}))
	// The imported id stays for its body.
	if again := must[map[string]string](t)(s.AssignPolicyIDs(ctx(t), map[string]string{"c.example": "hc"}, newID)); again["c.example"] != "older" {
		t.Fatalf("imported id replaced: %v", again)
	}
}

// testHostPolicyIDsConverge: host instances that see the same change at
// once (each making a different id) all get one id, the stored one; the
// compare-and-set is what makes them converge.
func testHostPolicyIDsConverge(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	const callers = 8
	domains := []string{"a.example", "b.example", "c.example"}
	for round, hash := range []string{"h1", "h2", "h3"} {
		hashes := map[string]string{}
		for _, d := range domains {
			hashes[d] = hash
		}
		got := make([]map[string]string, callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range callers {
			wg.Go(func() {
				<-gate
				got[i], errs[i] = s.AssignPolicyIDs(ctx(t), hashes, func(string) string { return fmt.Sprintf("r%dc%d", round, i) })
			})
		}
		close(gate)
		wg.Wait()
		for i := range callers {
			check(t, errs[i])
			for _, d := range domains {
				if got[i][d] != got[0][d] {
					t.Fatalf("round %d: caller %d got %s for %s, caller 0 %s", round, i, got[i][d], d, got[0][d])
				}
			}
		}
		for _, d := range domains {
			p := must[store.HostPolicy](t)(s.HostPolicy(ctx(t), d))
			if p.PolicyID != got[0][d] || p.BodyHash != hash {
				t.Fatalf("round %d: stored %+v, callers got %s", round, p, got[0][d])
			}
		}
	}
}
