package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

const channelCols = "id, user_id, kind, target, secret, unsubscribe_id, created_at, verified_at, disabled_at, digest_hour"

func scanChannel(row interface{ Scan(...any) error }) (store.Channel, error) {
	var c store.Channel
	var kind string
	var hour sql.NullInt64
	err := row.Scan(&c.ID, &c.UserID, &kind, &c.Target, &c.Secret, &c.UnsubscribeID, at(&c.CreatedAt), at(&c.VerifiedAt), at(&c.DisabledAt), &hour)
	c.Kind = store.ChannelKind(kind)
	c.Digest, c.DigestHour = hour.Valid, int(hour.Int64)
	return c, err
}

// CreateChannel implements store.Channels.
func (db *DB) CreateChannel(ctx context.Context, n store.NewChannel) (store.Channel, error) {
	if n.Kind != store.ChannelEmail && n.Kind != store.ChannelWebhook {
		return store.Channel{}, errors.New("sqlstore: channel kind must be email or webhook")
	}
	unsub, err := db.randomID()
	if err != nil {
		return store.Channel{}, err
	}
	c, err := scanChannel(db.w.QueryRowContext(ctx, `INSERT INTO channels (user_id, kind, target, secret, unsubscribe_id, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+channelCols, n.UserID, string(n.Kind), n.Target, n.Secret, unsub, tv(db.clock())))
	return c, db.wrap(err)
}

// GetChannel implements store.Channels.
func (db *DB) GetChannel(ctx context.Context, id store.ChannelID) (store.Channel, error) {
	c, err := scanChannel(db.r.QueryRowContext(ctx, "SELECT "+channelCols+" FROM channels WHERE id = $1", id))
	return c, db.wrap(err)
}

// ListChannels implements store.Channels.
func (db *DB) ListChannels(ctx context.Context, user store.UserID) ([]store.Channel, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT "+channelCols+" FROM channels WHERE user_id = $1 ORDER BY id", user)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanChannel)
}

// MarkChannelVerified implements store.Channels.
func (db *DB) MarkChannelVerified(ctx context.Context, id store.ChannelID) error {
	res, err := db.w.ExecContext(ctx, "UPDATE channels SET verified_at = COALESCE(verified_at, $2) WHERE id = $1", id, tv(db.clock()))
	return db.wrap(affected(res, err, store.ErrNotFound))
}

// SetChannelDisabled implements store.Channels.
func (db *DB) SetChannelDisabled(ctx context.Context, user store.UserID, id store.ChannelID, disabled bool) error {
	var v any
	if disabled {
		v = tv(db.clock())
	}
	res, err := db.w.ExecContext(ctx, "UPDATE channels SET disabled_at = $3 WHERE id = $1 AND user_id = $2", id, user, v)
	return db.wrap(affected(res, err, store.ErrNotFound))
}

// Unsubscribe implements store.Channels.
func (db *DB) Unsubscribe(ctx context.Context, unsubscribeID string) (store.Channel, error) {
	c, err := scanChannel(db.w.QueryRowContext(ctx, `UPDATE channels SET disabled_at = COALESCE(disabled_at, $2)
		WHERE unsubscribe_id = $1 RETURNING `+channelCols, unsubscribeID, tv(db.clock())))
	return c, db.wrap(err)
}

// DeleteChannel implements store.Channels.
func (db *DB) DeleteChannel(ctx context.Context, user store.UserID, id store.ChannelID) error {
	res, err := db.w.ExecContext(ctx, "DELETE FROM channels WHERE id = $1 AND user_id = $2", id, user)
	return db.wrap(affected(res, err, store.ErrNotFound))
}

// SetChannelDigest implements store.Channels.
func (db *DB) SetChannelDigest(ctx context.Context, user store.UserID, id store.ChannelID, digest bool, hour int) error {
	if hour < 0 || hour > 23 {
		return errors.New("sqlstore: a digest hour is 0 to 23")
	}
	var v any
	if digest {
		v = hour
	}
	res, err := db.w.ExecContext(ctx, "UPDATE channels SET digest_hour = $3 WHERE id = $1 AND user_id = $2", id, user, v)
	return db.wrap(affected(res, err, store.ErrNotFound))
}

// ListDigestChannels implements store.Channels.
func (db *DB) ListDigestChannels(ctx context.Context, hour int) ([]store.Channel, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT "+channelCols+` FROM channels
		WHERE digest_hour = $1 AND verified_at IS NOT NULL AND disabled_at IS NULL ORDER BY id`, hour)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanChannel)
}

// Enqueue implements store.Outbox.
func (db *DB) Enqueue(ctx context.Context, msgs ...store.NewMessage) ([]store.MessageID, error) {
	var ids []store.MessageID
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		ids, err = enqueue(ctx, tx, db.clock(), msgs)
		return err
	})
	return ids, db.wrap(err)
}

func enqueue(ctx context.Context, tx *sql.Tx, now time.Time, msgs []store.NewMessage) ([]store.MessageID, error) {
	ids := make([]store.MessageID, len(msgs))
	for i, m := range msgs {
		due := m.NotBefore
		if due.IsZero() {
			due = now
		}
		payload := m.Payload
		if payload == nil {
			payload = []byte{}
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO outbox (channel_id, domain_id, kind, dedupe_key, payload, created_at, next_attempt_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (channel_id, dedupe_key) DO NOTHING RETURNING id`,
			m.ChannelID, nid(m.DomainID), m.Kind, ns(m.Key), payload, tv(now), tv(due)).Scan(&ids[i])
		if errors.Is(err, sql.ErrNoRows) {
			// Queued before under the same key.
			err = tx.QueryRowContext(ctx, "SELECT id FROM outbox WHERE channel_id = $1 AND dedupe_key = $2", m.ChannelID, m.Key).Scan(&ids[i])
		}
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

const messageCols = "o.id, o.channel_id, c.user_id, o.domain_id, o.kind, o.dedupe_key, o.payload, o.created_at, o.attempts, " +
	"o.next_attempt_at, o.lease_owner, o.lease_until, o.rescued_from, o.delivered_at, o.abandoned_at, o.last_error"

func scanMessage(row interface{ Scan(...any) error }) (store.Message, error) {
	var m store.Message
	err := row.Scan(&m.ID, &m.ChannelID, &m.UserID, nidc(&m.DomainID), &m.Kind, nstr(&m.Key), &m.Payload, at(&m.CreatedAt), &m.Attempts,
		at(&m.NextAttemptAt), nstr(&m.LeaseOwner), at(&m.LeaseUntil), nstr(&m.RescuedFrom), at(&m.DeliveredAt), at(&m.AbandonedAt), &m.LastError)
	return m, err
}

// ClaimMessages implements store.Outbox.
func (db *DB) ClaimMessages(ctx context.Context, owner string, limit int, ttl time.Duration) ([]store.Message, error) {
	if owner == "" {
		return nil, errors.New("sqlstore: empty lease owner")
	}
	now := db.clock()
	var out []store.Message
	err := db.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE outbox SET rescued_from = lease_owner, lease_owner = $1, lease_until = $2, attempts = attempts + 1
			WHERE id IN (SELECT id FROM outbox
				WHERE delivered_at IS NULL AND abandoned_at IS NULL
				AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until <= $3)
				AND channel_id IN (SELECT id FROM channels WHERE disabled_at IS NULL)
				ORDER BY next_attempt_at, id LIMIT $4`+db.d.SkipLocked+`)
			RETURNING id`, owner, tv(now.Add(ttl)), tv(now), limit)
		if err != nil {
			return err
		}
		ids, err := collect(rows, func(row interface{ Scan(...any) error }) (store.MessageID, error) {
			var id store.MessageID
			return id, row.Scan(&id)
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			m, err := scanMessage(tx.QueryRowContext(ctx, "SELECT "+messageCols+" FROM outbox o JOIN channels c ON c.id = o.channel_id WHERE o.id = $1", id))
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// finishAttempt records an attempt under the lease and logs it.
func (db *DB) finishAttempt(ctx context.Context, id store.MessageID, owner, set, errText, detail string, args ...any) error {
	now := db.clock()
	return db.tx(ctx, func(tx *sql.Tx) error {
		var channel store.ChannelID
		args = append([]any{id, owner, tv(now)}, args...)
		err := tx.QueryRowContext(ctx, "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, "+set+
			" WHERE id = $1 AND lease_owner = $2 AND delivered_at IS NULL RETURNING channel_id", args...).Scan(&channel)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrLeaseLost
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO outbox_deliveries (message_id, channel_id, created_at, error, detail) VALUES ($1, $2, $3, $4, $5)",
			id, channel, tv(now), errText, detail)
		return err
	})
}

// MarkDelivered implements store.Outbox.
func (db *DB) MarkDelivered(ctx context.Context, id store.MessageID, owner, detail string) error {
	return db.finishAttempt(ctx, id, owner, "delivered_at = $3, last_error = ''", "", detail)
}

// MarkFailed implements store.Outbox.
func (db *DB) MarkFailed(ctx context.Context, id store.MessageID, owner, errText, detail string, retryAt time.Time) error {
	if errText == "" {
		errText = "failed"
	}
	if retryAt.IsZero() {
		return db.finishAttempt(ctx, id, owner, "abandoned_at = $3, last_error = $4", errText, detail, errText)
	}
	return db.finishAttempt(ctx, id, owner, "next_attempt_at = $5, last_error = $4", errText, detail, errText, tv(retryAt))
}

// GetMessage implements store.Outbox.
func (db *DB) GetMessage(ctx context.Context, id store.MessageID) (store.Message, error) {
	m, err := scanMessage(db.r.QueryRowContext(ctx, "SELECT "+messageCols+" FROM outbox o JOIN channels c ON c.id = o.channel_id WHERE o.id = $1", id))
	return m, db.wrap(err)
}

// ListDeliveries implements store.Outbox.
func (db *DB) ListDeliveries(ctx context.Context, user store.UserID, channel store.ChannelID, limit int) ([]store.Delivery, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT d.id, d.message_id, d.channel_id, o.kind, d.created_at, d.error, d.detail
		FROM outbox_deliveries d JOIN outbox o ON o.id = d.message_id JOIN channels c ON c.id = d.channel_id
		WHERE d.channel_id = $1 AND c.user_id = $2 ORDER BY d.created_at DESC, d.id DESC LIMIT $3`, channel, user, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row interface{ Scan(...any) error }) (store.Delivery, error) {
		var d store.Delivery
		err := row.Scan(&d.ID, &d.MessageID, &d.ChannelID, &d.Kind, at(&d.At), &d.Error, &d.Detail)
		return d, err
	})
}
