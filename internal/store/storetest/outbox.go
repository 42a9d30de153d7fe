package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

func testChannels(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "ch@example.test")
	v := newUser(t, s, "ch2@example.test")
	e := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelEmail, Target: "ch@example.test"}))
	w := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelWebhook, Target: "https://hooks.example/x", Secret: []byte("k3y")}))
	if len(e.UnsubscribeID) < 26 || e.UnsubscribeID == w.UnsubscribeID {
		t.Fatalf("unsubscribe ids %q %q: want distinct 128-bit ids", e.UnsubscribeID, w.UnsubscribeID)
	}
	_, err := s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelEmail, Target: "ch@example.test"})
	wantErr(t, "same channel twice", err, store.ErrConflict)
	if _, err := s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: "pager", Target: "x"}); err == nil {
		t.Fatal("unknown channel kind accepted")
	}
	if got := must[store.Channel](t)(s.GetChannel(ctx(t), w.ID)); string(got.Secret) != "k3y" || got.Kind != store.ChannelWebhook {
		t.Fatalf("GetChannel = %+v", got)
	}
	check(t, s.MarkChannelVerified(ctx(t), e.ID))
	c.Advance(time.Minute)
	check(t, s.MarkChannelVerified(ctx(t), e.ID)) // keeps the first time
	if got := must[store.Channel](t)(s.GetChannel(ctx(t), e.ID)); !got.VerifiedAt.Equal(store.UTC(start)) {
		t.Fatalf("VerifiedAt = %v, want the first verification %v", got.VerifiedAt, start)
	}
	un := must[store.Channel](t)(s.Unsubscribe(ctx(t), e.UnsubscribeID))
	if un.ID != e.ID || un.DisabledAt.IsZero() {
		t.Fatalf("Unsubscribe = %+v", un)
	}
	_, err = s.Unsubscribe(ctx(t), "no-such-id")
	wantErr(t, "unknown unsubscribe id", err, store.ErrNotFound)
	wantErr(t, "another account re-enables", s.SetChannelDisabled(ctx(t), v.ID, e.ID, false), store.ErrNotFound)
	check(t, s.SetChannelDisabled(ctx(t), u.ID, e.ID, false))
	if got := must[store.Channel](t)(s.GetChannel(ctx(t), e.ID)); !got.DisabledAt.IsZero() {
		t.Fatal("channel still disabled")
	}
	if list := must[[]store.Channel](t)(s.ListChannels(ctx(t), u.ID)); len(list) != 2 || list[0].ID != e.ID {
		t.Fatalf("ListChannels = %+v", list)
	}
	wantErr(t, "another account deletes", s.DeleteChannel(ctx(t), v.ID, w.ID), store.ErrNotFound)
	check(t, s.DeleteChannel(ctx(t), u.ID, w.ID))
	_, err = s.GetChannel(ctx(t), w.ID)
	wantErr(t, "deleted channel", err, store.ErrNotFound)
}

func testOutboxRetry(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "ob@example.test")
	v := newUser(t, s, "ob2@example.test")
	ch := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelWebhook, Target: "https://h.example/"}))
	d := newDomain(t, s, u.ID, "ob.example")
	ids := must[[]store.MessageID](t)(s.Enqueue(ctx(t),
		store.NewMessage{ChannelID: ch.ID, DomainID: d.ID, Kind: "alert", Key: "d1:f1:open", Payload: []byte("p1")},
		store.NewMessage{ChannelID: ch.ID, Kind: "test", Payload: []byte("p2")},
	))
	// The same decision replayed is not queued twice.
	again := must[[]store.MessageID](t)(s.Enqueue(ctx(t), store.NewMessage{ChannelID: ch.ID, Kind: "alert", Key: "d1:f1:open", Payload: []byte("other")}))
	if again[0] != ids[0] {
		t.Fatalf("replayed key got id %d, want the existing %d", again[0], ids[0])
	}
	// Two messages without a key are both queued.
	nokey := must[[]store.MessageID](t)(s.Enqueue(ctx(t), store.NewMessage{ChannelID: ch.ID, Kind: "test", Payload: []byte("p3")}))
	if nokey[0] == ids[1] {
		t.Fatal("messages without a key were deduplicated")
	}
	later := must[[]store.MessageID](t)(s.Enqueue(ctx(t), store.NewMessage{ChannelID: ch.ID, Kind: "digest", Payload: []byte("p4"), NotBefore: c.Now().Add(time.Hour)}))

	got := must[[]store.Message](t)(s.ClaimMessages(ctx(t), "n1", 10, time.Minute))
	if len(got) != 3 || got[0].ID != ids[0] || string(got[0].Payload) != "p1" || got[0].Attempts != 1 || got[0].UserID != u.ID || got[0].DomainID != d.ID {
		t.Fatalf("claim = %+v; want the three due messages, oldest first, with owner and attempt", got)
	}
	if more := must[[]store.Message](t)(s.ClaimMessages(ctx(t), "n2", 10, time.Minute)); len(more) != 0 {
		t.Fatalf("claimed messages claimed again: %+v", more)
	}
	check(t, s.MarkDelivered(ctx(t), ids[1], "n1", "HTTP 204"))
	check(t, s.MarkDelivered(ctx(t), nokey[0], "n1", "HTTP 200"))
	wantErr(t, "delivered twice", s.MarkDelivered(ctx(t), ids[1], "n1", ""), store.ErrLeaseLost)

	// Failure with a retry time: not due before it.
	retry := store.DefaultRetry.Next(got[0].CreatedAt, got[0].Attempts, c.Now())
	check(t, s.MarkFailed(ctx(t), ids[0], "n1", "HTTP 503", "Service Unavailable", retry))
	m := must[store.Message](t)(s.GetMessage(ctx(t), ids[0]))
	if m.LastError != "HTTP 503" || m.LeaseOwner != "" || !m.DeliveredAt.IsZero() {
		t.Fatalf("failed message = %+v", m)
	}
	sameTime(t, "NextAttemptAt", m.NextAttemptAt, retry)
	c.Set(retry.Add(-time.Second))
	if got := must[[]store.Message](t)(s.ClaimMessages(ctx(t), "n1", 10, time.Minute)); len(got) != 0 {
		t.Fatalf("claimed before its retry time: %+v", got)
	}
	c.Set(retry)
	got = must[[]store.Message](t)(s.ClaimMessages(ctx(t), "n1", 10, time.Minute))
	if len(got) != 1 || got[0].ID != ids[0] || got[0].Attempts != 2 {
		t.Fatalf("retry claim = %+v", got)
	}
	// Give up: never claimed again.
	check(t, s.MarkFailed(ctx(t), ids[0], "n1", "HTTP 410", "Gone", time.Time{}))
	c.Advance(48 * time.Hour)
	got = must[[]store.Message](t)(s.ClaimMessages(ctx(t), "n1", 10, time.Minute))
	if len(got) != 1 || got[0].ID != later[0] {
		t.Fatalf("after giving up, claim = %+v; want only the digest", got)
	}
	if m := must[store.Message](t)(s.GetMessage(ctx(t), ids[0])); m.AbandonedAt.IsZero() || m.Attempts != 2 {
		t.Fatalf("abandoned message = %+v", m)
	}
	// The digest's notifier dies; after the lease another one rescues it.
	c.Advance(time.Minute)
	got = must[[]store.Message](t)(s.ClaimMessages(ctx(t), "n2", 10, time.Minute))
	if len(got) != 1 || got[0].RescuedFrom != "n1" || got[0].Attempts != 2 {
		t.Fatalf("rescue = %+v", got)
	}
	wantErr(t, "the dead notifier reports delivery", s.MarkDelivered(ctx(t), later[0], "n1", ""), store.ErrLeaseLost)
	check(t, s.MarkDelivered(ctx(t), later[0], "n2", "250 OK"))

	// Messages of a disabled channel wait.
	check(t, s.SetChannelDisabled(ctx(t), u.ID, ch.ID, true))
	must[[]store.MessageID](t)(s.Enqueue(ctx(t), store.NewMessage{ChannelID: ch.ID, Kind: "alert", Payload: []byte("p5")}))
	if got := must[[]store.Message](t)(s.ClaimMessages(ctx(t), "n1", 10, time.Minute)); len(got) != 0 {
		t.Fatalf("claimed for a disabled channel: %+v", got)
	}

	// The delivery log: newest first, one entry per finished attempt.
	log := must[[]store.Delivery](t)(s.ListDeliveries(ctx(t), u.ID, ch.ID, 10))
	var lines []string
	for _, d := range log {
		lines = append(lines, fmt.Sprintf("%d %s %q %q", d.MessageID, d.Kind, d.Error, d.Detail))
	}
	want := []string{
		fmt.Sprintf("%d digest \"\" \"250 OK\"", later[0]),
		fmt.Sprintf("%d alert \"HTTP 410\" \"Gone\"", ids[0]),
		fmt.Sprintf("%d alert \"HTTP 503\" \"Service Unavailable\"", ids[0]),
		fmt.Sprintf("%d test \"\" \"HTTP 200\"", nokey[0]),
		fmt.Sprintf("%d test \"\" \"HTTP 204\"", ids[1]),
	}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Fatalf("delivery log:\n%v\nwant\n%v", lines, want)
	}
	if log := must[[]store.Delivery](t)(s.ListDeliveries(ctx(t), v.ID, ch.ID, 10)); len(log) != 0 {
		t.Fatal("another account reads the delivery log")
	}
}

// Notifiers racing for the outbox deliver every message exactly once.
func testOutboxConcurrent(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	u := newUser(t, s, "race@example.test")
	ch := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelEmail, Target: "race@example.test"}))
	const n = 300
	var msgs []store.NewMessage
	for i := range n {
		msgs = append(msgs, store.NewMessage{ChannelID: ch.ID, Kind: "alert", Key: fmt.Sprint(i), Payload: []byte("x")})
	}
	must[[]store.MessageID](t)(s.Enqueue(ctx(t), msgs...))
	var mu sync.Mutex
	delivered := map[store.MessageID]int{}
	var wg sync.WaitGroup
	for w := range 6 {
		owner := fmt.Sprint("notifier-", w)
		wg.Go(func() {
			for {
				got, err := s.ClaimMessages(ctx(t), owner, 7, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				for _, m := range got {
					if err := s.MarkDelivered(ctx(t), m.ID, owner, ""); err != nil {
						t.Errorf("MarkDelivered(%d) by %s: %v", m.ID, owner, err)
						continue
					}
					mu.Lock()
					delivered[m.ID]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(delivered) != n {
		t.Fatalf("%d of %d messages delivered", len(delivered), n)
	}
	for id, k := range delivered {
		if k != 1 {
			t.Fatalf("message %d delivered %d times", id, k)
		}
	}
}

// Alerts decided from a scan are queued with it, or not at all.
func testOutboxInScan(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	u := newUser(t, s, "tx@example.test")
	ch := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelEmail, Target: "tx@example.test"}))
	d := newDomain(t, s, u.ID, "tx.example")
	sc := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule}))
	// A message for a channel that does not exist makes the whole
	// result fail: no scan result without its alerts.
	_, err := s.FinishScan(ctx(t), sc.ID, store.ScanResult{State: store.ScanDone, Grade: "F", Report: []byte(`{}`),
		Findings: []store.Finding{{ID: "x", Severity: "error", Subject: "s"}},
		Messages: []store.NewMessage{{ChannelID: ch.ID, Kind: "alert", Key: "k1"}, {ChannelID: 987654, Kind: "alert"}}})
	if err == nil {
		t.Fatal("FinishScan with a message for an unknown channel succeeded")
	}
	if got := must[store.Scan](t)(s.GetScan(ctx(t), sc.ID)); got.State != store.ScanQueued || got.Grade != "" {
		t.Fatalf("half-stored scan: %+v", got)
	}
	if f := must[[]store.Finding](t)(s.ScanFindings(ctx(t), sc.ID)); len(f) != 0 {
		t.Fatalf("findings of a rolled-back result: %v", f)
	}
	if got := must[[]store.Message](t)(s.ClaimMessages(ctx(t), "n", 10, time.Minute)); len(got) != 0 {
		t.Fatalf("messages of a rolled-back result: %+v", got)
	}
	must[store.Scan](t)(s.FinishScan(ctx(t), sc.ID, store.ScanResult{State: store.ScanDone, Grade: "F", Report: []byte(`{}`),
		Messages: []store.NewMessage{{ChannelID: ch.ID, DomainID: d.ID, Kind: "alert", Key: "k1", Payload: []byte("a")}}}))
	got := must[[]store.Message](t)(s.ClaimMessages(ctx(t), "n", 10, time.Minute))
	if len(got) != 1 || got[0].Key != "k1" || got[0].DomainID != d.ID {
		t.Fatalf("queued with the scan: %+v", got)
	}
}
