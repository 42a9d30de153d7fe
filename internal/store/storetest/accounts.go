package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// Times go in in any zone and with nanoseconds, and come out in UTC at
// microsecond precision, the same instant (up to the truncation).
func testTimeRoundTrip(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	for _, when := range []time.Time{
		start,
		time.Date(2026, 10, 25, 2, 30, 0, 999999999, time.FixedZone("+0530", 5*3600+1800)),
		time.Date(2099, 12, 31, 23, 59, 59, 1000, time.UTC),
		time.Date(1999, 1, 1, 0, 0, 0, 0, time.FixedZone("-0800", -8*3600)),
	} {
		c.Set(when)
		u := newUser(t, s, fmt.Sprintf("rt-%d@example.test", when.UnixNano()))
		sameTime(t, "CreateUser.CreatedAt", u.CreatedAt, when)
		got := must[store.User](t)(s.GetUser(ctx(t), u.ID))
		sameTime(t, "GetUser.CreatedAt", got.CreatedAt, when)
		if got.CreatedAt.Nanosecond()%1000 != 0 {
			t.Fatalf("CreatedAt %v keeps sub-microsecond digits", got.CreatedAt)
		}
		d := must[store.Domain](t)(s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: "rt.example", NextScanAt: when.Add(time.Hour)}))
		sameTime(t, "Domain.NextScanAt", d.NextScanAt, when.Add(time.Hour))
		check(t, s.Mute(ctx(t), u.ID, d.ID, when.Add(48*time.Hour)))
		d = must[store.Domain](t)(s.GetDomain(ctx(t), d.ID))
		sameTime(t, "Domain.MutedUntil", d.MutedUntil, when.Add(48*time.Hour))
		if !d.Muted(when) || d.Muted(when.Add(49*time.Hour)) {
			t.Fatalf("Muted(%v) wrong for MutedUntil %v", when, d.MutedUntil)
		}
	}
}

func testUsers(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	a := newUser(t, s, "  Alice@Example.TEST ")
	if a.Email != "alice@example.test" || a.ID == 0 {
		t.Fatalf("CreateUser = %+v, want a lower-cased address and an id", a)
	}
	_, err := s.CreateUser(ctx(t), "ALICE@example.test", "x")
	wantErr(t, "second account for the same address in another case", err, store.ErrConflict)
	got := must[store.User](t)(s.GetUserByEmail(ctx(t), "alice@EXAMPLE.test"))
	if got.ID != a.ID || got.PasswordPHC != a.PasswordPHC {
		t.Fatalf("GetUserByEmail = %+v, want %+v", got, a)
	}
	_, err = s.GetUserByEmail(ctx(t), "nobody@example.test")
	wantErr(t, "unknown address", err, store.ErrNotFound)
	_, err = s.GetUser(ctx(t), 987654)
	wantErr(t, "unknown id", err, store.ErrNotFound)

	c.Advance(time.Minute)
	check(t, s.SetPassword(ctx(t), a.ID, "$argon2id$v=19$m=47104,t=1,p=1$bmV3$bmV3"))
	check(t, s.MarkEmailVerified(ctx(t), a.ID))
	check(t, s.RecordLogin(ctx(t), a.ID))
	got = must[store.User](t)(s.GetUser(ctx(t), a.ID))
	if got.PasswordPHC != "$argon2id$v=19$m=47104,t=1,p=1$bmV3$bmV3" {
		t.Fatalf("SetPassword not stored: %q", got.PasswordPHC)
	}
	sameTime(t, "EmailVerifiedAt", got.EmailVerifiedAt, c.Now())
	sameTime(t, "LastLoginAt", got.LastLoginAt, c.Now())

	b := newUser(t, s, "bob@example.test")
	wantErr(t, "SetEmail to another account's address", s.SetEmail(ctx(t), b.ID, "ALICE@example.test"), store.ErrConflict)
	check(t, s.SetEmail(ctx(t), b.ID, "Robert@Example.test"))
	if got := must[store.User](t)(s.GetUser(ctx(t), b.ID)); got.Email != "robert@example.test" {
		t.Fatalf("SetEmail stored %q", got.Email)
	}
	check(t, s.SetDisabled(ctx(t), b.ID, true))
	if got := must[store.User](t)(s.GetUser(ctx(t), b.ID)); got.DisabledAt.IsZero() {
		t.Fatal("SetDisabled(true) left DisabledAt zero")
	}
	check(t, s.SetDisabled(ctx(t), b.ID, false))
	if got := must[store.User](t)(s.GetUser(ctx(t), b.ID)); !got.DisabledAt.IsZero() {
		t.Fatal("SetDisabled(false) kept DisabledAt")
	}
	wantErr(t, "SetPassword of an unknown user", s.SetPassword(ctx(t), 987654, "x"), store.ErrNotFound)

	// Pages in id order, without gaps or repeats.
	for i := range 5 {
		newUser(t, s, fmt.Sprintf("u%d@example.test", i))
	}
	var ids []store.UserID
	after := store.UserID(0)
	for {
		page := must[[]store.User](t)(s.ListUsers(ctx(t), after, 3))
		if len(page) == 0 {
			break
		}
		for _, u := range page {
			ids = append(ids, u.ID)
		}
		after = page[len(page)-1].ID
	}
	if len(ids) != 7 {
		t.Fatalf("ListUsers pages gave %d users, want 7", len(ids))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("ListUsers order %v", ids)
		}
	}
	check(t, s.DeleteUser(ctx(t), a.ID))
	_, err = s.GetUser(ctx(t), a.ID)
	wantErr(t, "deleted user", err, store.ErrNotFound)
	wantErr(t, "second delete", s.DeleteUser(ctx(t), a.ID), store.ErrNotFound)
	// The address is free again.
	newUser(t, s, "alice@example.test")
}

func testSessions(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "s@example.test")
	other := newUser(t, s, "o@example.test")
	exp := c.Now().Add(time.Hour)
	check(t, s.CommitSession(ctx(t), "tok-a", u.ID, []byte("data-a"), exp))
	check(t, s.CommitSession(ctx(t), "tok-b", u.ID, []byte("data-b"), exp))
	check(t, s.CommitSession(ctx(t), "tok-c", u.ID, []byte("data-c"), exp))
	check(t, s.CommitSession(ctx(t), "tok-o", other.ID, []byte("data-o"), exp.Add(24*time.Hour)))
	check(t, s.CommitSession(ctx(t), "tok-anon", 0, []byte("anon"), exp))

	data, found, err := s.FindSession(ctx(t), "tok-a")
	if err != nil || !found || string(data) != "data-a" {
		t.Fatalf("FindSession = %q, %v, %v", data, found, err)
	}
	// Commit overwrites data and expiry.
	check(t, s.CommitSession(ctx(t), "tok-a", u.ID, []byte("data-a2"), c.Now().Add(2*time.Hour)))
	if data, _, _ := s.FindSession(ctx(t), "tok-a"); string(data) != "data-a2" {
		t.Fatalf("after a second commit FindSession = %q", data)
	}
	if _, found, err := s.FindSession(ctx(t), "unknown"); found || err != nil {
		t.Fatalf("unknown token: found %v, err %v; want false, nil (scs contract)", found, err)
	}
	// Expiry: at the expiry instant the session is gone (scs treats
	// expiry as exclusive).
	c.Advance(time.Hour)
	if _, found, _ := s.FindSession(ctx(t), "tok-b"); found {
		t.Fatal("session found at its expiry time")
	}
	if _, found, _ := s.FindSession(ctx(t), "tok-a"); !found {
		t.Fatal("renewed session expired early")
	}
	check(t, s.DeleteSession(ctx(t), "tok-b"))
	check(t, s.DeleteSession(ctx(t), "never-existed"))

	// Log out everywhere else.
	check(t, s.CommitSession(ctx(t), "tok-c", u.ID, []byte("data-c"), c.Now().Add(time.Hour)))
	n := must[int](t)(s.DeleteUserSessions(ctx(t), u.ID, "tok-c"))
	if n != 1 { // tok-a (tok-b was deleted)
		t.Fatalf("DeleteUserSessions ended %d sessions, want 1", n)
	}
	if _, found, _ := s.FindSession(ctx(t), "tok-a"); found {
		t.Fatal("tok-a survived log out everywhere")
	}
	if _, found, _ := s.FindSession(ctx(t), "tok-c"); !found {
		t.Fatal("the current session was ended")
	}
	if _, found, _ := s.FindSession(ctx(t), "tok-o"); !found {
		t.Fatal("another user's session was ended")
	}
	if n := must[int](t)(s.DeleteUserSessions(ctx(t), u.ID, "")); n != 1 {
		t.Fatalf("DeleteUserSessions(all) ended %d, want 1", n)
	}
}

func testAPITokens(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "api@example.test")
	v := newUser(t, s, "api2@example.test")
	h1 := sha256.Sum256([]byte("mtls_abcd1234_secret1"))
	tok := must[store.APIToken](t)(s.CreateAPIToken(ctx(t), store.NewAPIToken{
		UserID: u.ID, Name: "ci", Prefix: "mtls_abcd1234", Hash: h1, Scopes: []store.Scope{store.ScopeRead, store.ScopeScan},
	}))
	if !tok.Has(store.ScopeScan) || tok.Has(store.ScopeManage) || !tok.LastUsedAt.IsZero() {
		t.Fatalf("CreateAPIToken = %+v", tok)
	}
	_, err := s.CreateAPIToken(ctx(t), store.NewAPIToken{UserID: v.ID, Name: "dup", Prefix: "x", Hash: h1})
	wantErr(t, "second token with the same hash", err, store.ErrConflict)

	used := must[store.APIToken](t)(s.UseAPIToken(ctx(t), h1))
	if used.ID != tok.ID || used.UserID != u.ID {
		t.Fatalf("UseAPIToken = %+v", used)
	}
	sameTime(t, "LastUsedAt", used.LastUsedAt, c.Now())
	first := used.LastUsedAt
	c.Advance(30 * time.Second)
	if used := must[store.APIToken](t)(s.UseAPIToken(ctx(t), h1)); !used.LastUsedAt.Equal(first) {
		t.Fatalf("LastUsedAt moved within a minute: %v", used.LastUsedAt)
	}
	c.Advance(31 * time.Second)
	if used := must[store.APIToken](t)(s.UseAPIToken(ctx(t), h1)); !used.LastUsedAt.Equal(store.UTC(c.Now())) {
		t.Fatalf("LastUsedAt = %v after a minute, want %v", used.LastUsedAt, c.Now())
	}
	_, err = s.UseAPIToken(ctx(t), sha256.Sum256([]byte("unknown")))
	wantErr(t, "unknown token", err, store.ErrNotFound)

	// A disabled user's tokens are refused, and work again once enabled.
	check(t, s.SetDisabled(ctx(t), u.ID, true))
	_, err = s.UseAPIToken(ctx(t), h1)
	wantErr(t, "token of a disabled user", err, store.ErrNotFound)
	check(t, s.SetDisabled(ctx(t), u.ID, false))
	must[store.APIToken](t)(s.UseAPIToken(ctx(t), h1))

	// Expiry.
	h2 := sha256.Sum256([]byte("short"))
	must[store.APIToken](t)(s.CreateAPIToken(ctx(t), store.NewAPIToken{UserID: u.ID, Name: "short", Prefix: "s", Hash: h2, ExpiresAt: c.Now().Add(time.Hour)}))
	must[store.APIToken](t)(s.UseAPIToken(ctx(t), h2))
	c.Advance(time.Hour)
	_, err = s.UseAPIToken(ctx(t), h2)
	wantErr(t, "expired token", err, store.ErrNotFound)

	// Revocation is per user.
	wantErr(t, "revoking another user's token", s.RevokeAPIToken(ctx(t), v.ID, tok.ID), store.ErrNotFound)
	must[store.APIToken](t)(s.UseAPIToken(ctx(t), h1))
	check(t, s.RevokeAPIToken(ctx(t), u.ID, tok.ID))
	_, err = s.UseAPIToken(ctx(t), h1)
	wantErr(t, "revoked token", err, store.ErrNotFound)
	list := must[[]store.APIToken](t)(s.ListAPITokens(ctx(t), u.ID))
	if len(list) != 2 || list[0].ID != tok.ID || list[0].RevokedAt.IsZero() || list[0].Prefix != "mtls_abcd1234" {
		t.Fatalf("ListAPITokens = %+v", list)
	}
	if list := must[[]store.APIToken](t)(s.ListAPITokens(ctx(t), v.ID)); len(list) != 0 {
		t.Fatalf("other user sees %d tokens", len(list))
	}
}

func testOneTimeTokens(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "ott@example.test")
	reset := sha256.Sum256([]byte("reset-link"))
	check(t, s.CreateOneTimeToken(ctx(t), store.PurposeResetPassword, reset, u.ID, u.Email, time.Hour))
	// Another purpose does not accept it.
	_, err := s.ConsumeOneTimeToken(ctx(t), store.PurposeVerifyEmail, reset)
	wantErr(t, "reset token used for verification", err, store.ErrNotFound)

	// Concurrent clicks: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, used := 0, 0
	for range 8 {
		wg.Go(func() {
			tok, err := s.ConsumeOneTimeToken(ctx(t), store.PurposeResetPassword, reset)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
				if tok.UserID != u.ID || tok.Email != u.Email {
					t.Errorf("consumed token = %+v", tok)
				}
			case errors.Is(err, store.ErrUsed):
				used++
			default:
				t.Errorf("ConsumeOneTimeToken: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || used != 7 {
		t.Fatalf("8 concurrent uses: %d succeeded, %d said used; want 1 and 7", wins, used)
	}

	// Expiry: valid until its expiry instant.
	verify := sha256.Sum256([]byte("verify-link"))
	check(t, s.CreateOneTimeToken(ctx(t), store.PurposeVerifyEmail, verify, u.ID, "New@Example.test", time.Hour))
	c.Advance(time.Hour)
	_, err = s.ConsumeOneTimeToken(ctx(t), store.PurposeVerifyEmail, verify)
	wantErr(t, "token at its expiry", err, store.ErrExpired)

	// Invitations have no user.
	inv := sha256.Sum256([]byte("invite"))
	check(t, s.CreateOneTimeToken(ctx(t), store.PurposeInvite, inv, 0, "guest@example.test", 24*time.Hour))
	got := must[store.OneTimeToken](t)(s.ConsumeOneTimeToken(ctx(t), store.PurposeInvite, inv))
	if got.UserID != 0 || got.Email != "guest@example.test" {
		t.Fatalf("invitation = %+v", got)
	}
	sameTime(t, "UsedAt", got.UsedAt, c.Now())

	// A changed password voids outstanding reset links.
	r2 := sha256.Sum256([]byte("reset-2"))
	check(t, s.CreateOneTimeToken(ctx(t), store.PurposeResetPassword, r2, u.ID, u.Email, time.Hour))
	check(t, s.DeleteOneTimeTokens(ctx(t), u.ID, store.PurposeResetPassword))
	_, err = s.ConsumeOneTimeToken(ctx(t), store.PurposeResetPassword, r2)
	wantErr(t, "voided reset link", err, store.ErrNotFound)
	wantErr(t, "same hash twice", s.CreateOneTimeToken(ctx(t), store.PurposeInvite, inv, 0, "x@example.test", time.Hour), store.ErrConflict)
}
