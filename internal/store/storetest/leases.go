package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

func testNamedLeases(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	ok := must[bool](t)(s.AcquireLease(ctx(t), "janitor", "a", time.Minute))
	if !ok {
		t.Fatal("first AcquireLease failed")
	}
	if must[bool](t)(s.AcquireLease(ctx(t), "janitor", "b", time.Minute)) {
		t.Fatal("a second owner acquired a held lease")
	}
	if !must[bool](t)(s.AcquireLease(ctx(t), "digest", "b", time.Minute)) {
		t.Fatal("another lease name is not independent")
	}
	// The holder may extend by acquiring again.
	c.Advance(50 * time.Second)
	if !must[bool](t)(s.AcquireLease(ctx(t), "janitor", "a", time.Minute)) {
		t.Fatal("the holder could not re-acquire")
	}
	c.Advance(50 * time.Second)
	if must[bool](t)(s.AcquireLease(ctx(t), "janitor", "b", time.Minute)) {
		t.Fatal("lease taken over before the extended expiry")
	}
	check(t, s.RenewLease(ctx(t), "janitor", "a", time.Minute))
	c.Advance(time.Minute)
	// Expired: another owner takes over; the old one has lost it.
	if !must[bool](t)(s.AcquireLease(ctx(t), "janitor", "b", time.Minute)) {
		t.Fatal("expired lease not taken over")
	}
	wantErr(t, "renew after takeover", s.RenewLease(ctx(t), "janitor", "a", time.Minute), store.ErrLeaseLost)
	wantErr(t, "release after takeover", s.ReleaseLease(ctx(t), "janitor", "a"), store.ErrLeaseLost)
	check(t, s.ReleaseLease(ctx(t), "janitor", "b"))
	if !must[bool](t)(s.AcquireLease(ctx(t), "janitor", "a", time.Minute)) {
		t.Fatal("released lease not free")
	}

	// Concurrent acquirers: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Go(func() {
			ok, err := s.AcquireLease(ctx(t), "race", fmt.Sprint("owner-", i), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d of 8 concurrent acquirers won", wins)
	}
}

// Concurrent claimers of due domains never hold one domain at once, and
// every due domain is claimed exactly once per due time.
func testLeaseExclusivity(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "many@example.test")
	const domains = 200
	for i := range domains {
		must[store.Domain](t)(s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: fmt.Sprintf("d%03d.example", i), NextScanAt: c.Now()}))
	}
	var mu sync.Mutex
	claims := map[store.DomainID]int{}
	held := map[store.DomainID]string{}
	var wg sync.WaitGroup
	for w := range 8 {
		owner := fmt.Sprint("worker-", w)
		wg.Go(func() {
			for {
				got, err := s.ClaimDueDomains(ctx(t), owner, 5, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				for _, d := range got {
					mu.Lock()
					claims[d.ID]++
					if o, ok := held[d.ID]; ok {
						t.Errorf("domain %d claimed by %s while %s holds it", d.ID, owner, o)
					}
					held[d.ID] = owner
					mu.Unlock()
					if d.LeaseOwner != owner || d.RescuedFrom != "" {
						t.Errorf("claimed domain = %+v", d)
					}
				}
				for _, d := range got {
					mu.Lock()
					delete(held, d.ID)
					mu.Unlock()
					// Not due again in this test.
					if err := s.ReleaseDomain(ctx(t), d.ID, owner, c.Now().Add(24*time.Hour)); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if len(claims) != domains {
		t.Fatalf("%d of %d domains claimed", len(claims), domains)
	}
	for id, n := range claims {
		if n != 1 {
			t.Fatalf("domain %d claimed %d times", id, n)
		}
	}
}

// A worker that dies mid-scan loses its lease at expiry; another takes the
// domain over, and the dead worker's late result is not kept.
func testLeaseRescue(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "rescue@example.test")
	d := must[store.Domain](t)(s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: "rescue.example", NextScanAt: c.Now()}))
	ch := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelEmail, Target: "rescue@example.test"}))

	got := must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "a", 10, 10*time.Minute))
	if len(got) != 1 || got[0].ID != d.ID {
		t.Fatalf("claim = %+v", got)
	}
	sameTime(t, "LeaseUntil", got[0].LeaseUntil, c.Now().Add(10*time.Minute))
	scanA := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule}))
	if got := must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "b", 10, 10*time.Minute)); len(got) != 0 {
		t.Fatalf("a held domain was claimed again: %+v", got)
	}
	c.Advance(9 * time.Minute)
	check(t, s.RenewDomainLease(ctx(t), d.ID, "a", 10*time.Minute))
	c.Advance(9 * time.Minute)
	if got := must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "b", 10, 10*time.Minute)); len(got) != 0 {
		t.Fatal("a renewed lease was taken over")
	}
	// a stops renewing (it died); at expiry b rescues the domain.
	c.Advance(time.Minute)
	got = must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "b", 10, 10*time.Minute))
	if len(got) != 1 || got[0].LeaseOwner != "b" || got[0].RescuedFrom != "a" {
		t.Fatalf("rescue claim = %+v; want b, rescued from a", got)
	}
	wantErr(t, "renew by the dead owner", s.RenewDomainLease(ctx(t), d.ID, "a", time.Minute), store.ErrLeaseLost)
	wantErr(t, "release by the dead owner", s.ReleaseDomain(ctx(t), d.ID, "a", time.Time{}), store.ErrLeaseLost)
	// a's late result: not kept, its alert not queued.
	late, err := s.FinishScan(ctx(t), scanA.ID, store.ScanResult{
		State: store.ScanDone, Grade: "F", Report: []byte(`{}`),
		Findings: []store.Finding{{ID: "x", Severity: "error"}},
		Messages: []store.NewMessage{{ChannelID: ch.ID, DomainID: d.ID, Kind: "alert", Key: "late", Payload: []byte("late")}},
		Release:  &store.Release{Owner: "a", Next: c.Now().Add(24 * time.Hour)},
	})
	wantErr(t, "FinishScan under a lost lease", err, store.ErrLeaseLost)
	if late.State != store.ScanFailed || late.Grade != "" {
		t.Fatalf("late scan = %+v; want failed without result", late)
	}
	if f := must[[]store.Finding](t)(s.ScanFindings(ctx(t), scanA.ID)); len(f) != 0 {
		t.Fatalf("late scan kept findings %v", f)
	}
	if m := must[[]store.Message](t)(s.ClaimMessages(ctx(t), "n", 10, time.Minute)); len(m) != 0 {
		t.Fatalf("late scan queued messages %+v", m)
	}
	// b finishes properly: lease released, next run set.
	scanB := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule}))
	next := store.NextScan(d.Name, d.Interval, c.Now())
	must[store.Scan](t)(s.FinishScan(ctx(t), scanB.ID, store.ScanResult{State: store.ScanDone, Grade: "A", Report: []byte(`{}`),
		Release: &store.Release{Owner: "b", Next: next}}))
	dd := must[store.Domain](t)(s.GetDomain(ctx(t), d.ID))
	if dd.LeaseOwner != "" || !dd.LeaseUntil.IsZero() {
		t.Fatalf("lease not released: %+v", dd)
	}
	sameTime(t, "NextScanAt", dd.NextScanAt, next)
}

// After ten days of downtime a daily domain runs once, then at its next
// slot, not ten times.
func testMissedRun(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "late@example.test")
	d := newDomain(t, s, u.ID, "late.example")
	c.Set(d.NextScanAt.Add(10 * 24 * time.Hour))
	runs := 0
	for range 20 {
		got := must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w", 10, time.Minute))
		if len(got) == 0 {
			break
		}
		runs++
		check(t, s.ReleaseDomain(ctx(t), d.ID, "w", store.NextScan(d.Name, d.Interval, c.Now())))
	}
	if runs != 1 {
		t.Fatalf("%d runs after downtime, want 1", runs)
	}
	dd := must[store.Domain](t)(s.GetDomain(ctx(t), d.ID))
	if !dd.NextScanAt.After(c.Now()) || dd.NextScanAt.Sub(c.Now()) > d.Interval {
		t.Fatalf("next run %v is not within one interval after %v", dd.NextScanAt, c.Now())
	}
	// The domain keeps its time of day.
	if phase := dd.NextScanAt.Sub(d.NextScanAt) % d.Interval; phase != 0 {
		t.Fatalf("next run moved the domain's slot by %v", phase)
	}
	c.Set(dd.NextScanAt)
	if got := must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w", 10, time.Minute)); len(got) != 1 {
		t.Fatalf("at the next slot %d claims, want 1", len(got))
	}
}

// Backlog counts what the next claims would take, and the oldest due
// time: leased rows (live leases) are not waiting, expired ones are;
// future rows, delivered messages and disabled channels are not counted.
func testBacklog(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	if b := must[store.Backlog](t)(s.Backlog(ctx(t))); b != (store.Backlog{}) {
		t.Fatalf("empty store backlog = %+v", b)
	}
	u := newUser(t, s, "backlog@example.test")
	t0 := c.Now()
	a := must[store.Domain](t)(s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: "a.example", NextScanAt: t0.Add(-time.Hour)}))
	must[store.Domain](t)(s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: "b.example", NextScanAt: t0.Add(-time.Minute)}))
	must[store.Domain](t)(s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: "c.example", NextScanAt: t0.Add(time.Hour)}))
	ch := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelWebhook, Target: "https://h.example/"}))
	off := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelWebhook, Target: "https://off.example/"}))
	check(t, s.SetChannelDisabled(ctx(t), u.ID, off.ID, true))
	must[[]store.MessageID](t)(s.Enqueue(ctx(t),
		store.NewMessage{ChannelID: ch.ID, Kind: "test", Payload: []byte("1")},
		store.NewMessage{ChannelID: ch.ID, Kind: "test", Payload: []byte("later"), NotBefore: t0.Add(time.Hour)},
		store.NewMessage{ChannelID: off.ID, Kind: "test", Payload: []byte("off")}))
	c.Advance(30 * time.Second)
	must[[]store.MessageID](t)(s.Enqueue(ctx(t), store.NewMessage{ChannelID: ch.ID, Kind: "test", Payload: []byte("2")}))

	b := must[store.Backlog](t)(s.Backlog(ctx(t)))
	if b.DueDomains != 2 || b.DueMessages != 2 {
		t.Fatalf("backlog = %+v; want 2 due domains and 2 due messages", b)
	}
	sameTime(t, "OldestDomain", b.OldestDomain, t0.Add(-time.Hour))
	sameTime(t, "OldestMessage", b.OldestMessage, t0)

	// Claimed: no longer waiting. The claim takes the oldest first.
	got := must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w", 1, time.Minute))
	if len(got) != 1 || got[0].ID != a.ID {
		t.Fatalf("claim = %+v", got)
	}
	msgs := must[[]store.Message](t)(s.ClaimMessages(ctx(t), "w", 1, time.Minute))
	b = must[store.Backlog](t)(s.Backlog(ctx(t)))
	if b.DueDomains != 1 || b.DueMessages != 1 {
		t.Fatalf("backlog after claims = %+v; want 1 and 1", b)
	}
	sameTime(t, "OldestDomain", b.OldestDomain, t0.Add(-time.Minute))
	sameTime(t, "OldestMessage", b.OldestMessage, t0.Add(30*time.Second))
	// Their leases run out (the worker died): waiting again.
	c.Advance(time.Minute)
	b = must[store.Backlog](t)(s.Backlog(ctx(t)))
	if b.DueDomains != 2 || b.DueMessages != 2 {
		t.Fatalf("backlog after the leases expired = %+v; want 2 and 2", b)
	}
	sameTime(t, "OldestDomain", b.OldestDomain, t0.Add(-time.Hour))
	// Delivered: gone from the queue.
	msgs = must[[]store.Message](t)(s.ClaimMessages(ctx(t), "v", 10, time.Minute))
	for _, m := range msgs {
		check(t, s.MarkDelivered(ctx(t), m.ID, "v", "HTTP 204"))
	}
	if b = must[store.Backlog](t)(s.Backlog(ctx(t))); b.DueMessages != 0 || !b.OldestMessage.IsZero() {
		t.Fatalf("backlog after delivery = %+v", b)
	}
}
