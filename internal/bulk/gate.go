package bulk

import (
	"context"
	"sync"
	"time"
)

// Politeness defaults (docs/bulk.md).
const (
	// DefaultPerAddress is how many probes or policy fetches may be under
	// way at once to one destination address.
	DefaultPerAddress = 2
	// DefaultAddressInterval is the least time between the starts of two
	// connections to one address (at most 10 new ones a second).
	DefaultAddressInterval = 100 * time.Millisecond
	// minBackoff and maxBackoff bound the extra wait after a server
	// answered 421 or tarpitted (RFC 5321 §4.5.4.1: a client that is told
	// "try again later" waits before it does).
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// Gate spaces out the connections to each destination address: at most Max
// at once, starts at least Interval apart, and more apart after the server
// answered 421 or tarpitted (see release). One slow address holds back
// only the work that goes to it. A Gate is safe for concurrent use.
type Gate struct {
	Max      int           // 0 means DefaultPerAddress
	Interval time.Duration // 0 means DefaultAddressInterval; negative means none

	mu      sync.Mutex
	addrs   map[string]*addrGate
	sweepAt int
	peak    int // the most operations seen at once on one address
}

type addrGate struct {
	busy, waiting int
	next          time.Time     // no start before this
	backoff       time.Duration // extra spacing after a 421 or a tarpit
	wake          chan struct{} // closed (and replaced) when a slot frees
}

func (g *Gate) max() int {
	if g.Max > 0 {
		return g.Max
	}
	return DefaultPerAddress
}

func (g *Gate) interval() time.Duration {
	switch {
	case g.Interval < 0:
		return 0
	case g.Interval == 0:
		return DefaultAddressInterval
	}
	return g.Interval
}

// Acquire waits for addr's turn and returns the function that gives the
// slot back; it fails with ctx's error when ctx ends first. Call release
// with slow true when the server answered 421 (or another 4xx greeting) or
// let the connection time out: the address is then spaced out further
// (doubling from one second up to 30 seconds) until an operation goes well.
func (g *Gate) Acquire(ctx context.Context, addr string) (release func(slow bool), err error) {
	g.mu.Lock()
	if g.addrs == nil {
		g.addrs = map[string]*addrGate{}
	}
	a := g.addrs[addr]
	if a == nil {
		g.sweepLocked()
		a = &addrGate{wake: make(chan struct{})}
		g.addrs[addr] = a
	}
	a.waiting++
	for {
		now := time.Now()
		if a.busy < g.max() && !now.Before(a.next) {
			a.busy++
			a.waiting--
			a.next = now.Add(g.interval() + a.backoff)
			g.peak = max(g.peak, a.busy)
			g.mu.Unlock()
			return g.releaser(a), nil
		}
		wake := a.wake
		var timer *time.Timer
		var fire <-chan time.Time
		if a.busy < g.max() {
			timer = time.NewTimer(a.next.Sub(now))
			fire = timer.C
		}
		g.mu.Unlock()
		select {
		case <-wake:
		case <-fire:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		g.mu.Lock()
		if ctx.Err() != nil {
			a.waiting--
			g.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

func (g *Gate) releaser(a *addrGate) func(bool) {
	var once sync.Once
	return func(slow bool) {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			a.busy--
			if slow {
				a.backoff = min(max(2*a.backoff, minBackoff), maxBackoff)
				a.next = later(a.next, time.Now().Add(a.backoff))
			} else {
				a.backoff = 0
			}
			close(a.wake)
			a.wake = make(chan struct{})
		})
	}
}

// sweepLocked forgets idle addresses whose spacing has passed, so that the
// map does not grow with every address a long run meets. It runs when the
// map has doubled since the last sweep. The caller holds g.mu.
func (g *Gate) sweepLocked() {
	if len(g.addrs) < max(g.sweepAt, 1024) {
		return
	}
	now := time.Now()
	for k, a := range g.addrs {
		if a.busy == 0 && a.waiting == 0 && !now.Before(a.next) {
			delete(g.addrs, k)
		}
	}
	g.sweepAt = 2 * len(g.addrs)
}

// Peak returns the most operations that were under way at once to one
// address.
func (g *Gate) Peak() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
