package resolver

import "sync"

// flight coalesces concurrent work on one key: the first caller runs it,
// later callers wait for the same result (style-anchors §3 habit 21).
type flight[T any] struct {
	mu    sync.Mutex
	calls map[string]*call[T]
}

type call[T any] struct {
	done chan struct{}
	val  T
}

// start returns the call for key and whether the caller must run it (and
// then call finish).
func (f *flight[T]) start(key string) (*call[T], bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.calls[key]; ok {
		return c, false
	}
	if f.calls == nil {
		f.calls = map[string]*call[T]{}
	}
	c := &call[T]{done: make(chan struct{})}
	f.calls[key] = c
	return c, true
}

func (f *flight[T]) finish(key string, c *call[T], v T) {
	c.val = v
	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
	close(c.done)
}

// inFlight reports whether work on key is running.
func (f *flight[T]) inFlight(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.calls[key]
	return ok
}
