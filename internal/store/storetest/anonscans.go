package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

// OpenAnon returns new, empty anonymous scans and the same store as a
// second instance would open it (a second connection pool on the same
// database).
type OpenAnon func(t testing.TB) (store.AnonScans, store.AnonScans)

// RunAnonScans is the conformance suite of store.AnonScans, the web
// checker's anonymous scans shared by instances (docs/scaling.md).
func RunAnonScans(t *testing.T, open OpenAnon) {
	t.Run("LiveAndFinal", func(t *testing.T) { testAnonLiveAndFinal(t, open) })
	t.Run("Events", func(t *testing.T) { testAnonEvents(t, open) })
	t.Run("Interrupt", func(t *testing.T) { testAnonInterrupt(t, open) })
	t.Run("Expiry", func(t *testing.T) { testAnonExpiry(t, open) })
	t.Run("Listen", func(t *testing.T) { testAnonListen(t, open) })
	t.Run("LimitRate", func(t *testing.T) { testAnonLimitRate(t, open) })
	t.Run("LimitConcurrent", func(t *testing.T) { testAnonLimitConcurrent(t, open) })
	t.Run("LimitRace", func(t *testing.T) { testAnonLimitRace(t, open) })
}

var anonT0 = time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

func anonLive(id, domain string, smtp bool, owner string) store.AnonScan {
	return store.AnonScan{ID: id, Domain: domain, SMTP: smtp, State: "queued", Owner: owner, Heartbeat: anonT0, Created: anonT0}
}

func testAnonLiveAndFinal(t *testing.T, open OpenAnon) {
	ctx := t.Context()
	a, b := open(t)
	if _, err := a.BeginAnonScan(ctx, anonLive("id1", "example.test", true, "A"), store.AnonLimits{}); err != nil {
		t.Fatal(err)
	}
	// One live scan per domain and options, whichever instance asks: the
	// second is told which one runs.
	old, err := b.BeginAnonScan(ctx, anonLive("id2", "example.test", true, "B"), store.AnonLimits{})
	if !errors.Is(err, store.ErrConflict) || old == nil || old.ID != "id1" || old.Owner != "A" {
		t.Fatalf("second live scan: %+v, %v; want id1 and ErrConflict", old, err)
	}
	if _, err := b.BeginAnonScan(ctx, anonLive("id3", "example.test", false, "B"), store.AnonLimits{}); err != nil {
		t.Fatalf("other options: %v", err)
	}
	if err := a.SetAnonState(ctx, "id1", "running", anonT0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := b.GetAnonScan(ctx, "id1")
	if err != nil || got.State != "running" || got.Final || !got.Started.Equal(anonT0.Add(time.Second)) || !got.SMTP || got.Record != nil {
		t.Fatalf("live scan seen from the other instance: %+v, %v", got, err)
	}
	if _, err := b.GetAnonScan(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	done := store.AnonScan{ID: "id1", Domain: "example.test", SMTP: true, State: "done", Final: true, Owner: "A",
		Created: anonT0, Started: anonT0.Add(time.Second), Finished: anonT0.Add(5 * time.Second),
		Expires: anonT0.Add(time.Hour), Record: []byte(`{"id":"id1"}`)}
	if err := a.FinishAnonScan(ctx, done); err != nil {
		t.Fatal(err)
	}
	got, err = b.GetAnonScan(ctx, "id1")
	if err != nil || !got.Final || got.State != "done" || string(got.Record) != `{"id":"id1"}` || !got.Expires.Equal(done.Expires) {
		t.Fatalf("final scan: %+v, %v", got, err)
	}
	if err := a.SetAnonState(ctx, "id1", "running", anonT0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a final scan took a live state: %v", err)
	}
	// Final, it no longer holds the domain.
	if _, err := b.BeginAnonScan(ctx, anonLive("id4", "example.test", true, "B"), store.AnonLimits{}); err != nil {
		t.Fatalf("new scan after the final one: %v", err)
	}
	// Reuse: the newest done scan since a time, of these options only.
	newer := done
	newer.ID, newer.Finished, newer.Record = "id5", anonT0.Add(time.Minute), []byte(`{"id":"id5"}`)
	if err := b.FinishAnonScan(ctx, newer); err != nil { // filed final at once (no live row)
		t.Fatal(err)
	}
	failed := done
	failed.ID, failed.State, failed.Finished, failed.Record, failed.Error = "id6", "failed", anonT0.Add(2*time.Minute), nil, "x"
	if err := b.FinishAnonScan(ctx, failed); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		smtp  bool
		since time.Time
		want  string
	}{
		{true, anonT0, "id5"}, {true, anonT0.Add(time.Minute), "id5"}, {true, anonT0.Add(time.Minute + time.Microsecond), ""}, {false, anonT0, ""},
	} {
		r, err := a.RecentAnonScan(ctx, "example.test", c.smtp, c.since)
		if err != nil {
			t.Fatal(err)
		}
		if r != nil && r.ID != c.want || r == nil && c.want != "" {
			t.Errorf("recent smtp=%t since %s: %+v, want %q", c.smtp, c.since, r, c.want)
		}
	}
}

func testAnonEvents(t *testing.T, open OpenAnon) {
	ctx := t.Context()
	a, b := open(t)
	if _, err := a.BeginAnonScan(ctx, anonLive("ev", "example.test", true, "A"), store.AnonLimits{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := a.AddAnonEvent(ctx, "ev", store.AnonEvent{Seq: i, Body: fmt.Appendf(nil, `{"n":%d}`, i), Written: anonT0.Add(time.Duration(i) * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	// A sequence number is filed once: a retried write cannot duplicate.
	if err := a.AddAnonEvent(ctx, "ev", store.AnonEvent{Seq: 3, Body: []byte(`{}`), Written: anonT0}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate seq: %v", err)
	}
	evs, err := b.AnonEvents(ctx, "ev", 2, 2)
	if err != nil || len(evs) != 2 || evs[0].Seq != 3 || evs[1].Seq != 4 || string(evs[0].Body) != `{"n":3}` ||
		!evs[0].Written.Equal(anonT0.Add(3*time.Millisecond)) {
		t.Fatalf("events after 2, at most 2: %+v, %v", evs, err)
	}
	if evs, err := b.AnonEvents(ctx, "ev", 5, 10); err != nil || len(evs) != 0 {
		t.Fatalf("events after the last: %+v, %v", evs, err)
	}
}

func testAnonInterrupt(t *testing.T, open OpenAnon) {
	ctx := t.Context()
	a, b := open(t)
	for _, s := range []store.AnonScan{anonLive("dead", "a.test", true, "A"), anonLive("alive", "b.test", true, "B")} {
		if _, err := a.BeginAnonScan(ctx, s, store.AnonLimits{}); err != nil {
			t.Fatal(err)
		}
	}
	// B keeps its scan alive; A stopped. A heartbeat names the owner's
	// scans: none of another owner's, none it no longer runs.
	if err := b.HeartbeatAnonScans(ctx, "B", []string{"alive", "dead", "gone"}, anonT0.Add(40*time.Second)); err != nil {
		t.Fatal(err)
	}
	now := anonT0.Add(45 * time.Second)
	n, err := b.InterruptAnonScans(ctx, now.Add(-30*time.Second), now, now.Add(time.Hour), "interrupted")
	if err != nil || n != 1 {
		t.Fatalf("interrupted %d, %v; want 1", n, err)
	}
	dead, err := a.GetAnonScan(ctx, "dead")
	if err != nil || !dead.Final || dead.State != "failed" || dead.Error != "interrupted" || !dead.Finished.Equal(now) || !dead.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("the dead instance's scan: %+v, %v", dead, err)
	}
	alive, err := a.GetAnonScan(ctx, "alive")
	if err != nil || alive.Final || !alive.Heartbeat.Equal(anonT0.Add(40*time.Second)) {
		t.Fatalf("the live instance's scan: %+v, %v", alive, err)
	}
}

func testAnonExpiry(t *testing.T, open OpenAnon) {
	ctx := t.Context()
	a, _ := open(t)
	for i, exp := range []time.Duration{time.Minute, time.Hour} {
		id := fmt.Sprintf("f%d", i)
		if _, err := a.BeginAnonScan(ctx, anonLive(id, fmt.Sprintf("d%d.test", i), true, "A"), store.AnonLimits{}); err != nil {
			t.Fatal(err)
		}
		if err := a.AddAnonEvent(ctx, id, store.AnonEvent{Seq: 1, Body: []byte(`{}`), Written: anonT0}); err != nil {
			t.Fatal(err)
		}
		if err := a.FinishAnonScan(ctx, store.AnonScan{ID: id, Domain: fmt.Sprintf("d%d.test", i), SMTP: true, State: "done", Final: true,
			Owner: "A", Created: anonT0, Finished: anonT0, Expires: anonT0.Add(exp), Record: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.BeginAnonScan(ctx, anonLive("live", "live.test", true, "A"), store.AnonLimits{}); err != nil {
		t.Fatal(err)
	}
	n, err := a.DeleteExpiredAnonScans(ctx, anonT0.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("deleted %d, %v; want 1 (expiry at or before now)", n, err)
	}
	if _, err := a.GetAnonScan(ctx, "f0"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired scan: %v", err)
	}
	if evs, err := a.AnonEvents(ctx, "f0", 0, 10); err != nil || len(evs) != 0 {
		t.Fatalf("expired scan's events: %+v, %v", evs, err)
	}
	for _, id := range []string{"f1", "live"} {
		if _, err := a.GetAnonScan(ctx, id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
}

func testAnonListen(t *testing.T, open OpenAnon) {
	a, b := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan struct{})
	got := make(chan store.AnonNotice, 16)
	var wg sync.WaitGroup
	var lerr error
	ended := make(chan struct{})
	wg.Go(func() {
		defer close(ended)
		lerr = b.ListenAnonScans(ctx, func() { close(ready) }, func(n store.AnonNotice) { got <- n })
	})
	defer wg.Wait()
	defer cancel()
	select {
	case <-ready:
	case <-ended:
		if errors.Is(lerr, store.ErrNoListen) {
			t.Skip("this engine has no notifications (readers poll)")
		}
		t.Fatalf("not listening: %v", lerr)
	case <-time.After(30 * time.Second):
		t.Fatal("not listening after 30s")
	}
	if _, err := a.BeginAnonScan(ctx, anonLive("ln", "example.test", true, "A"), store.AnonLimits{}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetAnonState(ctx, "ln", "running", anonT0); err != nil {
		t.Fatal(err)
	}
	if err := a.AddAnonEvent(ctx, "ln", store.AnonEvent{Seq: 1, Body: []byte(`{}`), Written: anonT0}); err != nil {
		t.Fatal(err)
	}
	if err := a.FinishAnonScan(ctx, store.AnonScan{ID: "ln", Domain: "example.test", SMTP: true, State: "done", Final: true,
		Owner: "A", Created: anonT0, Finished: anonT0, Expires: anonT0.Add(time.Hour), Record: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	// The state, the event, the end: in the order written.
	for _, want := range []store.AnonNotice{{ID: "ln", Seq: 0}, {ID: "ln", Seq: 1}, {ID: "ln", Seq: 0}} {
		select {
		case n := <-got:
			if n != want {
				t.Fatalf("notice %+v, want %+v", n, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no notice (want %+v)", want)
		}
	}
}

// limited returns BeginAnonScan's limit error, failing on any other
// outcome.
func limited(t *testing.T, s *store.AnonScan, err error) *store.AnonLimitError {
	t.Helper()
	var le *store.AnonLimitError
	if !errors.As(err, &le) {
		t.Fatalf("admitted over the limit: %+v, %v", s, err)
	}
	return le
}

// testAnonLimitRate: scans_per_minute with its burst holds across
// instances; a refusal files and counts nothing; joining is free.
func testAnonLimitRate(t *testing.T, open OpenAnon) {
	ctx := t.Context()
	a, b := open(t)
	now := anonT0
	lim := func(client string) store.AnonLimits {
		return store.AnonLimits{Client: client, Rate: 10.0 / 60, Burst: 2, Now: now}
	}
	inst := []store.AnonScans{a, b}
	for i := range 2 { // the burst, one scan on each instance
		if _, err := inst[i].BeginAnonScan(ctx, anonLive(fmt.Sprintf("r%d", i), fmt.Sprintf("r%d.test", i), true, "A"), lim("192.0.2.1")); err != nil {
			t.Fatalf("scan %d of the burst: %v", i, err)
		}
	}
	s, err := a.BeginAnonScan(ctx, anonLive("r2", "r2.test", true, "A"), lim("192.0.2.1"))
	if le := limited(t, s, err); le.Limit != "rate" || le.RetryAfter != 6*time.Second {
		t.Fatalf("refusal %+v; want rate, retry in 6s (one scan every 6s)", le)
	}
	if _, err := b.GetAnonScan(ctx, "r2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused scan was filed: %v", err)
	}
	// Another client has its own bucket.
	if _, err := b.BeginAnonScan(ctx, anonLive("o1", "o1.test", true, "B"), lim("2001:db8::/64")); err != nil {
		t.Fatalf("another client: %v", err)
	}
	// Joining a live scan costs nothing, even over the limit.
	old, err := b.BeginAnonScan(ctx, anonLive("j", "r0.test", true, "B"), lim("192.0.2.1"))
	if !errors.Is(err, store.ErrConflict) || old == nil || old.ID != "r0" {
		t.Fatalf("join over the limit: %+v, %v; want r0 and ErrConflict", old, err)
	}
	// The refusals spent nothing: one scan is due 6s on, not later.
	now = anonT0.Add(5 * time.Second)
	s, err = b.BeginAnonScan(ctx, anonLive("r3", "r3.test", true, "B"), lim("192.0.2.1"))
	if le := limited(t, s, err); le.RetryAfter != time.Second {
		t.Fatalf("refusal %+v; want retry in 1s", le)
	}
	now = anonT0.Add(6 * time.Second)
	if _, err := b.BeginAnonScan(ctx, anonLive("r4", "r4.test", true, "B"), lim("192.0.2.1")); err != nil {
		t.Fatalf("a scan after the interval: %v", err)
	}
	s, err = a.BeginAnonScan(ctx, anonLive("r5", "r5.test", true, "A"), lim("192.0.2.1"))
	limited(t, s, err)
	// The janitor forgets buckets that are full again; a forgotten bucket
	// is a full one.
	if _, err := a.DeleteExpiredAnonScans(ctx, anonT0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	now = anonT0.Add(time.Hour)
	for i := range 2 {
		if _, err := inst[i].BeginAnonScan(ctx, anonLive(fmt.Sprintf("f%d", i), fmt.Sprintf("f%d.test", i), true, "A"), lim("192.0.2.1")); err != nil {
			t.Fatalf("scan %d of a new burst: %v", i, err)
		}
	}
	s, err = a.BeginAnonScan(ctx, anonLive("f2", "f2.test", true, "A"), lim("192.0.2.1"))
	limited(t, s, err)
}

// testAnonLimitConcurrent: concurrent_per_client counts the client's live
// scans on every instance; a final or interrupted scan no longer counts.
func testAnonLimitConcurrent(t *testing.T, open OpenAnon) {
	ctx := t.Context()
	a, b := open(t)
	lim := store.AnonLimits{Client: "192.0.2.7", Concurrent: 2, Now: anonT0}
	if _, err := a.BeginAnonScan(ctx, anonLive("c1", "c1.test", true, "A"), lim); err != nil {
		t.Fatal(err)
	}
	if _, err := b.BeginAnonScan(ctx, anonLive("c2", "c2.test", true, "B"), lim); err != nil {
		t.Fatal(err)
	}
	s, err := a.BeginAnonScan(ctx, anonLive("c3", "c3.test", true, "A"), lim)
	if le := limited(t, s, err); le.Limit != "concurrent" {
		t.Fatalf("refusal %+v; want concurrent", le)
	}
	other := lim
	other.Client = "192.0.2.8"
	if _, err := a.BeginAnonScan(ctx, anonLive("o", "o.test", true, "A"), other); err != nil {
		t.Fatalf("another client: %v", err)
	}
	if err := a.FinishAnonScan(ctx, store.AnonScan{ID: "c1", Domain: "c1.test", SMTP: true, State: "done", Final: true, Owner: "A",
		Created: anonT0, Finished: anonT0, Expires: anonT0.Add(time.Hour), Record: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.BeginAnonScan(ctx, anonLive("c4", "c4.test", true, "B"), lim); err != nil {
		t.Fatalf("after one finished: %v", err)
	}
	s, err = b.BeginAnonScan(ctx, anonLive("c5", "c5.test", true, "B"), lim)
	limited(t, s, err)
	// B's scans go stale (its instance died): interrupted, they free the
	// client's places.
	if err := a.HeartbeatAnonScans(ctx, "A", []string{"o"}, anonT0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	now := anonT0.Add(time.Minute)
	if n, err := a.InterruptAnonScans(ctx, now.Add(-30*time.Second), now, now.Add(time.Hour), "interrupted"); err != nil || n != 2 {
		t.Fatalf("interrupted %d, %v; want 2", n, err)
	}
	for i := range 2 {
		if _, err := a.BeginAnonScan(ctx, anonLive(fmt.Sprintf("n%d", i), fmt.Sprintf("n%d.test", i), true, "A"), lim); err != nil {
			t.Fatalf("after the interruption, scan %d: %v", i, err)
		}
	}
}

// testAnonLimitRace: one client's requests arriving at two instances at
// once are admitted up to the limits, never beyond.
func testAnonLimitRace(t *testing.T, open OpenAnon) {
	ctx := t.Context()
	a, b := open(t)
	for _, c := range []struct {
		name string
		lim  store.AnonLimits
		want int
	}{
		{"concurrent", store.AnonLimits{Client: "192.0.2.9", Concurrent: 3, Now: anonT0}, 3},
		{"rate", store.AnonLimits{Client: "192.0.2.10", Rate: 1.0 / 60, Burst: 4, Now: anonT0}, 4},
	} {
		var wg sync.WaitGroup
		var mu sync.Mutex
		admitted, refused := 0, 0
		for i := range 12 {
			st := []store.AnonScans{a, b}[i%2]
			wg.Go(func() {
				_, err := st.BeginAnonScan(ctx, anonLive(fmt.Sprintf("%s%d", c.name, i), fmt.Sprintf("%s%d.test", c.name, i), true, "A"), c.lim)
				var le *store.AnonLimitError
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					admitted++
				case errors.As(err, &le):
					refused++
				default:
					t.Errorf("%s %d: %v", c.name, i, err)
				}
			})
		}
		wg.Wait()
		if admitted != c.want || refused != 12-c.want {
			t.Errorf("%s: %d admitted, %d refused; want %d and %d", c.name, admitted, refused, c.want, 12-c.want)
		}
	}
}
