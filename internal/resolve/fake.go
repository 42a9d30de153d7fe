package resolve

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Fake is a [Resolver] that answers from recorded Answers: a map-based
// stand-in for tests of consumers, and the replay half of a saved scan. It
// sends nothing. Its methods are safe for concurrent use.
type Fake struct {
	// Missing is the status for questions with no recorded answer; ""
	// means StatusNXDomain. Replaying a saved scan wants StatusError, so
	// that a question the scan did not ask is not mistaken for absence.
	Missing Status

	mu      sync.Mutex
	answers map[fakeKey]*Answer
}

type fakeKey struct{ name, typ string }

// NewFake returns a Fake holding answers (see [Fake.Add]).
func NewFake(answers ...*Answer) *Fake {
	f := &Fake{}
	for _, a := range answers {
		f.Add(a)
	}
	return f
}

// Add records a copy of a as the answer for (a.Name, a.Type), replacing any
// earlier one. a.Name may be in any case, with or without trailing dot.
func (f *Fake) Add(a *Answer) {
	name := a.Name
	if c, err := canonicalName(name); err == nil {
		name = c
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.answers == nil {
		f.answers = make(map[fakeKey]*Answer)
	}
	f.answers[fakeKey{name, a.Type}] = a.clone()
}

// Lookup returns a copy of the recorded answer for name and qtype, with
// Name set to the canonical queried name. Invalid names and a done ctx are
// handled as [Client.Lookup] handles them.
func (f *Fake) Lookup(ctx context.Context, name string, qtype uint16) *Answer {
	start := time.Now()
	typ := typeString(qtype)
	a := f.lookup(ctx, name, typ)
	a.Duration = time.Since(start)
	a.DurationMS = durationMS(a.Duration)
	return a
}

func (f *Fake) lookup(ctx context.Context, name, typ string) *Answer {
	qname, err := canonicalName(name)
	if err != nil {
		return &Answer{Name: displayName(name), Type: typ, Status: StatusError, Error: fmt.Sprintf("invalid name %q: %v", name, err)}
	}
	if ctx != nil && ctx.Err() != nil {
		st := StatusTimeout
		msg := "timeout (context deadline)"
		if errors.Is(ctx.Err(), context.Canceled) {
			st, msg = StatusError, "canceled"
		}
		return &Answer{Name: qname, Type: typ, Status: st, Error: msg}
	}
	f.mu.Lock()
	rec, ok := f.answers[fakeKey{qname, typ}]
	if ok {
		rec = rec.clone()
	}
	f.mu.Unlock()
	if ok {
		rec.Name = qname
		return rec
	}
	a := &Answer{Name: qname, Type: typ, Status: f.Missing}
	switch a.Status {
	case "", StatusNXDomain:
		a.Status, a.Rcode = StatusNXDomain, "NXDOMAIN"
	case StatusNoData:
		a.Rcode = "NOERROR"
	default:
		a.Error = "no recorded answer"
	}
	return a
}
