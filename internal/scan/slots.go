package scan

import (
	"context"
	"net/netip"
	"slices"
	"sync"

	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// probeSlots decides when each SMTP probe may run: at most max at once,
// never two at once to the same IP address (one connection at a time per
// address, even when several MX hosts share it), and a free slot goes to
// the waiting probe with the lowest rank (the place of its address among
// its host's addresses), then the most preferred host, then the earliest.
// So when the budget is short, every MX host whose addresses are known gets
// one address probed before any host gets a second.
//
// A probe that is still waiting when the context ends never runs: the scan
// records it as not probed, not as a server that did not answer.
type probeSlots struct {
	ctx     context.Context
	mu      sync.Mutex
	cond    *sync.Cond
	free    int
	busy    map[netip.Addr]bool
	waiting []*probeTurn
	done    bool // ctx has ended
}

// probeTurn is one probe waiting for a slot.
type probeTurn struct {
	ip   netip.Addr
	rank int // 0 for the host's first address, 1 for its second, ...
	host int // the host's place in preference order
	seq  int // arrival order
}

// newProbeSlots returns slots for max probes at once; stop releases the
// watch on ctx.
func newProbeSlots(ctx context.Context, max int) (q *probeSlots, stop func() bool) {
	q = &probeSlots{ctx: ctx, free: max, busy: map[netip.Addr]bool{}}
	q.cond = sync.NewCond(&q.mu)
	stop = context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.done = true
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	return q, stop
}

// add puts t in line. It is called when the probe is known, not when its
// goroutine gets to run, so that the order of the line does not depend on
// goroutine scheduling.
func (q *probeSlots) add(t *probeTurn) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waiting = append(q.waiting, t)
}

// wait blocks until t (added before) may run and reports true, or reports
// false when the context ended first.
func (q *probeSlots) wait(t *probeTurn) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.ended() && (q.free == 0 || q.next() != t) {
		q.cond.Wait()
	}
	q.waiting = slices.DeleteFunc(q.waiting, func(x *probeTurn) bool { return x == t })
	if q.ended() {
		return false
	}
	q.free--
	q.busy[t.ip] = true
	q.cond.Broadcast() // the next in line may take another free slot
	return true
}

// release gives back the slot of a probe that ran.
func (q *probeSlots) release(t *probeTurn) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.free++
	delete(q.busy, t.ip)
	q.cond.Broadcast()
}

func (q *probeSlots) ended() bool { return q.done || smtpprobe.Ended(q.ctx) }

// next returns the waiting turn that goes first among those whose address
// is free, or nil. The caller holds q.mu.
func (q *probeSlots) next() *probeTurn {
	var best *probeTurn
	for _, t := range q.waiting {
		if q.busy[t.ip] {
			continue
		}
		if best == nil || t.before(best) {
			best = t
		}
	}
	return best
}

func (t *probeTurn) before(u *probeTurn) bool {
	if t.rank != u.rank {
		return t.rank < u.rank
	}
	if t.host != u.host {
		return t.host < u.host
	}
	return t.seq < u.seq
}
