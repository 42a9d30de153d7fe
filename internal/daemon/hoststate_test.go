package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// mxResolver answers every MX lookup with its current hosts.
type mxResolver struct {
	mu    sync.Mutex
	hosts []string
}

func (r *mxResolver) set(hosts ...string) {
	r.mu.Lock()
	r.hosts = hosts
	r.mu.Unlock()
}

func (r *mxResolver) Lookup(ctx context.Context, name string, qtype uint16) *resolve.Answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := &resolve.Answer{Name: name, Status: resolve.StatusOK}
	for _, h := range r.hosts {
		a.Records = append(a.Records, resolve.Record{Name: name, Type: "MX", Host: h})
	}
	return a
}

// TestSharedMXWatchers: two host instances on one store, one of whose
// resolvers still caches the old MX set. The instance that sees the change
// writes it; the stale one serves it from the store and does not write its
// old view back (which would flip the policy, and its id, back and forth).
func TestSharedMXWatchers(t *testing.T) {
	ctx := t.Context()
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "mailtls.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log := slog.New(slog.DiscardHandler)
	fresh, stale := &mxResolver{}, &mxResolver{}
	fresh.set("mx1.follow.test")
	stale.set("mx1.follow.test")
	w1, err := newSharedMXWatcher(ctx, log, fresh, db, time.Now, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	w2, err := newSharedMXWatcher(ctx, log, stale, db, time.Now, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	domains := []string{"follow.test"}
	if !w1.Refresh(ctx, domains) {
		t.Fatal("the first MX set is no change")
	}
	w2.Refresh(ctx, domains)
	for i, w := range []*mxWatcher{w1, w2} {
		if p, ok := w.Patterns("follow.test"); !ok || !slices.Equal(p, []string{"mx1.follow.test"}) {
			t.Fatalf("instance %d serves %v %v", i+1, p, ok)
		}
	}

	// DNS changes; instance 2's resolver still gives the old set.
	fresh.set("mx2.follow.test")
	if !w1.Refresh(ctx, domains) {
		t.Fatal("instance 1 did not see the change")
	}
	if !w2.Refresh(ctx, domains) {
		t.Fatal("instance 2 did not take the new set from the store")
	}
	if w2.Refresh(ctx, domains) {
		t.Fatal("instance 2 reported a change twice")
	}
	p, err := db.HostPolicy(ctx, "follow.test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.MXPatterns, []string{"mx2.follow.test"}) {
		t.Fatalf("the store holds %v: the stale instance wrote its old view back", p.MXPatterns)
	}
	for i, w := range []*mxWatcher{w1, w2} {
		if p, ok := w.Patterns("follow.test"); !ok || !slices.Equal(p, []string{"mx2.follow.test"}) {
			t.Fatalf("instance %d serves %v %v, want the new set", i+1, p, ok)
		}
	}
	// Its resolver catches up: nothing changes any more.
	stale.set("mx2.follow.test")
	if w2.Refresh(ctx, domains) || w1.Refresh(ctx, domains) {
		t.Fatal("a change reported where there was none")
	}
}

// madeBefore orders ids made by mtasts.NewID by when they were made.
func TestMadeBefore(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"20261202085014", "20261202085015", true},
		{"20261202085015", "20261202085014", false},
		{"20261202085014", "202612020850141", true},
		{"202612020850142", "202612020850141", false},
		{"202612020850149", "2026120208501410", true},
		{"20261202085014", "20261202085014", false},
		{"published", "20261202085015", false}, // not made by NewID: never replaced
		{"20261202085014", "abc", false},
	} {
		if got := madeBefore(tc.a, tc.b); got != tc.want {
			t.Errorf("madeBefore(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}
