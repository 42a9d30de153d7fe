package certstorage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/mailtls/mailtls/internal/lab"
)

// Two Postgres values on one database stand for two instances: each has
// its own connections and nothing in memory is shared.

// TestLockExcludes: a lock held by one instance is not taken by another
// (TryLock false, Lock waits) until it is released, and then it is.
func TestLockExcludes(t *testing.T) {
	t.Parallel()
	url := lab.NewPostgresDB(t)
	a := openPostgres(t, url, Options{LockPoll: 20 * time.Millisecond})
	b := openPostgres(t, url, Options{LockPoll: 20 * time.Millisecond})
	ctx := context.Background()
	const name = "issue_cert_mta-sts.example.test"

	if err := a.Lock(ctx, name); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, name); ok || err != nil {
		t.Fatalf("TryLock of a held lock: %v %v", ok, err)
	}
	// Within one process too: certmagic may ask twice for one name.
	if ok, err := a.TryLock(ctx, name); ok || err != nil {
		t.Fatalf("TryLock of a lock this process holds: %v %v", ok, err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := b.Lock(short, name)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held lock ended with %v, want the context's deadline", err)
	}
	// Another name is free.
	if ok, err := b.TryLock(ctx, "other"); !ok || err != nil {
		t.Fatalf("TryLock of a free lock: %v %v", ok, err)
	}
	if err := b.Unlock(ctx, "other"); err != nil {
		t.Fatal(err)
	}

	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, name) }()
	select {
	case err := <-got:
		t.Fatalf("Lock returned while the lock is held: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := a.Unlock(ctx, name); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Lock did not return after the holder unlocked")
	}
	if err := b.Unlock(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, name); err == nil {
		t.Error("Unlock of a lock not held succeeded")
	}
	// Released locks are taken again without counting as taken over.
	if sa, sb := a.Stats(), b.Stats(); sa != (Stats{Acquired: 1}) || sb != (Stats{Acquired: 2}) {
		t.Errorf("stats %+v and %+v", sa, sb)
	}
}

// TestLockMutualExclusion: many workers in two instances never hold one
// lock at the same time.
func TestLockMutualExclusion(t *testing.T) {
	t.Parallel()
	url := lab.NewPostgresDB(t)
	insts := []*Postgres{
		openPostgres(t, url, Options{LockPoll: 5 * time.Millisecond}),
		openPostgres(t, url, Options{LockPoll: 5 * time.Millisecond}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var inside, most, entries atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := insts[w%2]
			for range 5 {
				if err := s.Lock(ctx, "shared"); err != nil {
					errs <- err
					return
				}
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				entries.Add(1)
				time.Sleep(2 * time.Millisecond)
				inside.Add(-1)
				if err := s.Unlock(ctx, "shared"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if most.Load() != 1 || entries.Load() != 40 {
		t.Errorf("at most %d holders at once over %d entries, want 1 over 40", most.Load(), entries.Load())
	}
}

// TestLockLeaseExtended: a holder keeps its lock past the lease while it
// lives, because its lease is extended.
func TestLockLeaseExtended(t *testing.T) {
	t.Parallel()
	url := lab.NewPostgresDB(t)
	ttl := time.Second
	a := openPostgres(t, url, Options{LockTTL: ttl})
	b := openPostgres(t, url, Options{LockTTL: ttl})
	ctx := context.Background()
	if err := a.Lock(ctx, "long"); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(4 * ttl); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if ok, err := b.TryLock(ctx, "long"); ok || err != nil {
			t.Fatalf("the lock was taken while its holder lives: %v %v", ok, err)
		}
	}
	if err := a.Unlock(ctx, "long"); err != nil {
		t.Fatal(err)
	}
}

// TestLockLost: a holder whose lease ran out (it stalled) and was taken
// over learns so at Unlock, which leaves the new holder's lock alone.
func TestLockLost(t *testing.T) {
	t.Parallel()
	url := lab.NewPostgresDB(t)
	a := openPostgres(t, url, Options{})
	b := openPostgres(t, url, Options{})
	ctx := context.Background()
	if err := a.Lock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	// The stall: the lease ends without a's knowing.
	if _, err := a.pool.Exec(ctx, "UPDATE certmagic_locks SET expires = now() - interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "n"); !ok || err != nil {
		t.Fatalf("an expired lock was not taken over: %v %v", ok, err)
	}
	if err := a.Unlock(ctx, "n"); !errors.Is(err, ErrLockLost) {
		t.Errorf("Unlock of a lost lock: %v, want ErrLockLost", err)
	}
	if sa, sb := a.Stats(), b.Stats(); sa != (Stats{Acquired: 1, Lost: 1}) || sb != (Stats{Held: 1, Acquired: 1, TakenOver: 1}) {
		t.Errorf("stats: the stalled holder %+v, the new one %+v", sa, sb)
	}
	var owner string
	if err := b.pool.QueryRow(ctx, "SELECT owner FROM certmagic_locks WHERE name = 'n'").Scan(&owner); err != nil {
		t.Fatalf("the new holder's lock is gone: %v", err)
	}
	if ok, _ := a.TryLock(ctx, "n"); ok {
		t.Error("the lost lock could be taken again while the new holder has it")
	}
	if err := b.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
}

// holderEnv makes the test binary a lock holder (TestMain): it takes the
// lock named by the variable's value on MAILTLS_TEST_POSTGRES_URL's
// database with a short lease, says "locked", and waits to be killed.
const holderEnv = "CERTSTORAGE_TEST_HOLD"

// holderTTL is the lease of the killed holder.
const holderTTL = 2 * time.Second

func TestMain(m *testing.M) {
	if name := os.Getenv(holderEnv); name != "" {
		os.Exit(holdLock(name))
	}
	os.Exit(m.Run())
}

func holdLock(name string) int {
	ctx := context.Background()
	s, err := Open(ctx, os.Getenv("MAILTLS_TEST_POSTGRES_URL"), Options{LockTTL: holderTTL})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if err := s.Lock(ctx, name); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("locked")
	select {}
}

// TestLockHolderKilled: an instance SIGKILLed while it holds a lock (mid
// issuance) keeps it only until its lease runs out; then another takes
// it. The lease is not released at the kill (it is not tied to the
// connection): the first TryLock right after fails.
func TestLockHolderKilled(t *testing.T) {
	t.Parallel()
	url := lab.NewPostgresDB(t)
	b := openPostgres(t, url, Options{LockPoll: 50 * time.Millisecond})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"=issue_cert_killed.test", "MAILTLS_TEST_POSTGRES_URL="+url)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("the holder did not take the lock: %q %v", line, err)
	}
	// Let the holder extend its lease once, so that what expires is an
	// extended lease.
	time.Sleep(holderTTL / 2)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed := time.Now()

	ctx := context.Background()
	if ok, err := b.TryLock(ctx, "issue_cert_killed.test"); ok || err != nil {
		t.Fatalf("TryLock right after the kill: %v %v, want the dead holder's lease still live", ok, err)
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.Lock(wait, "issue_cert_killed.test"); err != nil {
		t.Fatalf("the lock of a killed holder was never taken over: %v", err)
	}
	t.Logf("taken over %v after the kill (lease %v)", time.Since(killed).Round(time.Millisecond), holderTTL)
	if st := b.Stats(); st.TakenOver != 1 || st.Held != 1 {
		t.Errorf("stats %+v, want one lock held, taken over", st)
	}
	if err := b.Unlock(ctx, "issue_cert_killed.test"); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentOpen: instances starting together on an empty database
// apply the migrations once (goose's advisory lock), and all start.
func TestConcurrentOpen(t *testing.T) {
	t.Parallel()
	url := lab.NewPostgresDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	insts := make([]*Postgres, 4)
	for i := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			insts[i], errs[i] = Open(ctx, url, Options{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		defer insts[i].Close()
	}
	var applied int
	if err := insts[0].pool.QueryRow(ctx, "SELECT count(*) FROM "+versionTable+" WHERE version_id > 0").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Errorf("%d migrations recorded, want 1 (each applied once)", applied)
	}
	// What one stores, the others read.
	if err := insts[1].Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, s := range insts {
		if v, err := s.Load(ctx, "k"); err != nil || string(v) != "v" {
			t.Errorf("load: %q %v", v, err)
		}
	}
}

// TestCanceledContext: every operation honours its context.
func TestCanceledContext(t *testing.T) {
	t.Parallel()
	s := newPostgres(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var st certmagic.Storage = s
	if err := st.Store(ctx, "k", []byte("v")); err == nil {
		t.Error("Store")
	}
	if _, err := st.Load(ctx, "k"); err == nil {
		t.Error("Load")
	}
	if err := st.Lock(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock: %v", err)
	}
	if ok, err := s.TryLock(ctx, "k"); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("TryLock: %v %v", ok, err)
	}
}
