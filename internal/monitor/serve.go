package monitor

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/mail"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/webhook"
)

// ServeOptions are what `mailtls serve` builds its worker from.
type ServeOptions struct {
	Store store.Store
	// Scanner is the web checker's scanner (behind its SSRF guard, with its
	// EHLO name); every monitoring scan probes SMTP.
	Scanner *scan.Scanner
	// Mail sends alert mail; nil: e-mail channels fail permanently with a
	// message saying no relay is configured.
	Mail MailFunc
	// Webhook delivers webhooks (its dialer guarded, port 443 only).
	Webhook *webhook.Client
	// MessageIDHost is the right-hand side of alert Message-IDs.
	MessageIDHost string
	Log           *slog.Logger
	Now           func() time.Time
}

// NewScanFunc scans a domain as `mailtls check` does, SMTP probes
// included: the evidence, the judgement at now, the JSON document.
func NewScanFunc(base *scan.Scanner, now func() time.Time) ScanFunc {
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, domain string) *report.Document {
		sc := *base
		// A scan cut off by its deadline still makes a document: what it
		// could not see is reported as not determined.
		return report.NewDocument(check.Evaluate(sc.Scan(ctx, domain), now()), domain)
	}
}

// NewServe makes the worker of `mailtls serve`: every part on (scheduler,
// notifier, janitor, digests).
func NewServe(cfg Config, o ServeOptions) (*Worker, error) {
	if o.Scanner == nil {
		return nil, errors.New("monitor: no scanner")
	}
	cfg.Scheduler, cfg.Notifier, cfg.Janitor, cfg.Digest = true, true, true, true
	return New(cfg, Options{Store: o.Store, Scan: NewScanFunc(o.Scanner, o.Now), Now: o.Now, Log: o.Log, Resolver: o.Scanner.Resolver,
		Deliver: Channels{Mail: o.Mail, Webhook: o.Webhook, MessageIDHost: o.MessageIDHost, Now: o.Now}})
}

// MailVia sends alert mail through a mail sender (the server's relay); a
// message the sender refuses as invalid is not retried.
func MailVia(s mail.Sender) MailFunc {
	return func(ctx context.Context, to string, e Email, id string) error {
		err := s.Send(ctx, &mail.Message{To: to, Subject: e.Subject, Text: e.Text, Header: e.Header, ID: id})
		if errors.Is(err, mail.ErrInvalid) {
			return Permanent(err)
		}
		return err
	}
}
