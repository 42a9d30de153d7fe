package store

import (
	"fmt"
	"testing"
	"time"
)

// NextScan spreads domains over the interval, keeps each on its own slot,
// returns a time strictly after t on a whole microsecond, and after any
// downtime gives the first slot after t (one run, not one per missed slot).
func TestNextScan(t *testing.T) {
	day := 24 * time.Hour
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	buckets := make([]int, 144) // 10-minute windows
	const n = 10000
	for i := range n {
		name := fmt.Sprintf("domain-%d.example", i)
		next := NextScan(name, day, t0)
		if !next.After(t0) || next.Sub(t0) > day || next.Nanosecond()%1000 != 0 {
			t.Fatalf("NextScan(%s, %v) = %v", name, t0, next)
		}
		// Same slot every day, and the first slot after a long downtime.
		if again := NextScan(name, day, next); again.Sub(next) != day {
			t.Fatalf("%s: slot after %v is %v, want one day later", name, next, again)
		}
		late := next.Add(10*day + time.Hour)
		if got := NextScan(name, day, late); got.Sub(late) > day || got.Sub(next)%day != 0 {
			t.Fatalf("%s: after downtime NextScan = %v (slot %v)", name, got, next)
		}
		buckets[next.Sub(t0)/(10*time.Minute)]++
	}
	// Issue 11 target: no 10-minute window with more than twice its share.
	share := n / len(buckets)
	for i, b := range buckets {
		if b > 2*share {
			t.Fatalf("window %d has %d of %d domains (share %d)", i, b, n, share)
		}
	}
	if got := NextScan("x", 0, t0); got.Sub(t0) > DefaultInterval {
		t.Fatalf("zero interval: %v", got)
	}
	// Before 1970 too.
	old := time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := NextScan("x", day, old); !got.After(old) || got.Sub(old) > day {
		t.Fatalf("NextScan before the epoch = %v", got)
	}
}

func TestRetryPolicy(t *testing.T) {
	p := RetryPolicy{Base: 30 * time.Second, Max: time.Hour, GiveUpAfter: 24 * time.Hour}
	created := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		attempts int
		after    time.Duration
		want     time.Duration // wait; -1: give up
	}{
		{1, 0, 30 * time.Second},
		{2, time.Minute, time.Minute},
		{3, 2 * time.Minute, 2 * time.Minute},
		{8, 3 * time.Hour, time.Hour},
		{30, 10 * time.Hour, time.Hour},
		{40, 23*time.Hour + 30*time.Minute, -1},
	} {
		now := created.Add(tc.after)
		got := p.Next(created, tc.attempts, now)
		if tc.want < 0 {
			if !got.IsZero() {
				t.Errorf("attempt %d at +%v: retry at %v, want give up", tc.attempts, tc.after, got)
			}
			continue
		}
		if got.Sub(now) != tc.want {
			t.Errorf("attempt %d: wait %v, want %v", tc.attempts, got.Sub(now), tc.want)
		}
	}
}

func TestUTC(t *testing.T) {
	in := time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.FixedZone("X", 7200))
	got := UTC(in)
	if got.Location() != time.UTC || got.Nanosecond() != 123456000 || !got.Equal(in.Truncate(time.Microsecond)) {
		t.Fatalf("UTC(%v) = %v", in, got)
	}
	if !UTC(time.Time{}).IsZero() {
		t.Fatal("UTC of zero is not zero")
	}
}
