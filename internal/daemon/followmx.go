package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/policyhost"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
)

// Resolver is the DNS lookup the MX watcher needs (resolve.Client, or a
// fake in tests).
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) *resolve.Answer
}

// mxState is what is known of one follow_mx domain's MX set.
type mxState struct {
	Hosts    []string  `json:"hosts"`
	Patterns []string  `json:"patterns"`
	Checked  time.Time `json:"checked"`
}

// mxWatcher builds the mx patterns of follow_mx domains from their live MX
// sets. A lookup that fails for a temporary reason never changes a served
// policy: the last known set stays (and is kept on disk, so a restart
// while DNS is down still serves it). "Temporary is not absent."
//
// With a store (sharedHostState), the sets are shared by every host
// instance: an instance writes a set to the store when its own lookups saw
// it change (seen), and serves the sets the store holds (known), read
// after each round of lookups. So an instance whose resolver still caches
// the old set neither serves nor writes it back once another has seen the
// new one.
type mxWatcher struct {
	log    *slog.Logger
	res    Resolver
	path   string             // "" keeps the sets in memory only
	shared store.HostPolicies // nil: the sets are this instance's own
	now    func() time.Time
	obs    func(result string)

	mu    sync.Mutex
	known map[string]mxState // served
	seen  map[string]mxState // this instance's last lookups (shared only)
}

// newSharedMXWatcher starts from the sets in the store.
func newSharedMXWatcher(ctx context.Context, log *slog.Logger, res Resolver, st store.HostPolicies, now func() time.Time, obs func(string)) (*mxWatcher, error) {
	w := &mxWatcher{log: log, res: res, shared: st, now: now, obs: obs, known: map[string]mxState{}, seen: map[string]mxState{}}
	if _, err := w.sync(ctx); err != nil {
		return nil, fmt.Errorf("follow_mx: reading the MX sets from the store: %w", err)
	}
	w.seen = maps.Clone(w.known)
	return w, nil
}

// sync serves the sets the store holds and reports whether one changed. A
// store that cannot be read leaves the last known sets.
func (w *mxWatcher) sync(ctx context.Context) (changed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ps, err := w.shared.ListHostPolicies(ctx)
	if err != nil {
		return false, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range ps {
		old, had := w.known[p.Domain]
		if p.MXPatterns == nil || (had && slices.Equal(old.Patterns, p.MXPatterns)) {
			continue
		}
		w.known[p.Domain] = mxState{Hosts: p.MXHosts, Patterns: p.MXPatterns, Checked: p.MXChecked}
		changed = true
	}
	return changed, nil
}

func newMXWatcher(log *slog.Logger, res Resolver, path string, now func() time.Time, obs func(string)) (*mxWatcher, error) {
	w := &mxWatcher{log: log, res: res, path: path, now: now, obs: obs, known: map[string]mxState{}}
	if path == "" {
		return w, nil
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return w, nil
	case err != nil:
		return nil, fmt.Errorf("follow_mx: %w", err)
	}
	if err := json.Unmarshal(data, &w.known); err != nil {
		// Only a cache: say so and start afresh rather than refuse to run.
		log.Warn("follow_mx: the saved MX sets are damaged; looking them up again", "file", path, "error", err)
		w.known = map[string]mxState{}
	}
	return w, nil
}

// Patterns is a policyhost.MXSource.
func (w *mxWatcher) Patterns(domain string) ([]string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.known[domain]
	return s.Patterns, ok && len(s.Patterns) > 0
}

// lookupConcurrency bounds the MX lookups in flight.
const lookupConcurrency = 16

// Refresh looks up the MX set of each domain and reports whether a set of
// patterns changed.
func (w *mxWatcher) Refresh(ctx context.Context, domains []string) (changed bool) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		sem = make(chan struct{}, lookupConcurrency)
	)
	for _, d := range domains {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() {
				// A lookup bug must not take the server down: the domain
				// keeps its last known policy.
				if p := recover(); p != nil {
					w.obs("panic")
					w.log.Error("follow_mx: panic during a lookup", "domain", d, "panic", fmt.Sprint(p))
				}
				<-sem
				wg.Done()
			}()
			if w.refreshOne(ctx, d) {
				mu.Lock()
				changed = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if w.shared != nil {
		// What another instance saw counts as much as this one's.
		changed, err := w.sync(ctx)
		if err != nil {
			w.log.Warn("follow_mx: could not read the shared MX sets; serving the last known ones", "error", err)
		}
		return changed
	}
	if changed {
		if err := w.save(); err != nil {
			w.log.Warn("follow_mx: could not save the MX sets", "error", err)
		}
	}
	return changed
}

func (w *mxWatcher) refreshOne(ctx context.Context, d string) bool {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	a := w.res.Lookup(ctx, d, resolve.TypeMX)
	var hosts []string
	switch {
	case a.Status.Temporary():
		w.obs("temporary")
		w.log.Warn("follow_mx: could not look up the MX set; keeping the last known policy", "domain", d, "status", a.Status, "error", a.Error)
		return false
	case a.Status == resolve.StatusNXDomain:
		w.obs("absent")
		w.log.Error("follow_mx: the domain does not exist in DNS; keeping the last known policy", "domain", d)
		return false
	case a.Status == resolve.StatusOK && a.NullMX():
		w.obs("absent")
		w.log.Error("follow_mx: the domain publishes a null MX (RFC 7505) and takes no mail; give it mode none", "domain", d)
		return false
	case a.Status == resolve.StatusNoData:
		// No MX: mail goes to the domain itself (RFC 5321 §5.1).
		hosts = []string{d}
	default:
		for _, mx := range a.MX() {
			h := strings.TrimSuffix(strings.ToLower(mx.Host), ".")
			if h != "" && !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
	w.obs("ok")
	sort.Strings(hosts)
	patterns := mtasts.SuggestPatterns(hosts)
	st := mxState{Hosts: hosts, Patterns: patterns, Checked: w.now().UTC()}
	w.mu.Lock()
	view := w.known
	if w.shared != nil {
		view = w.seen
	}
	old, had := view[d]
	view[d] = st
	w.mu.Unlock()
	if had && slices.Equal(old.Patterns, patterns) {
		return false
	}
	w.log.Info("follow_mx: MX set changed; the policy follows", "domain", d, "mx", strings.Join(hosts, " "), "patterns", strings.Join(patterns, " "))
	if w.shared != nil {
		if err := w.shared.SetMXSet(ctx, d, hosts, patterns, st.Checked); err != nil {
			// Seen again at the next lookup, and written then.
			w.log.Warn("follow_mx: could not store the new MX set; trying again at the next lookup", "domain", d, "error", err)
			w.mu.Lock()
			if had {
				w.seen[d] = old
			} else {
				delete(w.seen, d)
			}
			w.mu.Unlock()
			return false
		}
	}
	return true
}

func (w *mxWatcher) save() error {
	if w.path == "" {
		return nil
	}
	w.mu.Lock()
	data, err := json.MarshalIndent(w.known, "", "  ")
	w.mu.Unlock()
	if err != nil {
		return err
	}
	return policyhost.WriteFileAtomic(w.path, data)
}
