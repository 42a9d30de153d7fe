package sqlstore

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/storetest"
)

// Three instances (three pools, as three processes would have) on one
// PostgreSQL database share 500 due domains and 300 outbox messages: each
// domain is scanned once and each message delivered once. One instance
// dies holding leases; once they expire the survivors take its domains
// and messages over (rescued from it), and its late results are refused.
func TestPostgresInstancesShareClaims(t *testing.T) {
	url := lab.NewPostgresDB(t)
	c := storetest.NewClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	var inst [3]*DB
	for i := range inst {
		inst[i] = openPostgres(t, url, c.Now)
	}
	s := inst[0]
	ctx := t.Context()
	u, err := s.CreateUser(ctx, "msp@example.test", "x")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.CreateChannel(ctx, store.NewChannel{UserID: u.ID, Kind: store.ChannelEmail, Target: "msp@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	const domains, messages = 500, 300
	for i := range domains {
		if _, err := s.AddDomain(ctx, store.NewDomain{UserID: u.ID, Name: fmt.Sprintf("d%03d.example", i), NextScanAt: c.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	var msgs []store.NewMessage
	for i := range messages {
		msgs = append(msgs, store.NewMessage{ChannelID: ch.ID, Kind: "alert", Key: fmt.Sprint(i), Payload: []byte("x")})
	}
	if _, err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	// Instance 2 claims a batch of each and dies (never renews, releases
	// or finishes).
	deadDomains, err := inst[2].ClaimDueDomains(ctx, "dead", 20, 10*time.Minute)
	if err != nil || len(deadDomains) != 20 {
		t.Fatalf("dead claim: %d %v", len(deadDomains), err)
	}
	deadMsgs, err := inst[2].ClaimMessages(ctx, "dead", 15, 10*time.Minute)
	if err != nil || len(deadMsgs) != 15 {
		t.Fatalf("dead claim: %d %v", len(deadMsgs), err)
	}

	var mu sync.Mutex
	scanned := map[store.DomainID][]string{}
	delivered := map[store.MessageID][]string{}
	rescued := map[string]int{}
	work := func() {
		var wg sync.WaitGroup
		for i := range 2 {
			for w := range 3 {
				db, owner := inst[i], fmt.Sprintf("instance-%d/worker-%d", i, w)
				wg.Go(func() {
					for {
						got, err := db.ClaimDueDomains(ctx, owner, 7, 10*time.Minute)
						if err != nil {
							t.Error(err)
							return
						}
						mg, err := db.ClaimMessages(ctx, owner, 5, 10*time.Minute)
						if err != nil {
							t.Error(err)
							return
						}
						if len(got) == 0 && len(mg) == 0 {
							return
						}
						for _, d := range got {
							sc, err := db.CreateScan(ctx, store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule})
							if err == nil {
								_, err = db.FinishScan(ctx, sc.ID, store.ScanResult{State: store.ScanDone, Grade: "A", Report: []byte(`{}`),
									Release: &store.Release{Owner: owner, Next: c.Now().Add(24 * time.Hour)}})
							}
							if err != nil {
								t.Errorf("%s: scan of %d: %v", owner, d.ID, err)
								continue
							}
							mu.Lock()
							scanned[d.ID] = append(scanned[d.ID], owner)
							rescued[d.RescuedFrom]++
							mu.Unlock()
						}
						for _, m := range mg {
							if err := db.MarkDelivered(ctx, m.ID, owner, ""); err != nil {
								t.Errorf("%s: delivery of %d: %v", owner, m.ID, err)
								continue
							}
							mu.Lock()
							delivered[m.ID] = append(delivered[m.ID], owner)
							rescued[m.RescuedFrom]++
							mu.Unlock()
						}
					}
				})
			}
		}
		wg.Wait()
	}
	work()
	if len(scanned) != domains-20 || len(delivered) != messages-15 || rescued["dead"] != 0 {
		t.Fatalf("before expiry: %d domains scanned, %d messages delivered, %d rescued; want %d, %d, 0",
			len(scanned), len(delivered), rescued["dead"], domains-20, messages-15)
	}
	// The dead instance's leases expire: the survivors take over.
	c.Advance(10 * time.Minute)
	work()
	if len(scanned) != domains || len(delivered) != messages || rescued["dead"] != 20+15 {
		t.Fatalf("after expiry: %d domains scanned, %d messages delivered, %d rescued from the dead instance; want %d, %d, 35",
			len(scanned), len(delivered), rescued["dead"], domains, messages)
	}
	for id, by := range scanned {
		if len(by) != 1 {
			t.Fatalf("domain %d scanned %d times: %v", id, len(by), by)
		}
	}
	for id, by := range delivered {
		if len(by) != 1 {
			t.Fatalf("message %d delivered %d times: %v", id, len(by), by)
		}
	}
	// The dead instance comes back late: its results are refused.
	if err := inst[2].ReleaseDomain(ctx, deadDomains[0].ID, "dead", c.Now()); err != store.ErrLeaseLost {
		t.Errorf("late release: %v", err)
	}
	if err := inst[2].MarkDelivered(ctx, deadMsgs[0].ID, "dead", ""); err != store.ErrLeaseLost {
		t.Errorf("late delivery: %v", err)
	}
}
