package bulk

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// cache is a bounded, expiring map whose values are computed once however
// many callers ask at the same time (single flight). The computation runs
// in a goroutine of its own, so a caller whose context ends stops waiting
// without cutting the computation short for the others; the computation is
// bounded by the deadline its function sets itself.
type cache[K comparable, V any] struct {
	max int // completed entries kept; the least recently used go first
	now func() time.Time
	wg  *sync.WaitGroup // the computations; nil: not waited for

	mu  sync.Mutex
	m   map[K]*entry[K, V]
	lru *list.List // of *entry, completed and stored entries only

	computed atomic.Int64 // calls of fn
	shared   atomic.Int64 // answers served without calling fn
}

type entry[K comparable, V any] struct {
	key     K
	done    chan struct{} // closed when val is set
	val     V
	expires time.Time
	elem    *list.Element // nil while in flight or when not stored
}

func newCache[K comparable, V any](max int, now func() time.Time) *cache[K, V] {
	if now == nil {
		now = time.Now
	}
	return &cache[K, V]{max: max, now: now, m: map[K]*entry[K, V]{}, lru: list.New()}
}

// get returns the value for k: a stored one that has not expired, the
// result of a computation in flight, or the result of fn, which returns the
// value and how long it may be kept (0 or less: not stored, only shared
// with the callers already waiting). ok is false when ctx ended first.
func (c *cache[K, V]) get(ctx context.Context, k K, fn func() (V, time.Duration)) (v V, ok bool) {
	c.mu.Lock()
	e := c.m[k]
	if e != nil && e.elem != nil && !c.now().Before(e.expires) {
		c.removeLocked(e)
		e = nil
	}
	switch {
	case e == nil:
		e = &entry[K, V]{key: k, done: make(chan struct{})}
		c.m[k] = e
		c.computed.Add(1)
		if c.wg != nil {
			c.wg.Go(func() { c.compute(e, fn) })
		} else {
			go c.compute(e, fn)
		}
	case e.elem != nil:
		c.lru.MoveToFront(e.elem)
		c.shared.Add(1)
		c.mu.Unlock()
		return e.val, true
	default:
		c.shared.Add(1)
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.val, true
	case <-ctx.Done():
		return v, false
	}
}

func (c *cache[K, V]) compute(e *entry[K, V], fn func() (V, time.Duration)) {
	v, keep := fn()
	c.mu.Lock()
	e.val = v
	if keep > 0 && c.max > 0 {
		e.expires = c.now().Add(keep)
		e.elem = c.lru.PushFront(e)
		for c.lru.Len() > c.max {
			c.removeLocked(c.lru.Back().Value.(*entry[K, V]))
		}
	} else if c.m[e.key] == e {
		delete(c.m, e.key)
	}
	c.mu.Unlock()
	close(e.done)
}

// removeLocked forgets a stored entry; the caller holds c.mu.
func (c *cache[K, V]) removeLocked(e *entry[K, V]) {
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
	}
	if c.m[e.key] == e {
		delete(c.m, e.key)
	}
}

// len returns the number of stored and in-flight entries.
func (c *cache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
