package password

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Known answers from the reference implementation of Argon2 (the argon2
// command of Debian's argon2 package, 0~20171227):
//
//	echo -n 'correct horse battery staple' | argon2 mailtls-salt-16b -id -t 2 -k 19456 -p 1 -l 32 -e
//	echo -n 'correct horse battery staple' | argon2 mailtls-salt-16b -id -t 3 -k 65536 -p 4 -l 32 -e
const (
	refPassword = "correct horse battery staple"
	refOWASP    = "$argon2id$v=19$m=19456,t=2,p=1$bWFpbHRscy1zYWx0LTE2Yg$xAYa8lsDUwjvOj2ynDr87Qrh///OKm9KV8JpQSC0iws"
	refRFC9106  = "$argon2id$v=19$m=65536,t=3,p=4$bWFpbHRscy1zYWx0LTE2Yg$MsnruAjFuGFM27+ncfi9W4k/pmhxqFeDuTTumpybz5Y"
)

// The stored form is a PHC string with OWASP's parameters (m=19 MiB, t=2,
// p=1), a 16-byte salt (RFC 9106 §3.1) and a 32-byte hash, and it equals
// what the reference implementation computes for the same salt.
func TestHashMatchesReference(t *testing.T) {
	h := &Hasher{Rand: bytes.NewReader([]byte("mailtls-salt-16b"))}
	got, err := h.Hash(context.Background(), refPassword)
	if err != nil {
		t.Fatal(err)
	}
	if got != refOWASP {
		t.Errorf("Hash = %s\nwant   %s", got, refOWASP)
	}
	p, err := Parse(got)
	if err != nil || p.Memory != 19456 || p.Time != 2 || p.Threads != 1 || len(p.Salt) != 16 || len(p.Key) != 32 {
		t.Errorf("parsed %+v, %v", p, err)
	}
}

func TestVerify(t *testing.T) {
	h := &Hasher{}
	ctx := context.Background()
	a, _ := h.Hash(ctx, "one password")
	b, _ := h.Hash(ctx, "one password")
	if a == b {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	cases := []struct {
		name, phc, password string
		ok, rehash          bool
	}{
		{"own hash", a, "one password", true, false},
		{"wrong password", a, "one passwore", false, false},
		{"empty password", a, "", false, false},
		{"reference, current parameters", refOWASP, refPassword, true, false},
		// RFC 9106 §4's first recommendation (64 MiB, t=3, p=4): it
		// verifies, and asks to be replaced by the current parameters.
		{"reference, other parameters", refRFC9106, refPassword, true, true},
		{"other parameters, wrong password", refRFC9106, "nope", false, false},
	}
	for _, c := range cases {
		ok, rehash, err := h.Verify(ctx, c.phc, c.password)
		if err != nil || ok != c.ok || rehash != c.rehash {
			t.Errorf("%s: ok %v rehash %v err %v, want %v %v", c.name, ok, rehash, err, c.ok, c.rehash)
		}
	}
	// A change of the Hasher's parameters makes every older hash ask for a
	// rehash at its next successful check.
	stronger := &Hasher{Params: Params{Memory: 32 * 1024, Time: 3, Threads: 1, SaltLen: 16, KeyLen: 32}}
	if ok, rehash, _ := stronger.Verify(ctx, a, "one password"); !ok || !rehash {
		t.Errorf("after a parameter change: ok %v rehash %v, want true true", ok, rehash)
	}
	if _, _, err := h.Verify(ctx, a, strings.Repeat("x", MaxLength+1)); !errors.Is(err, ErrTooLong) {
		t.Errorf("long password: %v", err)
	}
}

func TestParse(t *testing.T) {
	good := refOWASP
	if _, err := Parse(good); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"empty":                "",
		"bcrypt":               "$2b$12$abcdefghijklmnopqrstuuAbcdefghijklmnopqrstuvwxyz01234",
		"argon2i":              strings.Replace(good, "argon2id", "argon2i", 1),
		"version 16":           strings.Replace(good, "v=19", "v=16", 1),
		"no version":           strings.Replace(good, "$v=19", "", 1),
		"order":                strings.Replace(good, "m=19456,t=2,p=1", "t=2,m=19456,p=1", 1),
		"missing p":            strings.Replace(good, ",p=1", "", 1),
		"extra key":            strings.Replace(good, "p=1", "p=1,x=2", 1),
		"leading zero":         strings.Replace(good, "t=2", "t=02", 1),
		"huge memory":          strings.Replace(good, "m=19456", "m=4194304", 1),
		"memory below 8p":      strings.Replace(good, "m=19456,t=2,p=1", "m=7,t=2,p=1", 1),
		"zero time":            strings.Replace(good, "t=2", "t=0", 1),
		"many passes":          strings.Replace(good, "t=2", "t=1000", 1),
		"zero threads":         strings.Replace(good, "p=1", "p=0", 1),
		"threads overflow":     strings.Replace(good, "p=1", "p=257", 1),
		"negative":             strings.Replace(good, "t=2", "t=-2", 1),
		"padded salt":          strings.Replace(good, "bWFpbHRscy1zYWx0LTE2Yg", "bWFpbHRscy1zYWx0LTE2Yg==", 1),
		"short salt":           strings.Replace(good, "bWFpbHRscy1zYWx0LTE2Yg", "c2FsdA", 1),
		"short hash":           strings.Replace(good, "xAYa8lsDUwjvOj2ynDr87Qrh///OKm9KV8JpQSC0iws", "AAAA", 1),
		"url-safe alphabet":    strings.Replace(good, "///", "___", 1),
		"trailing field":       good + "$x",
		"no leading separator": strings.TrimPrefix(good, "$"),
		"giant":                good + strings.Repeat("A", 1000),
	}
	for name, s := range bad {
		if h, err := Parse(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %+v, %v; want ErrMalformed", name, h, err)
		}
	}
	if ok, _, err := (&Hasher{}).Verify(context.Background(), "$2b$12$x", "x"); ok || !errors.Is(err, ErrMalformed) {
		t.Errorf("Verify of a malformed hash: %v %v", ok, err)
	}
}

// FuzzParse: any string is either refused or a hash within the bounds
// that formats back to the same string.
func FuzzParse(f *testing.F) {
	f.Add(refOWASP)
	f.Add(refRFC9106)
	f.Add("$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=,t=,p=$$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if h.Memory > MaxMemory || h.Time > MaxTime || h.Threads > MaxThreads || h.Time < 1 || h.Threads < 1 {
			t.Fatalf("out of bounds: %+v", h)
		}
		if h.String() != s {
			t.Fatalf("round trip: %q → %q", s, h.String())
		}
	})
}

// Dummy costs one Argon2id computation with the current parameters, as a
// failed Verify does, and never matches.
func TestDummy(t *testing.T) {
	h := &Hasher{}
	ctx := context.Background()
	phc, _ := h.Hash(ctx, "pw")
	before := h.Count()
	h.Verify(ctx, phc, "wrong")
	h.Dummy(ctx, "wrong")
	if n := h.Count() - before; n != 2 {
		t.Errorf("Verify + Dummy did %d computations, want 2", n)
	}
	if h.dummy.Params != h.Params {
		t.Errorf("the dummy has parameters %+v, not the hasher's %+v", h.dummy.Params, h.Params)
	}
	if err := h.Dummy(ctx, strings.Repeat("x", 10*MaxLength)); err != nil {
		t.Errorf("a long password: %v", err)
	}
}

// At most MaxConcurrent hashes run at once; a caller waiting for a slot
// gives up when its context ends.
func TestConcurrencyBound(t *testing.T) {
	h := &Hasher{MaxConcurrent: 2, Params: Params{Memory: 8 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}}
	h.init()
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Observe the semaphore's occupancy while hashing.
			done := make(chan struct{})
			go func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					n := int32(len(h.sem))
					if n > peak.Load() {
						peak.Store(n)
					}
					running.Store(n)
					time.Sleep(50 * time.Microsecond)
				}
			}()
			h.Hash(context.Background(), "pw")
			close(done)
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 2 {
		t.Errorf("%d hashes ran at once, bound 2", p)
	}
	// With every slot taken, a caller with a deadline gives up.
	h.sem <- struct{}{}
	h.sem <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.Hash(ctx, "pw"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a slot: %v", err)
	}
	<-h.sem
	<-h.sem
}
