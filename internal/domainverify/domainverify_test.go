package domainverify

import (
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
)

func txt(strs ...string) resolve.Record { return resolve.Record{Type: "TXT", Text: strs} }

// TestCheck: only our token at our name verifies; a temporary failure is
// "could not check", never absent (the brief's "temporary is not absent").
func TestCheck(t *testing.T) {
	const tok = "abc234"
	tests := []struct {
		name string
		ans  *resolve.Answer
		want Outcome
	}{
		{"found", &resolve.Answer{Status: resolve.StatusOK, Records: []resolve.Record{txt("v=spf1 -all"), txt(Value(tok))}}, Found},
		{"split into strings", &resolve.Answer{Status: resolve.StatusOK, Records: []resolve.Record{txt("mailtls-verify=", "abc234")}}, Found},
		{"another account's token", &resolve.Answer{Status: resolve.StatusOK, Records: []resolve.Record{txt(Value("other"))}}, Absent},
		{"token without prefix", &resolve.Answer{Status: resolve.StatusOK, Records: []resolve.Record{txt(tok)}}, Absent},
		{"nxdomain", &resolve.Answer{Status: resolve.StatusNXDomain}, Absent},
		{"nodata", &resolve.Answer{Status: resolve.StatusNoData}, Absent},
		{"servfail", &resolve.Answer{Status: resolve.StatusServFail}, Unknown},
		{"timeout", &resolve.Answer{Status: resolve.StatusTimeout}, Unknown},
		{"error", &resolve.Answer{Status: resolve.StatusError}, Unknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.ans.Name, tc.ans.Type = "_mailtls-verify.example.com", "TXT"
			f := resolve.NewFake(tc.ans)
			if got, _ := Check(t.Context(), f, "example.com", tok); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if n := Name("example.com"); n != "_mailtls-verify.example.com" {
		t.Errorf("Name = %q", n)
	}
}

// TestApply: found verifies; absence lapses a verification only after
// Lapse; unknown changes nothing.
func TestApply(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	v := Apply(store.DomainVerification{Token: "x"}, Unknown, t0)
	if v.Verified() || !v.CheckedAt.IsZero() {
		t.Fatalf("unknown changed it: %+v", v)
	}
	v = Apply(v, Found, t0)
	if !v.VerifiedAt.Equal(t0) || !v.CheckedAt.Equal(t0) {
		t.Fatalf("found: %+v", v)
	}
	v = Apply(v, Found, t0.Add(time.Hour))
	if !v.VerifiedAt.Equal(t0) {
		t.Fatalf("a second find moved VerifiedAt: %+v", v)
	}
	v = Apply(v, Absent, t0.Add(24*time.Hour))
	if !v.Verified() || !v.MissingSince.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("one absence: %+v", v)
	}
	v = Apply(v, Unknown, t0.Add(24*time.Hour+Lapse))
	if !v.Verified() {
		t.Fatal("a failed lookup lapsed the verification")
	}
	v = Apply(v, Absent, t0.Add(24*time.Hour+Lapse-time.Second))
	if !v.Verified() {
		t.Fatal("lapsed before Lapse")
	}
	v = Apply(v, Absent, t0.Add(24*time.Hour+Lapse))
	if v.Verified() {
		t.Fatalf("absent for Lapse: still verified: %+v", v)
	}
	v = Apply(v, Found, t0.Add(30*24*time.Hour))
	if !v.VerifiedAt.Equal(t0.Add(30*24*time.Hour)) || !v.MissingSince.IsZero() {
		t.Fatalf("found again: %+v", v)
	}
}

func TestNewToken(t *testing.T) {
	a, b := NewToken(), NewToken()
	if a == b || len(a) != 32 {
		t.Fatalf("tokens %q %q", a, b)
	}
}
