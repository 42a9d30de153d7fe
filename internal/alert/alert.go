// Package alert decides when monitoring tells a user about a saved domain,
// so that alerts do not cry wolf:
//
//   - only transitions are told: a new problem, a problem that got worse
//     (a higher severity, or a further stage such as a certificate's next
//     expiry step), a resolved problem; at most one reminder a day lists
//     the problems still open;
//   - a problem of a transient class (a timeout, an undetermined lookup,
//     an unreachable MX, a 4xx banner) is told only when the next scan
//     sees it again; it waits as pending, and the scanner rescans soon;
//   - a problem is resolved only by a scan that could see it: when the
//     scan could not tell about a component (a temporary failure there),
//     the component's open problems stay open;
//   - the problems present when a domain is saved are the baseline: they
//     are on the dashboard already and are not told; a muted domain's
//     state moves on, but nothing is told.
//
// Decide is pure: the state before, the current scan's findings and the
// time in; the state after and the events to deliver out. The caller
// stores both in one transaction (store.ScanResult.AlertState and
// Messages), so a crash between deciding and sending loses or doubles
// nothing.
package alert

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/mailtls/mailtls/internal/report"
)

// StateVersion is the version of the stored State.
const StateVersion = 1

// State is what alerts remember about one saved domain between scans.
type State struct {
	Version int `json:"v"`
	// Baselined is set once the first scan has been taken as the baseline.
	Baselined bool      `json:"baselined"`
	Problems  []Problem `json:"problems"`
	// Resolved keeps the problems resolved in the last KeepResolved, for
	// the digest and the dashboard.
	Resolved []Problem `json:"resolved,omitempty"`
	// Reminded is when the last reminder was sent.
	Reminded time.Time `json:"reminded,omitzero"`
	// LastScan is the scan the state was decided from.
	LastScan int64 `json:"last_scan"`
}

// Problem statuses.
const (
	Pending = "pending" // transient, seen once: waits for a second scan
	Open    = "open"
)

// Problem is a finding that alerts track, by key (finding ID and subject).
type Problem struct {
	Key       string `json:"key"`
	ID        string `json:"id"`
	Severity  string `json:"severity"`
	Component string `json:"component"`
	Subject   string `json:"subject,omitempty"`
	Message   string `json:"message"`
	Fix       string `json:"fix,omitempty"`
	Stage     int    `json:"stage,omitempty"`
	Status    string `json:"status"`
	Transient bool   `json:"transient,omitempty"`
	// Since is when the problem was first seen, in scan SinceScan.
	Since     time.Time `json:"since"`
	SinceScan int64     `json:"since_scan"`
	// Told is when the user was last told about it (an alert or a
	// reminder); zero when never (baseline, muted).
	Told time.Time `json:"told,omitzero"`
	// Resolved is when a scan no longer saw it (in Resolved only).
	Resolved time.Time `json:"resolved,omitzero"`
}

// Level orders how bad a problem is: severity first, then stage.
func (p Problem) Level() int { return severityRank(p.Severity)*100 + p.Stage }

func severityRank(s string) int {
	switch s {
	case "error":
		return 3
	case "warning":
		return 2
	case "info":
		return 1
	}
	return 0
}

// Observation is a finding of the current scan as alerts see it.
type Observation struct {
	report.Finding
	Stage     int  // history.Finding.Stage
	Transient bool // of a class that needs confirmation (Classify)
}

// Event kinds.
const (
	Opened   = "opened"
	Worse    = "worse"
	Resolved = "resolved"
	Reminder = "reminder"
)

// Event is one thing to tell.
type Event struct {
	Kind    string  `json:"kind"`
	Problem Problem `json:"problem"`
	// Before is the problem as it was, for Worse.
	Before *Problem `json:"before,omitempty"`
}

// Input is one decision.
type Input struct {
	State    State
	ScanID   int64
	Findings []Observation
	// Held lists the components the scan could not see (Classify): their
	// open problems are not resolved by this scan.
	Held map[string]bool
	// Withheld lists components whose open problems are held and not
	// reminded either: the account may no longer see what they say (the
	// TLS-RPT reports of a domain whose verification lapsed).
	Withheld map[string]bool
	// Baseline, when the state has none yet, is the scan the user saved
	// the domain from (its problems are known to the user), BaselineScan
	// its id; nil takes this scan as the baseline.
	Baseline     []Observation
	BaselineScan int64
	Muted        bool
	// Now is the time of the decision: the scan's scheduled time, so that
	// a daily scan's reminders fall daily whatever the scan's duration.
	Now time.Time
	Policy
}

// Policy are the knobs of alerts; zero fields take the defaults.
type Policy struct {
	// RemindEvery is the least time between reminders (default 24h;
	// negative: never).
	RemindEvery time.Duration
	// KeepResolved is how long resolved problems stay in the state
	// (default 7 days).
	KeepResolved time.Duration
}

// Defaults.
const (
	DefaultRemindEvery  = 24 * time.Hour
	DefaultKeepResolved = 7 * 24 * time.Hour
)

// Output is the decision.
type Output struct {
	State  State
	Events []Event // empty when muted
	// Confirm: a transient problem waits for a second scan; rescan soon.
	Confirm bool
}

// Alerting reports whether a finding can open a problem: errors and
// warnings. Certificate expiry within 14 days (policy-cert-expiring,
// smtp-cert-expiring) is told by history-cert-expires at 21, 7 and 2
// days instead, so the same certificate does not alert four times.
func Alerting(f report.Finding) bool {
	if f.ID == "policy-cert-expiring" || f.ID == "smtp-cert-expiring" {
		return false
	}
	return f.Severity == "error" || f.Severity == "warning"
}

// Key identifies a problem across scans.
func Key(f report.Finding) string { return f.ID + "\x00" + f.Subject }

// Decide applies one scan to the state.
func Decide(in Input) Output {
	p := in.Policy
	if p.RemindEvery == 0 {
		p.RemindEvery = DefaultRemindEvery
	}
	if p.KeepResolved <= 0 {
		p.KeepResolved = DefaultKeepResolved
	}
	st := in.State
	st.Version = StateVersion
	st.Problems = slices.Clone(st.Problems)
	st.Resolved = slices.Clone(st.Resolved)
	st.LastScan = in.ScanID
	out := Output{}

	if !st.Baselined {
		// The problems the user saw when saving the domain are known:
		// open, never told. Without a saved scan, this scan is the
		// baseline.
		base, scan := in.Baseline, in.BaselineScan
		if base == nil {
			base, scan = in.Findings, in.ScanID
		}
		st.Problems = nil
		for _, o := range dedupe(base) {
			if Alerting(o.Finding) {
				st.Problems = append(st.Problems, newProblem(o, Open, in.Now, scan))
			}
		}
		st.Baselined = true
		if in.Baseline == nil {
			out.State = st
			return out
		}
	}

	now := map[string]Observation{}
	for _, o := range dedupe(in.Findings) {
		if Alerting(o.Finding) {
			now[Key(o.Finding)] = o
		}
	}
	var events []Event
	var kept []Problem
	for _, pr := range st.Problems {
		o, seen := now[pr.Key]
		if !seen {
			switch {
			case pr.Status == Pending:
				// A transient problem that went away: never told.
			case in.Held[pr.Component] || in.Withheld[pr.Component]:
				kept = append(kept, pr) // the scan could not see it
			default:
				pr.Resolved = in.Now
				if !pr.Told.IsZero() {
					events = append(events, Event{Kind: Resolved, Problem: pr})
				}
				st.Resolved = append(st.Resolved, pr)
			}
			continue
		}
		delete(now, pr.Key)
		before := pr
		pr.Severity, pr.Message, pr.Fix, pr.Stage, pr.Component, pr.Transient = o.Severity, o.Message, o.Fix, o.Stage, o.Component, o.Transient
		switch {
		case pr.Status == Pending:
			// Seen twice in a row: confirmed.
			pr.Status = Open
			pr.Told = in.Now
			events = append(events, Event{Kind: Opened, Problem: pr})
		case pr.Level() > before.Level():
			pr.Told = in.Now
			events = append(events, Event{Kind: Worse, Problem: pr, Before: &before})
		}
		kept = append(kept, pr)
	}
	// New problems, in a stable order.
	keys := make([]string, 0, len(now))
	for k := range now {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		o := now[k]
		if o.Transient {
			kept = append(kept, newProblem(o, Pending, in.Now, in.ScanID))
			out.Confirm = true
			continue
		}
		pr := newProblem(o, Open, in.Now, in.ScanID)
		pr.Told = in.Now
		events = append(events, Event{Kind: Opened, Problem: pr})
		kept = append(kept, pr)
	}
	st.Problems = kept

	// One reminder a day at most lists the problems still open that the
	// user was told about and not reminded of today.
	if p.RemindEvery > 0 && !in.Muted && in.Now.Sub(st.Reminded) >= p.RemindEvery {
		var remind []Event
		for i, pr := range st.Problems {
			if pr.Status == Open && !pr.Told.IsZero() && in.Now.Sub(pr.Told) >= p.RemindEvery && !in.Withheld[pr.Component] {
				st.Problems[i].Told = in.Now
				remind = append(remind, Event{Kind: Reminder, Problem: st.Problems[i]})
			}
		}
		if len(remind) > 0 {
			st.Reminded = in.Now
			events = append(events, remind...)
		}
	}

	// Forget resolved problems after a while.
	st.Resolved = slices.DeleteFunc(st.Resolved, func(pr Problem) bool { return in.Now.Sub(pr.Resolved) > p.KeepResolved })

	if in.Muted {
		// Nothing is told, now or later: a problem opened while muted is
		// like the baseline (never told), one that got worse keeps when
		// it was last told.
		for _, ev := range events {
			for i := range st.Problems {
				if st.Problems[i].Key != ev.Problem.Key {
					continue
				}
				switch ev.Kind {
				case Opened:
					st.Problems[i].Told = time.Time{}
				case Worse:
					st.Problems[i].Told = ev.Before.Told
				}
			}
		}
		events = nil
	}
	out.State = st
	out.Events = events
	return out
}

func newProblem(o Observation, status string, now time.Time, scan int64) Problem {
	return Problem{Key: Key(o.Finding), ID: o.ID, Severity: o.Severity, Component: o.Component, Subject: o.Subject, Message: o.Message, Fix: o.Fix,
		Stage: o.Stage, Status: status, Transient: o.Transient, Since: now, SinceScan: scan}
}

// dedupe keeps the first observation of each key (a report may repeat a
// finding ID about one subject; it is one problem).
func dedupe(os []Observation) []Observation {
	seen := map[string]bool{}
	var out []Observation
	for _, o := range os {
		if k := Key(o.Finding); !seen[k] {
			seen[k] = true
			out = append(out, o)
		}
	}
	return out
}

// Open returns the open problems (pending ones excluded).
func (s State) Open() []Problem {
	var out []Problem
	for _, p := range s.Problems {
		if p.Status == Open {
			out = append(out, p)
		}
	}
	return out
}

// OpenCounts counts the open problems by severity: errors, and warnings
// with everything else. The monitor stores them with the state
// (store.Release), so the dashboard need not decode every domain's state.
func (s State) OpenCounts() (errors, warnings int) {
	for _, p := range s.Open() {
		if p.Severity == "error" {
			errors++
		} else {
			warnings++
		}
	}
	return errors, warnings
}

// OpenCounts counts the open problems of a stored state, for a state
// stored without its counts (before store schema version 6).
func OpenCounts(b []byte) (errors, warnings int, err error) {
	s, err := Unmarshal(b)
	if err != nil {
		return 0, 0, err
	}
	errors, warnings = s.OpenCounts()
	return errors, warnings, nil
}

// Marshal encodes the state for the store.
func (s State) Marshal() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("alert: state does not encode: %v", err)) // plain data: cannot happen
	}
	return b
}

// Unmarshal decodes a stored state; nil or empty is the zero state.
func Unmarshal(b []byte) (State, error) {
	var s State
	if len(b) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("alert: stored state: %w", err)
	}
	if s.Version > StateVersion {
		return State{}, fmt.Errorf("alert: stored state version %d is newer than this build's %d", s.Version, StateVersion)
	}
	return s, nil
}
