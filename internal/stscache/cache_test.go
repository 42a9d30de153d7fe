package stscache

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func entry(domain, id string, fetched int64, maxAge int64) *Entry {
	return &Entry{Domain: domain, ID: id, FetchedAt: Sec(fetched), CheckedAt: Sec(fetched), Outcome: OutcomePolicy,
		Policy: &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeEnforce, MaxAge: maxAge, MX: []string{"mx." + domain, "*." + domain}}}
}

func TestLRUBound(t *testing.T) {
	c, err := Open(Options{MaxEntries: shardCount * 2, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10000 {
		c.Put(entry(fmt.Sprintf("d%d.test", i), "1", t0.Unix(), 86400))
		if i == 0 {
			continue
		}
		c.Get("d0.test") // kept recent
	}
	if n := c.Len(); n > shardCount*2 {
		t.Errorf("%d entries in memory, bound %d (STS-SND-17)", n, shardCount*2)
	}
	if c.Get("d0.test") == nil {
		t.Error("the most recently used entry was evicted")
	}
	if c.Get("d1.test") != nil {
		t.Error("an old entry survived 10000 newer ones in a 128-entry cache")
	}
}

func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	now := t0
	c, err := Open(Options{Path: path, MaxEntries: 1000, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	c.Put(entry("keep.test", "a1", t0.Unix(), 86400))
	c.Put(entry("gone.test", "b1", t0.Unix(), 86400))
	c.Put(entry("short.test", "c1", t0.Unix(), 60))
	c.Put(&Entry{Domain: "none.test", Outcome: OutcomeNoRecord, At: Sec(t0.Unix())}) // negative: memory only
	c.Delete("gone.test")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	now = t0.Add(time.Hour) // short.test has expired
	c, err = Open(Options{Path: path, MaxEntries: 1000, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := c.Peek("keep.test")
	if e == nil || e.ID != "a1" || e.Policy.Mode != mtasts.ModeEnforce || len(e.Policy.MX) != 2 || int64(e.FetchedAt) != t0.Unix() {
		t.Fatalf("restart lost the policy: %+v", e)
	}
	for _, d := range []string{"gone.test", "short.test", "none.test"} {
		if c.Get(d) != nil {
			t.Errorf("%s came back after the restart", d)
		}
	}

	c.Purge()
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.store.Count(context.Background()); n != 0 {
		t.Errorf("purge left %d rows", n)
	}
}

func TestEvictedEntryReadBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := Open(Options{Path: path, MaxEntries: shardCount, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 2000 {
		c.Put(entry(fmt.Sprintf("d%d.test", i), fmt.Sprint(i), t0.Unix(), 86400))
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Peek("d5.test") != nil {
		t.Fatal("test setup: d5 should have been evicted from memory")
	}
	if e := c.Get("d5.test"); e == nil || e.ID != "5" {
		t.Errorf("an evicted policy must be read back from the file, got %+v", e)
	}
}
