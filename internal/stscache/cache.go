package stscache

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxEntries bounds the entries kept in memory.
const DefaultMaxEntries = 100000

const shardCount = 64

// Options configure a Cache.
type Options struct {
	// MaxEntries bounds the entries in memory (least recently used go
	// first); 0 means DefaultMaxEntries.
	MaxEntries int
	// Path is the SQLite file; "" keeps the cache in memory only.
	Path string
	// FlushInterval is how often changed policies are written; 0: 1s.
	FlushInterval time.Duration
	Now           func() time.Time
	Log           *slog.Logger
}

// Cache is the policy cache. It is safe for concurrent use.
type Cache struct {
	shards     [shardCount]shard
	seed       maphash.Seed
	store      *Store
	now        func() time.Time
	log        *slog.Logger
	flushEvery time.Duration

	// max bounds the entries over all shards; count is how many there are.
	// A new entry beyond max evicts the least recently used entry of its
	// own shard: shards are chosen by hash, so this approximates a global
	// LRU without a global lock.
	max   int64
	count atomic.Int64
	clock atomic.Uint64 // ticks at every use, for comparing shards' LRU ends

	mu    sync.Mutex
	dirty map[string]*Entry // policies to write; nil value: delete
	purge bool              // delete everything before writing dirty
}

type shard struct {
	c     *Cache
	mu    sync.Mutex
	items map[string]*node
	head  node // sentinel: head.next is the most recently used
}

type node struct {
	e          *Entry
	prev, next *node
	used       uint64 // the cache's clock at the last use
}

// Open makes a cache and, with a Path, opens (or creates) the SQLite
// file and loads the unexpired policies, most recently fetched first, up
// to MaxEntries.
func Open(o Options) (*Cache, error) {
	c := &Cache{seed: maphash.MakeSeed(), now: o.Now, log: o.Log, flushEvery: o.FlushInterval, dirty: map[string]*Entry{}}
	if c.now == nil {
		c.now = time.Now
	}
	if c.flushEvery <= 0 {
		c.flushEvery = time.Second
	}
	max := o.MaxEntries
	if max <= 0 {
		max = DefaultMaxEntries
	}
	c.max = int64(max)
	for i := range c.shards {
		s := &c.shards[i]
		s.c = c
		s.items = map[string]*node{}
		s.head.next, s.head.prev = &s.head, &s.head
	}
	if o.Path == "" {
		return c, nil
	}
	st, err := OpenStore(o.Path)
	if err != nil {
		return nil, err
	}
	c.store = st
	entries, err := st.Load(context.Background(), c.now().Unix(), max)
	if err != nil {
		st.Close()
		return nil, err
	}
	for _, e := range entries {
		c.loaded(e)
	}
	return c, nil
}

func (c *Cache) shard(domain string) *shard {
	return &c.shards[maphash.String(c.seed, domain)%shardCount]
}

// Get returns the entry of domain, or nil. A domain evicted from memory is
// read back from the file.
func (c *Cache) Get(domain string) *Entry {
	s := c.shard(domain)
	s.mu.Lock()
	if n, ok := s.items[domain]; ok {
		s.moveFront(n)
		e := n.e
		s.mu.Unlock()
		return e
	}
	s.mu.Unlock()
	if c.store == nil {
		return nil
	}
	c.mu.Lock()
	if e, ok := c.dirty[domain]; ok || c.purge {
		c.mu.Unlock()
		return e // written but not flushed yet (or deleted)
	}
	c.mu.Unlock()
	e, err := c.store.Get(context.Background(), domain, c.now().Unix())
	if err != nil {
		if c.log != nil {
			c.log.Warn("policy cache: reading the file", "domain", domain, "error", err)
		}
		return nil
	}
	if e != nil {
		c.loaded(e)
	}
	return e
}

// Peek returns the entry of domain in memory without marking it used.
func (c *Cache) Peek(domain string) *Entry {
	s := c.shard(domain)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.items[domain]; ok {
		return n.e
	}
	return nil
}

// Put stores e in place of the domain's entry.
func (c *Cache) Put(e *Entry) {
	c.Update(e.Domain, func(*Entry) *Entry { return e })
}

// Update replaces the entry of domain with f(old) (old may be nil) under
// the domain's lock, so that concurrent updates of one domain (a policy
// discovery and a DANE lookup) never lose each other's fields. f must be
// quick, must not modify old and must not call the cache; a nil result
// leaves the entry alone. When the policy in force changed (or its check
// time), the entry is written to the file at the next flush.
func (c *Cache) Update(domain string, f func(old *Entry) *Entry) *Entry {
	e := c.update(domain, f, true)
	c.trim(domain)
	return e
}

// trim evicts while there are more than max entries: each time the least
// recently used entry among the LRU ends of four shards (the shard of
// domain and the next three), so eviction approximates a global LRU
// without a global lock; the entry just added is never taken.
func (c *Cache) trim(domain string) {
	start := int(maphash.String(c.seed, domain) % shardCount)
	for tries := 0; c.count.Load() > c.max && tries < 2*shardCount; tries++ {
		var best *shard
		var bestUsed uint64
		for k := range 4 {
			s := &c.shards[(start+tries+k)%shardCount]
			s.mu.Lock()
			if lru := s.head.prev; lru != &s.head && lru.e.Domain != domain && (best == nil || lru.used < bestUsed) {
				best, bestUsed = s, lru.used
			}
			s.mu.Unlock()
		}
		if best == nil {
			continue
		}
		best.mu.Lock()
		if lru := best.head.prev; lru != &best.head && lru.e.Domain != domain {
			best.unlink(lru)
			delete(best.items, lru.e.Domain)
			c.count.Add(-1)
		}
		best.mu.Unlock()
	}
}

// loaded puts an entry read from the file, unless the domain has one.
func (c *Cache) loaded(e *Entry) {
	c.update(e.Domain, func(old *Entry) *Entry {
		if old != nil {
			return nil
		}
		return e
	}, false)
	c.trim(e.Domain)
}

func (c *Cache) update(domain string, f func(old *Entry) *Entry, persist bool) *Entry {
	s := c.shard(domain)
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.items[domain]
	var old *Entry
	if ok {
		old = n.e
	}
	e := f(old)
	if e == nil {
		return old
	}
	e.Domain = domain
	if old == nil || old.Policy != e.Policy {
		// A new policy: copy its strings before anyone can see it.
		e.Policy = compact(e.Policy)
	}
	if ok {
		n.e = e
		s.moveFront(n)
	} else {
		n = &node{e: e}
		s.items[domain] = n
		s.insertFront(n)
		c.count.Add(1)
	}
	if persist {
		c.markDirty(old, e)
	}
	return e
}

func (c *Cache) markDirty(old, e *Entry) {
	if c.store == nil {
		return
	}
	if old != nil && old.Policy == e.Policy && old.ID == e.ID && old.FetchedAt == e.FetchedAt && old.CheckedAt == e.CheckedAt {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.Policy != nil {
		c.dirty[e.Domain] = e
	} else if old != nil && old.Policy != nil {
		c.dirty[e.Domain] = nil // the policy is gone
	}
}

func (s *shard) unlink(n *node) {
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
}

func (s *shard) insertFront(n *node) {
	n.used = s.c.clock.Add(1)
	n.prev, n.next = &s.head, s.head.next
	s.head.next.prev = n
	s.head.next = n
}

func (s *shard) moveFront(n *node) {
	n.used = s.c.clock.Add(1)
	if s.head.next == n {
		return
	}
	s.unlink(n)
	s.insertFront(n)
}

// Delete removes domain from memory and the file.
func (c *Cache) Delete(domain string) {
	s := c.shard(domain)
	s.mu.Lock()
	if n, ok := s.items[domain]; ok {
		s.unlink(n)
		delete(s.items, domain)
		c.count.Add(-1)
	}
	s.mu.Unlock()
	if c.store != nil {
		c.mu.Lock()
		c.dirty[domain] = nil
		c.mu.Unlock()
	}
}

// Purge removes every entry from memory and the file.
func (c *Cache) Purge() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		c.count.Add(-int64(len(s.items)))
		s.items = map[string]*node{}
		s.head.next, s.head.prev = &s.head, &s.head
		s.mu.Unlock()
	}
	if c.store != nil {
		c.mu.Lock()
		c.dirty = map[string]*Entry{}
		c.purge = true
		c.mu.Unlock()
	}
}

// Len is the number of entries in memory.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.items)
		s.mu.Unlock()
	}
	return n
}

// Entries returns a snapshot of the entries in memory (for the refresh
// scheduler and dumps); it does not change their recency.
func (c *Cache) Entries() []*Entry {
	var out []*Entry
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, n := range s.items {
			out = append(out, n.e)
		}
		s.mu.Unlock()
	}
	return out
}

// Flush writes the changed policies to the file.
func (c *Cache) Flush(ctx context.Context) error {
	if c.store == nil {
		return nil
	}
	c.mu.Lock()
	dirty, purge := c.dirty, c.purge
	c.dirty, c.purge = map[string]*Entry{}, false
	c.mu.Unlock()
	if !purge && len(dirty) == 0 {
		return nil
	}
	err := c.store.Write(ctx, purge, dirty)
	if err != nil {
		// Keep what was not written for the next flush; newer changes win.
		c.mu.Lock()
		for d, e := range dirty {
			if _, newer := c.dirty[d]; !newer {
				c.dirty[d] = e
			}
		}
		c.purge = c.purge || purge
		c.mu.Unlock()
	}
	return err
}

// Run flushes changes every FlushInterval and deletes expired policies
// from the file every hour, until ctx ends; then it flushes once more.
func (c *Cache) Run(ctx context.Context) {
	if c.store == nil {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(c.flushEvery)
	defer t.Stop()
	lastClean := time.Time{}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := c.Flush(fctx); err != nil && c.log != nil {
				c.log.Error("policy cache: final write failed", "error", err)
			}
			cancel()
			return
		case <-t.C:
			if err := c.Flush(ctx); err != nil && c.log != nil {
				c.log.Warn("policy cache: write failed; retrying", "error", err)
			}
			if now := c.now(); now.Sub(lastClean) > time.Hour {
				lastClean = now
				if _, err := c.store.DeleteExpired(ctx, now.Unix()); err != nil && c.log != nil {
					c.log.Warn("policy cache: deleting expired policies", "error", err)
				}
			}
		}
	}
}

// Close flushes and closes the file.
func (c *Cache) Close() error {
	if c.store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Flush(ctx)
	if cerr := c.store.Close(); err == nil {
		err = cerr
	}
	return err
}
