package storetest

import (
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

// testRescanRequest: "rescan now" makes a domain due at once, with a
// cooldown after any scan; asking twice is one request; the run it asked
// for answers it.
func testRescanRequest(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "rescan@example.test")
	v := newUser(t, s, "other@example.test")
	d := newDomain(t, s, u.ID, "rescan.example")
	if d.NextScanAt.Sub(c.Now()) <= 0 {
		t.Fatalf("a new domain is due at its slot, not now: %v", d.NextScanAt)
	}
	_, err := s.RequestRescan(ctx(t), v.ID, d.ID, time.Minute)
	wantErr(t, "another account's domain", err, store.ErrNotFound)

	// Never scanned: accepted at once.
	when := must[time.Time](t)(s.RequestRescan(ctx(t), u.ID, d.ID, 5*time.Minute))
	sameTime(t, "request time", when, c.Now())
	c.Advance(10 * time.Second)
	again := must[time.Time](t)(s.RequestRescan(ctx(t), u.ID, d.ID, 5*time.Minute))
	sameTime(t, "a waiting request answers the second ask", again, when)
	claimed := must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w1", 10, time.Minute))
	if len(claimed) != 1 || claimed[0].ID != d.ID {
		t.Fatalf("the requested domain is not due: %+v", claimed)
	}
	sameTime(t, "claimed RescanRequestedAt", claimed[0].RescanRequestedAt, when)
	sc := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerManual}))
	next := store.NextScan(d.Name, d.Interval, c.Now())
	must[store.Scan](t)(s.FinishScan(ctx(t), sc.ID, store.ScanResult{State: store.ScanDone, Report: sampleReport(d.Name, "A"), Grade: "A",
		Release: &store.Release{Owner: "w1", Next: next}}))
	got := must[store.Domain](t)(s.GetDomain(ctx(t), d.ID))
	if !got.RescanRequestedAt.IsZero() || !got.NextScanAt.Equal(store.UTC(next)) {
		t.Fatalf("after the run: requested %v next %v, want none and %v", got.RescanRequestedAt, got.NextScanAt, next)
	}

	// Within the cooldown of that scan (created 10 s after the request).
	c.Advance(time.Minute)
	retry, err := s.RequestRescan(ctx(t), u.ID, d.ID, 5*time.Minute)
	wantErr(t, "within the cooldown", err, store.ErrCooldown)
	sameTime(t, "retry time", retry, sc.CreatedAt.Add(5*time.Minute))
	if got := must[store.Domain](t)(s.GetDomain(ctx(t), d.ID)); !got.RescanRequestedAt.IsZero() || !got.NextScanAt.Equal(store.UTC(next)) {
		t.Fatalf("a refused request changed the domain: %+v", got)
	}
	c.Set(retry)
	must[time.Time](t)(s.RequestRescan(ctx(t), u.ID, d.ID, 5*time.Minute))
	if got := must[store.Domain](t)(s.GetDomain(ctx(t), d.ID)); !got.NextScanAt.Equal(store.UTC(retry)) {
		t.Fatalf("after the cooldown the domain is due now: %v", got.NextScanAt)
	}
}

// testAlertState: the alert state is stored with the scan result under
// the lease, and not at all when the lease was lost.
func testAlertState(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "state@example.test")
	d := must[store.Domain](t)(s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: "state.example", NextScanAt: c.Now()}))
	if d.AlertState != nil {
		t.Fatalf("a new domain has state %q", d.AlertState)
	}
	finish := func(owner string, state []byte) error {
		sc := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule}))
		_, err := s.FinishScan(ctx(t), sc.ID, store.ScanResult{State: store.ScanDone, Report: sampleReport(d.Name, "A"),
			Release: &store.Release{Owner: owner, Next: c.Now().Add(time.Hour), AlertState: state}})
		return err
	}
	must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w1", 1, time.Minute))
	check(t, finish("w1", []byte(`{"v":1}`)))
	if got := must[store.Domain](t)(s.GetDomain(ctx(t), d.ID)); string(got.AlertState) != `{"v":1}` {
		t.Fatalf("state = %q", got.AlertState)
	}
	// A release without a state keeps it.
	c.Advance(time.Hour)
	must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w1", 1, time.Minute))
	check(t, finish("w1", nil))
	claimed := must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w1", 1, time.Minute))
	if len(claimed) != 0 {
		t.Fatal("released domain due again")
	}
	c.Advance(time.Hour)
	claimed = must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w1", 1, time.Minute))
	if len(claimed) != 1 || string(claimed[0].AlertState) != `{"v":1}` {
		t.Fatalf("claimed domain state = %+v", claimed)
	}
	// The lease expires and another worker takes the domain: the late
	// result of the first keeps nothing, not its state either.
	c.Advance(2 * time.Minute)
	must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w2", 1, time.Minute))
	wantErr(t, "late result", finish("w1", []byte(`{"v":1,"late":true}`)), store.ErrLeaseLost)
	if got := must[store.Domain](t)(s.GetDomain(ctx(t), d.ID)); string(got.AlertState) != `{"v":1}` {
		t.Fatalf("state after a lost lease = %q", got.AlertState)
	}
	if rows := must[[]store.DomainStatus](t)(s.Dashboard(ctx(t), u.ID)); string(rows[0].AlertState) != `{"v":1}` {
		t.Fatalf("dashboard state = %q", rows[0].AlertState)
	}
}

// testChannelDigest: a channel switched to a daily digest is listed at its
// hour while verified and enabled.
func testChannelDigest(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	u := newUser(t, s, "digest@example.test")
	v := newUser(t, s, "other@example.test")
	a := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelEmail, Target: "a@example.test"}))
	b := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelEmail, Target: "b@example.test"}))
	if a.Digest {
		t.Fatal("a new channel is a digest")
	}
	check(t, s.MarkChannelVerified(ctx(t), a.ID))
	check(t, s.SetChannelDigest(ctx(t), u.ID, a.ID, true, 0))
	check(t, s.SetChannelDigest(ctx(t), u.ID, b.ID, true, 0)) // not verified
	wantErr(t, "another account", s.SetChannelDigest(ctx(t), v.ID, a.ID, true, 6), store.ErrNotFound)
	if err := s.SetChannelDigest(ctx(t), u.ID, a.ID, true, 24); err == nil {
		t.Fatal("hour 24 accepted")
	}
	if got := must[store.Channel](t)(s.GetChannel(ctx(t), a.ID)); !got.Digest || got.DigestHour != 0 {
		t.Fatalf("channel = %+v", got)
	}
	if l := must[[]store.Channel](t)(s.ListDigestChannels(ctx(t), 0)); len(l) != 1 || l[0].ID != a.ID {
		t.Fatalf("digest channels at 0 = %+v", l)
	}
	if l := must[[]store.Channel](t)(s.ListDigestChannels(ctx(t), 6)); len(l) != 0 {
		t.Fatalf("digest channels at 6 = %+v", l)
	}
	check(t, s.SetChannelDisabled(ctx(t), u.ID, a.ID, true))
	if l := must[[]store.Channel](t)(s.ListDigestChannels(ctx(t), 0)); len(l) != 0 {
		t.Fatalf("a disabled channel gets a digest: %+v", l)
	}
	check(t, s.SetChannelDigest(ctx(t), u.ID, a.ID, false, 0))
	if got := must[store.Channel](t)(s.GetChannel(ctx(t), a.ID)); got.Digest {
		t.Fatal("digest not switched off")
	}
}
