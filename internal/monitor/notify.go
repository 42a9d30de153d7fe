package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/alert"
	"github.com/mailtls/mailtls/internal/diff"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/store"
)

// NotificationVersion is the version of the alert document.
const NotificationVersion = 1

// Notification types (the Mailtls-Event header of a webhook).
const (
	TypeAlert    = "alert"    // new problems, or problems that got worse (with any resolved in the same scan)
	TypeResolved = "resolved" // only resolved problems
	TypeReminder = "reminder" // problems still open
	TypeDigest   = "digest"
	TypeTest     = "test"
)

// Notification is what an alert says, the same for every channel: a
// webhook's JSON body, and what an e-mail is written from. It is stored in
// the outbox as decided, so a delivery after a crash says what the first
// would have said.
type Notification struct {
	Version int    `json:"version"`
	Type    string `json:"type"`
	// Key identifies the decision (unique per channel): a receiver can
	// deduplicate by it, or by the Mailtls-Delivery header.
	Key     string    `json:"key"`
	Created time.Time `json:"created"`
	Domain  string    `json:"domain,omitempty"`
	// Scan is the scan the alert was decided from.
	Scan *ScanRef `json:"scan,omitempty"`
	// Events are the transitions: opened, worse, resolved, reminder.
	Events []Event `json:"events,omitempty"`
	// Open counts the domain's open problems after this scan.
	Open int `json:"open_problems"`
	// Domains are the account's domains (a digest).
	Domains []DigestDomain `json:"domains,omitempty"`
	// Links.
	DomainURL      string `json:"domain_url,omitempty"`
	UnsubscribeURL string `json:"unsubscribe_url,omitempty"`
	Text           string `json:"text,omitempty"` // for a test message
}

// ScanRef names a scan.
type ScanRef struct {
	ID            int64     `json:"id"`
	At            time.Time `json:"at"`
	Grade         *string   `json:"grade"` // null when undetermined
	PreviousGrade *string   `json:"previous_grade"`
	URL           string    `json:"url,omitempty"`
}

// Event is one transition of one problem.
type Event struct {
	Kind     string       `json:"kind"` // opened, worse, resolved, reminder
	Finding  EventFinding `json:"finding"`
	Title    string       `json:"title"` // the catalog's title
	Since    time.Time    `json:"since"`
	Resolved time.Time    `json:"resolved,omitzero"`
	// Before is the severity the problem had, for worse.
	Before string `json:"before_severity,omitempty"`
	Stage  int    `json:"stage,omitempty"`
}

// EventFinding is the finding an event is about.
type EventFinding struct {
	ID        string `json:"id"`
	Severity  string `json:"severity"`
	Component string `json:"component"`
	Subject   string `json:"subject,omitempty"`
	Message   string `json:"message"`
	Fix       string `json:"fix,omitempty"`
	Ref       string `json:"ref,omitempty"`
	DocsURL   string `json:"docs_url,omitempty"`
}

// DigestDomain is one domain in a digest.
type DigestDomain struct {
	Domain    string     `json:"domain"`
	Grade     *string    `json:"grade"`
	LastScan  *time.Time `json:"last_scan"`
	Open      []Event    `json:"open"`
	Resolved  []Event    `json:"resolved_today"`
	Muted     bool       `json:"muted,omitempty"`
	DomainURL string     `json:"domain_url,omitempty"`
}

func notificationType(events []alert.Event) string {
	t := TypeReminder
	for _, e := range events {
		switch e.Kind {
		case alert.Opened, alert.Worse:
			return TypeAlert
		case alert.Resolved:
			t = TypeResolved
		}
	}
	return t
}

func (w *Worker) link(path string) string {
	if w.cfg.BaseURL == "" {
		return ""
	}
	return w.cfg.BaseURL + path
}

func toEvent(e alert.Event) Event {
	p := e.Problem
	ev := Event{Kind: e.Kind, Since: p.Since, Resolved: p.Resolved, Stage: p.Stage,
		Finding: EventFinding{ID: p.ID, Severity: p.Severity, Component: p.Component, Subject: p.Subject, Message: p.Message, Fix: p.Fix}}
	if d := finding.Lookup(finding.ID(p.ID)); d != nil {
		ev.Title, ev.Finding.Ref = d.Title, d.Ref
	}
	if e.Before != nil {
		ev.Before = e.Before.Severity
	}
	return ev
}

// messages turns a decision into one outbox message per channel that gets
// alerts as they happen (verified, enabled, no digest). The key makes a
// replayed decision a no-op.
func (w *Worker) messages(ctx context.Context, c store.ClaimedDomain, sc store.Scan, doc *report.Document, prev *diff.Scan, out alert.Output) ([]store.NewMessage, error) {
	events := out.Events
	if len(events) == 0 {
		return nil, nil
	}
	chans, err := w.store.ListChannels(ctx, c.UserID)
	if err != nil {
		return nil, err
	}
	n := Notification{Version: NotificationVersion, Type: notificationType(events), Key: "scan:" + strconv.FormatInt(int64(sc.ID), 10),
		Created: w.now().UTC(), Domain: c.Name, DomainURL: w.link("/domains/" + strconv.FormatInt(int64(c.ID), 10)),
		Scan: &ScanRef{ID: int64(sc.ID), At: sc.CreatedAt, Grade: doc.Grade, URL: w.link(fmt.Sprintf("/domains/%d/scans/%d", c.ID, sc.ID))},
		Open: len(out.State.Open())}
	if prev != nil && prev.Grade != "" {
		g := prev.Grade
		n.Scan.PreviousGrade = &g
	}
	// Alerts first, then resolved, then reminders.
	order := map[string]int{alert.Opened: 0, alert.Worse: 0, alert.Resolved: 1, alert.Reminder: 2}
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, func(a, b alert.Event) int { return order[a.Kind] - order[b.Kind] })
	for _, e := range sorted {
		n.Events = append(n.Events, toEvent(e))
	}
	var msgs []store.NewMessage
	for _, ch := range chans {
		if ch.VerifiedAt.IsZero() || !ch.DisabledAt.IsZero() || ch.Digest {
			continue
		}
		m := n
		m.UnsubscribeURL = w.link("/unsubscribe/" + ch.UnsubscribeID)
		payload, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, store.NewMessage{ChannelID: ch.ID, DomainID: c.ID, Kind: n.Type, Key: n.Key, Payload: payload})
	}
	return msgs, nil
}

// Deliverer delivers one message to its channel and says how it went
// (detail: "HTTP 204", the relay's reply). An error wrapped with Permanent
// is not retried.
type Deliverer interface {
	Deliver(ctx context.Context, ch store.Channel, m store.Message) (detail string, err error)
}

// permanentError is a failure that another try will not fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return permanentError{err} }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// sender wraps the Deliverer.
type sender struct {
	deliver Deliverer
}

// notify claims due messages and delivers them.
func (w *Worker) notify(ctx context.Context) {
	t := time.NewTicker(w.cfg.Poll)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			n, err := w.DeliverDue(ctx)
			if err != nil && ctx.Err() == nil {
				w.log.Error("claiming outbox messages failed", "error", err)
			}
			if n == 0 || err != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.pokeNotifier:
		}
	}
}

// DeliverDue claims up to a batch of due messages and delivers them; it
// returns how many it claimed. A batch is what one lease covers when
// every delivery takes its whole time (at least one, at most 20).
func (w *Worker) DeliverDue(ctx context.Context) (int, error) {
	batch := min(20, max(1, int((w.cfg.LeaseTTL-w.cfg.LeaseTTL/5)/deliveryTimeout)))
	msgs, err := w.store.ClaimMessages(ctx, w.owner, batch, w.cfg.LeaseTTL)
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if m.RescuedFrom != "" {
			w.count(func(s *Stats) { s.MessagesRescued++ })
		}
		w.safely("delivery", func() { w.deliverOne(ctx, m) })
	}
	return len(msgs), nil
}

// deliveryTimeout bounds one delivery attempt.
const deliveryTimeout = time.Minute

func (w *Worker) deliverOne(ctx context.Context, m store.Message) {
	// An attempt ends well before the message's lease does: past it,
	// another worker may claim the message and deliver it again. What is
	// left of the lease after the batch's earlier deliveries is too short:
	// leave the message to the next claim.
	left := m.LeaseUntil.Sub(w.now()) - w.cfg.LeaseTTL/5
	if left < time.Second {
		return
	}
	ch, err := w.store.GetChannel(ctx, m.ChannelID)
	if err != nil {
		return // deleted meanwhile: the message went with it
	}
	dctx, cancel := context.WithTimeout(ctx, min(deliveryTimeout, left))
	detail, err := w.send.deliver.Deliver(dctx, ch, m)
	cancel()
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer wcancel()
	if err == nil {
		if err := w.store.MarkDelivered(wctx, m.ID, w.owner, detail); err != nil {
			w.log.Warn("marking a delivery failed", "message", m.ID, "error", err)
		}
		w.count(func(s *Stats) { s.Delivered++ })
		return
	}
	if ctx.Err() != nil {
		// Shutdown during the delivery: the lease expires and the message
		// is claimed again after the restart.
		return
	}
	var retry time.Time
	var perm permanentError
	if !errors.As(err, &perm) {
		retry = w.cfg.Retry.Next(m.CreatedAt, m.Attempts, w.now())
	}
	if retry.IsZero() {
		w.count(func(s *Stats) { s.Abandoned++ })
	} else {
		w.count(func(s *Stats) { s.Retried++ })
	}
	w.log.Warn("delivery failed", "message", m.ID, "channel", ch.ID, "kind", ch.Kind, "attempt", m.Attempts, "retry_at", retry, "error", err)
	if err := w.store.MarkFailed(wctx, m.ID, w.owner, err.Error(), detail, retry); err != nil {
		w.log.Warn("marking a failed delivery failed", "message", m.ID, "error", err)
	}
}

// SendTest queues a test message to one of the user's channels ("send
// test"), and wakes the notifier.
func (w *Worker) SendTest(ctx context.Context, user store.UserID, id store.ChannelID) (store.MessageID, error) {
	ch, err := w.store.GetChannel(ctx, id)
	if err != nil || ch.UserID != user {
		return 0, store.ErrNotFound
	}
	return QueueTest(ctx, w.store, ch, w.now(), w.cfg.BaseURL, w.Poke)
}

// QueueTest queues a test message to ch; poke (may be nil) wakes a
// notifier.
func QueueTest(ctx context.Context, st store.Outbox, ch store.Channel, now time.Time, baseURL string, poke func()) (store.MessageID, error) {
	n := Notification{Version: NotificationVersion, Type: TypeTest, Key: "test:" + strconv.FormatInt(now.UnixNano(), 36), Created: now.UTC(),
		Text: "This is a test message from mailtls: alerts for your saved domains will arrive like this."}
	if baseURL != "" {
		n.UnsubscribeURL = baseURL + "/unsubscribe/" + ch.UnsubscribeID
	}
	payload, err := json.Marshal(n)
	if err != nil {
		return 0, err
	}
	ids, err := st.Enqueue(ctx, store.NewMessage{ChannelID: ch.ID, Kind: TypeTest, Key: n.Key, Payload: payload})
	if err != nil {
		return 0, err
	}
	if poke != nil {
		poke()
	}
	return ids[0], nil
}

// DefaultChannel gives an account without any channel an e-mail channel
// to its own verified address, so that the alerts of a first saved domain
// reach someone. Call it when a domain is saved, not on every scan: an
// account whose owner removed every channel must stay without.
func DefaultChannel(ctx context.Context, st store.Store, user store.UserID) error {
	chans, err := st.ListChannels(ctx, user)
	if err != nil || len(chans) > 0 {
		return err
	}
	u, err := st.GetUser(ctx, user)
	if err != nil || u.EmailVerifiedAt.IsZero() {
		return err
	}
	ch, err := st.CreateChannel(ctx, store.NewChannel{UserID: user, Kind: store.ChannelEmail, Target: u.Email})
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	if err != nil {
		return err
	}
	return st.MarkChannelVerified(ctx, ch.ID)
}
