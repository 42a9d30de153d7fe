package storetest

import (
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

// testVerifications: a saved domain's DNS verification is its account's
// own (another account's copy of the name has its own token and state),
// the first token stays, times round-trip in UTC, and it goes with the
// domain and with the account.
func testVerifications(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "verify@example.test")
	v := newUser(t, s, "other@example.test")
	d := newDomain(t, s, u.ID, "verify.example")
	e := newDomain(t, s, v.ID, "verify.example")

	_, err := s.Verification(ctx(t), d.ID)
	wantErr(t, "before any", err, store.ErrNotFound)
	_, err = s.StartVerification(ctx(t), v.ID, d.ID, "theirs")
	wantErr(t, "another account's domain", err, store.ErrNotFound)
	_, err = s.Verification(ctx(t), d.ID)
	wantErr(t, "after another account's try", err, store.ErrNotFound)

	got := must[store.DomainVerification](t)(s.StartVerification(ctx(t), u.ID, d.ID, "first"))
	if got.Token != "first" || got.DomainID != d.ID || got.UserID != u.ID || got.Name != "verify.example" || got.Verified() {
		t.Fatalf("started: %+v", got)
	}
	sameTime(t, "CreatedAt", got.CreatedAt, c.Now())
	c.Advance(time.Minute)
	if again := must[store.DomainVerification](t)(s.StartVerification(ctx(t), u.ID, d.ID, "second")); again.Token != "first" {
		t.Fatalf("a second start replaced the token: %+v", again)
	}
	other := must[store.DomainVerification](t)(s.StartVerification(ctx(t), v.ID, e.ID, "theirs"))
	if other.Token != "theirs" || other.Verified() {
		t.Fatalf("the other account's copy: %+v", other)
	}

	at := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.FixedZone("X", 3600))
	got.VerifiedAt, got.CheckedAt, got.MissingSince = at, at.Add(time.Hour), at.Add(2*time.Hour)
	check(t, s.SaveVerification(ctx(t), got))
	back := must[store.DomainVerification](t)(s.Verification(ctx(t), d.ID))
	sameTime(t, "VerifiedAt", back.VerifiedAt, at)
	sameTime(t, "CheckedAt", back.CheckedAt, at.Add(time.Hour))
	sameTime(t, "MissingSince", back.MissingSince, at.Add(2*time.Hour))
	if !back.Verified() || back.Token != "first" {
		t.Fatalf("saved: %+v", back)
	}
	if o := must[store.DomainVerification](t)(s.Verification(ctx(t), e.ID)); o.Verified() {
		t.Fatal("verifying one account's copy verified the other's")
	}
	// Lapsed: zero times are stored as none.
	back.VerifiedAt, back.MissingSince = time.Time{}, time.Time{}
	check(t, s.SaveVerification(ctx(t), back))
	if b := must[store.DomainVerification](t)(s.Verification(ctx(t), d.ID)); b.Verified() || !b.MissingSince.IsZero() {
		t.Fatalf("lapsed: %+v", b)
	}

	// It goes with the domain (a domain saved again starts afresh) and
	// with the account.
	check(t, s.DeleteDomain(ctx(t), u.ID, d.ID))
	_, err = s.Verification(ctx(t), d.ID)
	wantErr(t, "after the domain was removed", err, store.ErrNotFound)
	wantErr(t, "saving a removed domain's", s.SaveVerification(ctx(t), back), store.ErrNotFound)
	check(t, s.DeleteUser(ctx(t), v.ID))
	_, err = s.Verification(ctx(t), e.ID)
	wantErr(t, "after the account was deleted", err, store.ErrNotFound)
}
