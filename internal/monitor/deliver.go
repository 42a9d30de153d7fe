package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/webhook"
)

// MailFunc sends one rendered mail to one address. id is the Message-ID
// (without brackets) derived from the outbox message, the same on every
// attempt, so that a mail sent twice after a crash can be recognised.
// Errors wrapped with Permanent are not retried.
type MailFunc func(ctx context.Context, to string, e Email, id string) error

// Channels is the Deliverer of the server: e-mail through Mail, webhooks
// through Webhook. A channel kind whose transport is nil fails
// permanently with a message saying so (the delivery log shows it).
type Channels struct {
	Mail    MailFunc
	Webhook *webhook.Client
	// MessageIDHost is the right-hand side of Message-IDs (the host name
	// of the web checker, or "mailtls.invalid").
	MessageIDHost string
	Now           func() time.Time
}

// Deliver implements Deliverer.
func (c Channels) Deliver(ctx context.Context, ch store.Channel, m store.Message) (string, error) {
	var n Notification
	if err := json.Unmarshal(m.Payload, &n); err != nil {
		return "", Permanent(fmt.Errorf("the stored message is not a notification: %w", err))
	}
	switch ch.Kind {
	case store.ChannelEmail:
		if c.Mail == nil {
			return "", Permanent(errors.New("no mail transport configured"))
		}
		host := c.MessageIDHost
		if host == "" {
			host = "mailtls.invalid"
		}
		id := "outbox-" + strconv.FormatInt(int64(m.ID), 10) + "@" + host
		if err := c.Mail(ctx, ch.Target, RenderEmail(n), id); err != nil {
			return "", err
		}
		return "accepted by the relay", nil
	case store.ChannelWebhook:
		if c.Webhook == nil {
			return "", Permanent(errors.New("no webhook client configured"))
		}
		now := time.Now
		if c.Now != nil {
			now = c.Now
		}
		// The body is the stored notification as it was decided; the
		// signature is made at each attempt (its timestamp is the
		// attempt's, so a receiver's replay window holds).
		r, err := c.Webhook.Deliver(ctx, webhook.Delivery{URL: ch.Target, Secret: ch.Secret, ID: strconv.FormatInt(int64(m.ID), 10),
			Event: n.Type, Body: m.Payload, At: now()})
		if err != nil {
			var blocked *dial.BlockedError
			if errors.As(err, &blocked) || r.Status == http.StatusGone {
				// A target that points at a private address, or says it
				// is gone, will not get better by retrying.
				return r.Detail, Permanent(err)
			}
			return r.Detail, err
		}
		return r.Detail, nil
	}
	return "", Permanent(fmt.Errorf("unknown channel kind %q", ch.Kind))
}
