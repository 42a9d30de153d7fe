package monitor

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/alert"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/store"
)

// digest queues, once a day per channel, a summary of the account's
// domains to the channels whose digest hour it is: each domain's grade,
// its open problems, and what opened or was resolved in the last day. The
// key (the channel's date) makes it once a day whatever runs it; a day
// whose digest hour the server was down for gets none.
func (w *Worker) digest(ctx context.Context) {
	ok, err := w.store.AcquireLease(ctx, "digest", w.owner, 10*time.Minute)
	if err != nil || !ok {
		return
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		w.store.ReleaseLease(rctx, "digest", w.owner)
	}()
	if _, err := w.QueueDigests(ctx); err != nil {
		w.log.Error("digest failed", "error", err)
	}
}

// QueueDigests queues the digests due at the current hour and returns how
// many it queued (an already queued one is not queued again).
func (w *Worker) QueueDigests(ctx context.Context) (int, error) {
	now := w.now().UTC()
	chans, err := w.store.ListDigestChannels(ctx, now.Hour())
	if err != nil {
		return 0, err
	}
	n := 0
	byUser := map[store.UserID][]DigestDomain{}
	for _, ch := range chans {
		domains, ok := byUser[ch.UserID]
		if !ok {
			if domains, err = w.digestDomains(ctx, ch.UserID, now); err != nil {
				return n, err
			}
			byUser[ch.UserID] = domains
		}
		if len(domains) == 0 {
			continue
		}
		d := Notification{Version: NotificationVersion, Type: TypeDigest, Key: "digest:" + now.Format("2006-01-02"), Created: now,
			Domains: domains, UnsubscribeURL: w.link("/unsubscribe/" + ch.UnsubscribeID)}
		for _, dd := range domains {
			d.Open += len(dd.Open)
		}
		payload, err := json.Marshal(d)
		if err != nil {
			return n, err
		}
		if _, err := w.store.Enqueue(ctx, store.NewMessage{ChannelID: ch.ID, Kind: TypeDigest, Key: d.Key, Payload: payload}); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 {
		w.Poke()
	}
	return n, nil
}

func (w *Worker) digestDomains(ctx context.Context, user store.UserID, now time.Time) ([]DigestDomain, error) {
	rows, err := w.store.Dashboard(ctx, user)
	if err != nil {
		return nil, err
	}
	var out []DigestDomain
	for _, r := range rows {
		dd := DigestDomain{Domain: r.Name, Muted: r.Muted(now), DomainURL: w.link("/domains/" + strconv.FormatInt(int64(r.ID), 10)),
			Open: []Event{}, Resolved: []Event{}}
		if r.Last != nil {
			at := r.Last.CreatedAt
			dd.LastScan = &at
			if r.Last.Grade != "" {
				g := r.Last.Grade
				dd.Grade = &g
			}
		}
		st, err := alert.Unmarshal(r.AlertState)
		if err == nil {
			// What the reports showed is held while the domain is not
			// verified (a lapse), and not told again (scan.go, judge).
			told := func(p alert.Problem) bool { return true }
			if !w.verifiedNow(ctx, r.ID, r.Name) {
				told = func(p alert.Problem) bool { return p.Component != string(finding.ComponentReports) }
			}
			for _, p := range st.Open() {
				if told(p) {
					dd.Open = append(dd.Open, toEvent(alert.Event{Kind: alert.Reminder, Problem: p}))
				}
			}
			for _, p := range st.Resolved {
				if now.Sub(p.Resolved) <= 24*time.Hour && told(p) {
					dd.Resolved = append(dd.Resolved, toEvent(alert.Event{Kind: alert.Resolved, Problem: p}))
				}
			}
		}
		out = append(out, dd)
	}
	return out, nil
}
