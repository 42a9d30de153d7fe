package store

import (
	"context"
	"time"
)

// ChannelID identifies an alert channel.
type ChannelID int64

// ChannelKind is how alerts reach the user.
type ChannelKind string

// Channel kinds.
const (
	ChannelEmail   ChannelKind = "email"
	ChannelWebhook ChannelKind = "webhook"
)

// Channel is an alert destination of an account.
type Channel struct {
	ID     ChannelID
	UserID UserID
	Kind   ChannelKind
	Target string // e-mail address or https URL
	Secret []byte // webhook HMAC-SHA256 key
	// UnsubscribeID is the unguessable id of the channel's one-click
	// unsubscribe link (RFC 8058).
	UnsubscribeID string
	CreatedAt     time.Time
	VerifiedAt    time.Time
	DisabledAt    time.Time // unsubscribed or turned off
	// Digest: the channel gets one daily digest, at DigestHour (UTC),
	// instead of each alert as it happens.
	Digest     bool
	DigestHour int
}

// NewChannel is a channel to add.
type NewChannel struct {
	UserID UserID
	Kind   ChannelKind
	Target string
	Secret []byte
}

// Channels are alert destinations.
type Channels interface {
	// CreateChannel adds a channel; ErrConflict when the account has the
	// same kind and target.
	CreateChannel(ctx context.Context, c NewChannel) (Channel, error)
	GetChannel(ctx context.Context, id ChannelID) (Channel, error)
	ListChannels(ctx context.Context, user UserID) ([]Channel, error)
	MarkChannelVerified(ctx context.Context, id ChannelID) error
	// SetChannelDisabled turns one of the user's channels off or on.
	SetChannelDisabled(ctx context.Context, user UserID, id ChannelID, disabled bool) error
	// Unsubscribe disables the channel of a one-click unsubscribe link
	// (no login: the id is the credential); ErrNotFound for an unknown id.
	Unsubscribe(ctx context.Context, unsubscribeID string) (Channel, error)
	DeleteChannel(ctx context.Context, user UserID, id ChannelID) error
	// SetChannelDigest switches one of the user's channels to a daily
	// digest at hour (0–23, UTC) or back to alerts as they happen.
	SetChannelDigest(ctx context.Context, user UserID, id ChannelID, digest bool, hour int) error
	// ListDigestChannels lists the verified, enabled channels whose digest
	// is due at hour, by id.
	ListDigestChannels(ctx context.Context, hour int) ([]Channel, error)
}

// MessageID identifies an outbox message.
type MessageID int64

// NewMessage is an alert (or digest, or test message) to deliver.
type NewMessage struct {
	ChannelID ChannelID
	DomainID  DomainID // 0 when not about one domain
	Kind      string   // e.g. "alert", "resolved", "digest", "test"
	// Key deduplicates per channel: a second message with the same key is
	// not queued again ("" never deduplicates). Use it for decisions that
	// may be replayed, e.g. "domain 7 finding X opened in scan 42".
	Key       string
	Payload   []byte
	NotBefore time.Time // zero: now
}

// Message is a queued message and its delivery state.
type Message struct {
	ID            MessageID
	ChannelID     ChannelID
	UserID        UserID
	DomainID      DomainID
	Kind          string
	Key           string
	Payload       []byte
	CreatedAt     time.Time
	Attempts      int // claims so far, this one included
	NextAttemptAt time.Time
	LeaseOwner    string
	LeaseUntil    time.Time
	RescuedFrom   string // the owner of an expired lease taken over
	DeliveredAt   time.Time
	AbandonedAt   time.Time // given up after the retry policy ran out
	LastError     string
}

// Delivery is one attempt in a channel's delivery log.
type Delivery struct {
	ID        int64
	MessageID MessageID
	ChannelID ChannelID
	Kind      string
	At        time.Time
	Error     string // "" when delivered
	Detail    string // e.g. "HTTP 204" or the relay's reply
}

// Outbox is the transactional outbox of alerts. Delivery is claimed with a
// lease: two notifiers never hold the same message, a delivered message is
// never claimed again, and a message whose notifier died is claimed again
// once its lease expires (so receivers should deduplicate by message ID).
type Outbox interface {
	// Enqueue queues messages; a message whose (channel, key) is queued
	// already is skipped. It returns the IDs, the existing one for a
	// skipped message.
	Enqueue(ctx context.Context, msgs ...NewMessage) ([]MessageID, error)
	// ClaimMessages leases up to limit due messages of enabled channels,
	// oldest due first, for ttl, and counts the attempt.
	ClaimMessages(ctx context.Context, owner string, limit int, ttl time.Duration) ([]Message, error)
	// MarkDelivered records a delivery; ErrLeaseLost when the lease passed
	// to another owner.
	MarkDelivered(ctx context.Context, id MessageID, owner, detail string) error
	// MarkFailed records a failed attempt; the message is due again at
	// retryAt, or abandoned when retryAt is zero. ErrLeaseLost as above.
	MarkFailed(ctx context.Context, id MessageID, owner, errText, detail string, retryAt time.Time) error
	GetMessage(ctx context.Context, id MessageID) (Message, error)
	// ListDeliveries is the channel's delivery log, newest first.
	ListDeliveries(ctx context.Context, user UserID, channel ChannelID, limit int) ([]Delivery, error)
}

// RetryPolicy is exponential backoff for outbox deliveries.
type RetryPolicy struct {
	Base        time.Duration // wait after the first failure
	Max         time.Duration // longest wait
	GiveUpAfter time.Duration // since the message was created
}

// DefaultRetry retries for a day: 30 s, 1 min, 2 min … capped at 1 h.
var DefaultRetry = RetryPolicy{Base: 30 * time.Second, Max: time.Hour, GiveUpAfter: 24 * time.Hour}

// Next is when to try a message again after its attempts-th failure at
// now, or zero to give up.
func (p RetryPolicy) Next(created time.Time, attempts int, now time.Time) time.Time {
	wait := p.Base
	for i := 1; i < attempts && wait < p.Max; i++ {
		wait *= 2
	}
	wait = min(wait, p.Max)
	next := now.Add(wait)
	if next.Sub(created) > p.GiveUpAfter {
		return time.Time{}
	}
	return next
}
