package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mailtls/mailtls/internal/domainverify"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/alert"
	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/diff"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/history"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
)

// schedule claims due domains while scan slots are free and scans each on
// a goroutine of its own.
func (w *Worker) schedule(ctx context.Context) {
	slots := make(chan struct{}, w.cfg.Scans)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(w.cfg.Poll)
	defer t.Stop()
	for {
		free := cap(slots) - len(slots)
		if free > 0 && ctx.Err() == nil {
			claimed, err := w.store.ClaimDueDomains(ctx, w.owner, free, w.cfg.LeaseTTL)
			if err != nil && ctx.Err() == nil {
				w.log.Error("claiming due domains failed", "error", err)
			}
			for _, c := range claimed {
				slots <- struct{}{}
				wg.Go(func() {
					defer func() {
						<-slots
						// A free slot: look for the next due domain now.
						select {
						case w.pokeScheduler <- struct{}{}:
						default:
						}
					}()
					w.safely("scan of "+c.Name, func() { w.runDomain(ctx, c) })
				})
			}
			if len(claimed) == free {
				continue // there may be more due: claim again at once
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.pokeScheduler:
		}
	}
}

// RunDue claims and scans the domains due now, one after the other, and
// returns how many it scanned (tests and `mailtls` commands that scan
// without the loop).
func (w *Worker) RunDue(ctx context.Context) (int, error) {
	n := 0
	for {
		claimed, err := w.store.ClaimDueDomains(ctx, w.owner, 1, w.cfg.LeaseTTL)
		if err != nil || len(claimed) == 0 {
			return n, err
		}
		w.runDomain(ctx, claimed[0])
		n++
	}
}

// runDomain scans one claimed domain and stores the result, the alerts
// and the next run in one transaction.
func (w *Worker) runDomain(ctx context.Context, c store.ClaimedDomain) {
	log := w.log.With("domain", c.Name, "domain_id", c.ID)
	w.mu.Lock()
	w.stats.Claimed++
	if c.RescuedFrom != "" {
		w.stats.Rescued++
	}
	w.running[c.ID] = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.running, c.ID)
		w.mu.Unlock()
	}()
	// A store write after the run's context ended (shutdown) still gets a
	// few seconds.
	cleanup := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	}

	if c.RescuedFrom != "" {
		// The worker that held the domain stopped mid-scan: its scan will
		// never finish. Say so now rather than when retention notices.
		w.abandon(ctx, c, log)
	}
	trigger := store.TriggerSchedule
	if !c.RescanRequestedAt.IsZero() {
		trigger = store.TriggerManual
	}
	sc, err := w.store.CreateScan(ctx, store.NewScan{DomainID: c.ID, Trigger: trigger})
	if err == nil {
		err = w.store.StartScan(ctx, sc.ID)
	}
	if err != nil {
		rctx, cancel := cleanup()
		defer cancel()
		if ctx.Err() != nil {
			// Stopped between the claim and the scan: nothing ran, so the
			// domain stays due for the next start, as a scan cut off is.
			w.count(func(s *Stats) { s.Interrupted++ })
			w.store.ReleaseDomain(rctx, c.ID, w.owner, time.Time{})
			return
		}
		log.Error("recording the scan failed", "error", err)
		w.store.ReleaseDomain(rctx, c.ID, w.owner, w.now().Add(w.cfg.RetryFailed))
		return
	}

	// Keep the lease while scanning; losing it stops the scan.
	sctx, stop := context.WithTimeout(ctx, w.cfg.ScanTimeout)
	defer stop()
	lost := make(chan struct{})
	go w.keepLease(sctx, c.ID, stop, lost)
	doc := w.scan(sctx, c.Name)
	stop()

	select {
	case <-lost:
		w.count(func(s *Stats) { s.LeaseLost++ })
		log.Warn("lease lost during the scan; another worker has the domain")
		rctx, cancel := cleanup()
		defer cancel()
		w.store.FinishScan(rctx, sc.ID, store.ScanResult{State: store.ScanFailed, Error: "lease lost: another worker took the domain over"})
		return
	default:
	}
	if ctx.Err() != nil || doc == nil {
		// Shutdown (or a scan that could not make a document): keep the
		// domain due, so the next start runs it; keep the alert state.
		rctx, cancel := cleanup()
		defer cancel()
		why, next := "interrupted: the server stopped during the scan", time.Time{}
		if ctx.Err() == nil {
			why, next = "the scan did not produce a report", w.now().Add(w.cfg.RetryFailed)
			w.count(func(s *Stats) { s.Failed++ })
		} else {
			w.count(func(s *Stats) { s.Interrupted++ })
		}
		_, err := w.store.FinishScan(rctx, sc.ID, store.ScanResult{State: store.ScanFailed, Error: why,
			ScannerVersion: w.cfg.ScannerVersion, CatalogVersion: finding.CatalogVersion(),
			Release: &store.Release{Owner: w.owner, Next: next}})
		if err != nil {
			log.Error("storing an interrupted scan failed", "error", err)
		}
		return
	}

	res, err := w.judge(ctx, c, sc, doc)
	if err != nil {
		log.Error("judging the scan failed", "error", err)
		rctx, cancel := cleanup()
		defer cancel()
		w.store.FinishScan(rctx, sc.ID, store.ScanResult{State: store.ScanFailed, Error: "could not be stored: " + err.Error(),
			Release: &store.Release{Owner: w.owner, Next: w.now().Add(w.cfg.RetryFailed)}})
		w.count(func(s *Stats) { s.Failed++ })
		return
	}
	rctx, cancel := cleanup()
	defer cancel()
	if _, err := w.store.FinishScan(rctx, sc.ID, res); err != nil {
		if errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrConflict) {
			// Another worker took the domain over (and may have closed
			// this scan as abandoned): nothing of this result is kept.
			w.count(func(s *Stats) { s.LeaseLost++ })
			log.Warn("lease lost before the result was stored; another worker has the domain")
			return
		}
		log.Error("storing the scan failed", "error", err)
		return
	}
	w.count(func(s *Stats) { s.Scanned++ })
	if len(res.Messages) > 0 {
		select {
		case w.pokeNotifier <- struct{}{}:
		default:
		}
	}
}

// keepLease renews the lease every third of its time until ctx ends; if
// another worker has the domain, it cancels the scan and closes lost.
func (w *Worker) keepLease(ctx context.Context, id store.DomainID, cancel context.CancelFunc, lost chan<- struct{}) {
	t := time.NewTicker(w.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := w.store.RenewDomainLease(ctx, id, w.owner, w.cfg.LeaseTTL); errors.Is(err, store.ErrLeaseLost) {
			close(lost)
			cancel()
			return
		}
	}
}

// abandon marks the scans a stopped worker left running as failed.
func (w *Worker) abandon(ctx context.Context, c store.ClaimedDomain, log interface{ Warn(string, ...any) }) {
	scans, _, err := w.store.ListScans(ctx, c.ID, "", 10)
	if err != nil {
		return
	}
	for _, s := range scans {
		if s.State == store.ScanQueued || s.State == store.ScanRunning {
			_, err := w.store.FinishScan(ctx, s.ID, store.ScanResult{State: store.ScanFailed,
				Error: "abandoned: the worker running it (" + c.RescuedFrom + ") stopped; the domain was scanned again"})
			if err == nil {
				log.Warn("a scan abandoned by a stopped worker was marked failed", "scan", s.ID, "worker", c.RescuedFrom)
			}
		}
	}
}

// previous returns the latest finished scan of the domain before cur: its
// document when kept in full, else its summary (grade and findings).
func (w *Worker) previous(ctx context.Context, domain store.DomainID, cur store.ScanID) (*diff.Scan, store.ScanID, error) {
	var before store.Cursor
	for range 10 { // at most 500 scans back
		scans, next, err := w.store.ListScans(ctx, domain, before, 50)
		if err != nil {
			return nil, 0, err
		}
		for _, s := range scans {
			if s.ID == cur || s.State != store.ScanDone {
				continue
			}
			p, err := LoadScan(ctx, w.store, s)
			return p, s.ID, err
		}
		if next == "" {
			break
		}
		before = next
	}
	return nil, 0, nil
}

// LoadScan reads a stored scan as one side of a diff: the document when
// kept in full, the summary (grade and findings) when retention pruned it.
func LoadScan(ctx context.Context, st store.Scans, s store.Scan) (*diff.Scan, error) {
	raw, err := st.ScanReport(ctx, s.ID)
	switch {
	case err == nil:
		var doc report.Document
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, fmt.Errorf("scan %d: stored report: %w", s.ID, err)
		}
		side := diff.FromDocument(&doc)
		return &side, nil
	case errors.Is(err, store.ErrPruned):
		fs, err := st.ScanFindings(ctx, s.ID)
		if err != nil {
			return nil, err
		}
		side := &diff.Scan{Grade: s.Grade}
		for _, f := range fs {
			side.Findings = append(side.Findings, report.Finding{ID: f.ID, Severity: f.Severity, Component: f.Component, Subject: f.Subject, Message: f.Message})
		}
		return side, nil
	}
	return nil, err
}

// reportsNotRead says why a scan did not judge the domain's TLS-RPT
// reports, or "" when it did.
func reportsNotRead(verified, blind bool, err error) string {
	switch {
	case !verified:
		return `the account has not verified the domain (docs/accounts.md, "Verifying a domain")`
	case err != nil:
		return "the reports could not be read from the store"
	case blind:
		return "no TLS-RPT report covers the last days"
	}
	return ""
}

// judge adds the history findings to the document, decides the alerts and
// makes the result to store.
func (w *Worker) judge(ctx context.Context, c store.ClaimedDomain, sc store.Scan, doc *report.Document) (store.ScanResult, error) {
	now := w.now()
	prev, prevID, err := w.previous(ctx, c.ID, sc.ID)
	if err != nil {
		return store.ScanResult{}, err
	}
	stages := map[string]int{}
	for _, f := range history.Evaluate(prev, doc, now) {
		rf := report.Finding{ID: string(f.ID), Severity: f.Severity.String(), Component: string(f.Component), Subject: f.Subject,
			Message: f.Message, Ref: f.Ref, Fix: f.Fix}
		doc.Findings = append(doc.Findings, rf)
		stages[alert.Key(rf)] = f.Stage
	}
	state, err := alert.Unmarshal(c.AlertState)
	if err != nil {
		// A state this build cannot read starts afresh (as a baseline):
		// better no alert than a wrong one.
		w.log.Warn("alert state unreadable; starting a new baseline", "domain", c.Name, "error", err)
		state = alert.State{}
	}
	decided := decisionTime(c.NextScanAt, now)
	// What the domain's TLS-RPT reports show, judged like the scan's
	// findings (transitions only, resolved notices, reminders).
	// The reports are private: judged only for an account that verified
	// the domain by DNS (docs/accounts.md, "Verifying a domain").
	// Otherwise nothing of them goes into the scan or an alert, and what
	// they showed while it was verified stays as it was (held), neither
	// told again nor resolved by reports that were not looked at.
	var fromReports []report.Finding
	blind := true
	verified := w.verified(ctx, c.Domain)
	if verified {
		fromReports, blind, err = w.reportFindings(ctx, c.Name, doc, state, decided)
		if err != nil {
			w.log.Warn("TLS-RPT reports could not be judged", "domain", c.Name, "error", err)
		}
	}
	doc.Findings = append(doc.Findings, fromReports...)
	// Said in the document, so that a diff never calls the report
	// problems of an earlier scan fixed when this one did not look.
	if why := reportsNotRead(verified, blind, err); why != "" {
		doc.NotRead = append(doc.NotRead, report.NotRead{Component: string(finding.ComponentReports), Reason: why})
		blind = true
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return store.ScanResult{}, err
	}

	in := alert.Input{State: state, ScanID: int64(sc.ID), Muted: c.Muted(now), Now: decided, Policy: w.cfg.Alerts}
	in.Findings, in.Held = alert.Classify(doc, stages)
	if blind {
		// No report covers the last days: what the report rules found
		// before is not resolved by reports that are missing.
		in.Held[string(finding.ComponentReports)] = true
	}
	if !verified {
		// Not reminded either: a reminder repeats the problem's message
		// (MX hosts, counts from the reports) to an account that may no
		// longer control the domain.
		in.Withheld = map[string]bool{string(finding.ComponentReports): true}
	}
	if !state.Baselined && prev != nil {
		// The scan the domain was saved from (or the last one before
		// monitoring began) is what the user has seen.
		in.Baseline, _ = alert.Classify(&report.Document{Findings: prev.Findings}, nil)
		in.BaselineScan = int64(prevID)
		if in.Baseline == nil {
			in.Baseline = []alert.Observation{}
		}
	}
	out := alert.Decide(in)

	next := store.NextScan(c.Name, c.Interval, now)
	if out.Confirm {
		if confirm := now.Add(w.cfg.ConfirmAfter); confirm.Before(next) {
			next = confirm
		}
	}
	msgs, err := w.messages(ctx, c, sc, doc, prev, out)
	if err != nil {
		return store.ScanResult{}, err
	}
	res := store.ScanResult{
		State: store.ScanDone, ScannerVersion: w.cfg.ScannerVersion, CatalogVersion: finding.CatalogVersion(),
		ReportSchema: doc.SchemaVersion, PolicyStatus: doc.PolicyStatus, Report: raw, Messages: msgs,
		Release: &store.Release{Owner: w.owner, Next: next, AlertState: out.State.Marshal()},
	}
	res.Release.OpenErrors, res.Release.OpenWarnings = out.State.OpenCounts()
	if doc.Grade != nil {
		res.Grade = *doc.Grade
	}
	for _, f := range doc.Findings {
		res.Findings = append(res.Findings, store.Finding{ID: f.ID, Severity: f.Severity, Component: f.Component, Subject: f.Subject, Message: f.Message})
	}
	return res, nil
}

// decisionTime is the time alerts are decided at: the slot the scan was
// due at, so that a daily domain's reminders fall daily whatever its
// scans take; after downtime (the slot long past), now.
func decisionTime(slot, now time.Time) time.Time {
	if !slot.IsZero() && !slot.After(now) && now.Sub(slot) < time.Hour {
		return slot
	}
	return now
}

// reportFindings runs the report rules (tlsrptagg.Watch) on the counted
// TLS-RPT reports of domain, against the policy and MX hosts of this
// scan. blind: no report covers the last days.
func (w *Worker) reportFindings(ctx context.Context, domain string, doc *report.Document, state alert.State, now time.Time) ([]report.Finding, bool, error) {
	p := w.cfg.Reports
	today := tlsrptagg.Day(now)
	sum, err := w.store.TLSRPTSummary(ctx, domain, today.Add(-p.Lookback()), today)
	if err != nil {
		return nil, true, err
	}
	open := map[finding.ID][]string{}
	for _, pr := range state.Problems {
		if pr.Component == string(finding.ComponentReports) {
			open[finding.ID(pr.ID)] = append(open[finding.ID(pr.ID)], pr.Subject)
		}
	}
	fs, blind := tlsrptagg.Watch(tlsrptagg.WatchInput{Domain: domain, Now: now, Current: Current(doc, now), Summary: sum, Open: open, Policy: p})
	var out []report.Finding
	for _, f := range fs {
		out = append(out, report.Finding{ID: string(f.ID), Severity: f.Severity.String(), Component: string(f.Component), Subject: f.Subject,
			Message: f.Message, Ref: f.Ref, Fix: f.Fix})
	}
	return out, blind, nil
}

// Current is what the scan says about the domain's policy and MX hosts,
// for explaining reported failures: the effective policy of the document
// and the MX hosts judged again from its evidence.
func Current(doc *report.Document, now time.Time) tlsrptagg.Current {
	var cur tlsrptagg.Current
	if doc.Policy != nil {
		cur.PolicyID = doc.Policy.ID
		cur.Policy = &mtasts.Policy{Version: "STSv1", Mode: mtasts.Mode(doc.Policy.Mode), MX: doc.Policy.MX, MaxAge: doc.Policy.MaxAge}
	}
	if doc.Evidence != nil {
		cur.Scan = tlsrptagg.FromCheck(check.Evaluate(doc.Evidence, now), now)
	}
	return cur
}

// verifiedNow is the domain's stored verification state (no lookup): a
// store failure counts as not verified.
func (w *Worker) verifiedNow(ctx context.Context, id store.DomainID, name string) bool {
	v, err := w.store.Verification(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		w.log.Warn("reading the domain verification failed", "domain", name, "error", err)
	}
	return err == nil && v.Verified()
}

// verified looks the domain's verification record up again (the daily
// recheck: found keeps it, absent for domainverify.Lapse ends it, a
// failed lookup changes nothing) and reports whether the account has a
// verified domain. A store error counts as not verified: private data
// is not sent on a guess.
func (w *Worker) verified(ctx context.Context, d store.Domain) bool {
	v, err := w.store.Verification(ctx, d.ID)
	if errors.Is(err, store.ErrNotFound) {
		return false
	}
	if err != nil {
		w.log.Warn("reading the domain verification failed", "domain", d.Name, "error", err)
		return false
	}
	if w.resolver == nil {
		return v.Verified()
	}
	o, a := domainverify.Check(ctx, w.resolver, d.Name, v.Token)
	if o == domainverify.Unknown {
		w.log.Info("the domain verification record could not be looked up; unchanged", "domain", d.Name, "status", a.Status)
		return v.Verified()
	}
	nv := domainverify.Apply(v, o, w.now())
	if err := w.store.SaveVerification(ctx, nv); err != nil {
		w.log.Warn("storing the domain verification failed", "domain", d.Name, "error", err)
	}
	if v.Verified() && !nv.Verified() {
		w.log.Info("domain verification lapsed: the record has been missing", "domain", d.Name, "since", nv.MissingSince)
	}
	return nv.Verified()
}
