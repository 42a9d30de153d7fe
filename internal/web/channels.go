package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/webhook"
)

// The alert channels of an account through the API: list, add (a webhook
// with its signing secret shown once, or the account's own verified
// address), change (on/off, daily digest), delete, send a test message,
// and the delivery log.

func (s *Server) routesChannels(api func(string, store.Scope, func(http.ResponseWriter, *http.Request, store.UserID))) {
	m := s.Monitor
	api("GET /api/v1/channels", store.ScopeRead, m.listChannels)
	api("POST /api/v1/channels", store.ScopeManage, m.addChannel)
	api("PATCH /api/v1/channels/{id}", store.ScopeManage, m.changeChannel)
	api("DELETE /api/v1/channels/{id}", store.ScopeManage, m.deleteChannel)
	api("POST /api/v1/channels/{id}/test", store.ScopeManage, m.testChannel)
	api("GET /api/v1/channels/{id}/deliveries", store.ScopeRead, m.channelDeliveries)
}

type channelResource struct {
	ID         int64      `json:"id"`
	Kind       string     `json:"kind"`
	Target     string     `json:"target"`
	CreatedAt  time.Time  `json:"created_at"`
	Verified   bool       `json:"verified"`
	DisabledAt *time.Time `json:"disabled_at"`
	Digest     bool       `json:"digest"`
	DigestHour *int       `json:"digest_hour"`
	// Secret is the webhook's signing key, in the answer that created
	// the channel only.
	Secret string `json:"secret,omitempty"`
}

func channelView(c store.Channel) channelResource {
	v := channelResource{ID: int64(c.ID), Kind: string(c.Kind), Target: c.Target, CreatedAt: c.CreatedAt.UTC(),
		Verified: !c.VerifiedAt.IsZero(), DisabledAt: optTime(c.DisabledAt), Digest: c.Digest}
	if c.Digest {
		h := c.DigestHour
		v.DigestHour = &h
	}
	return v
}

func (m *Monitoring) listChannels(w http.ResponseWriter, r *http.Request, user store.UserID) {
	chans, err := m.Store.ListChannels(r.Context(), user)
	if err != nil {
		internalError(w, err)
		return
	}
	out := []channelResource{}
	for _, c := range chans {
		out = append(out, channelView(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"channels": out})
}

// maxChannels bounds an account's channels.
const maxChannels = 20

// channelRefusal is why a channel was not added, in words for people
// (pages) and a code for the API.
type channelRefusal struct {
	status int
	code   string
	msg    string
}

func (e *channelRefusal) Error() string { return e.msg }

// AddressConfirmer mails a link that confirms an alert address other than
// the account's own (account.Service does).
type AddressConfirmer interface {
	SendAddressConfirmation(ctx context.Context, user store.UserID, address string) error
}

// newChannel adds a channel to the user's account. A webhook's URL must
// pass the SSRF guard (https, port 443, a public address); its signing
// secret is returned, to be shown once. An e-mail channel to the account's
// own verified address is on at once; one to another address is pending
// until the link mailed there is opened (no alert goes to an address whose
// reader did not ask for it), and needs m.Confirmer. Refusals are
// *channelRefusal.
func (m *Monitoring) newChannel(ctx context.Context, user store.UserID, kind store.ChannelKind, target string) (c store.Channel, secret string, err error) {
	if chans, err := m.Store.ListChannels(ctx, user); err != nil {
		return store.Channel{}, "", err
	} else if len(chans) >= maxChannels {
		return store.Channel{}, "", &channelRefusal{http.StatusUnprocessableEntity, "too_many", fmt.Sprintf("an account has at most %d channels", maxChannels)}
	}
	n := store.NewChannel{UserID: user, Kind: kind}
	verified := true
	switch kind {
	case store.ChannelWebhook:
		guard := m.WebhookGuard
		if guard == nil {
			guard = dial.NewGuardPorts(dial.WebhookPorts)
		}
		u, err := webhook.CheckURL(target, guard)
		if err != nil {
			return store.Channel{}, "", &channelRefusal{http.StatusUnprocessableEntity, "invalid_channel", "url: " + err.Error()}
		}
		key := make([]byte, 32)
		rand.Read(key)
		n.Target, n.Secret = u.String(), []byte("whsec_"+hex.EncodeToString(key))
	case store.ChannelEmail:
		u, err := m.Store.GetUser(ctx, user)
		if err != nil {
			return store.Channel{}, "", err
		}
		if target == "" {
			target = u.Email
		}
		addr, err := account.CheckEmail(target)
		if err != nil {
			return store.Channel{}, "", &channelRefusal{http.StatusUnprocessableEntity, "invalid_channel", "address: not one plain e-mail address"}
		}
		own := addr == u.Email && !u.EmailVerifiedAt.IsZero()
		if !own && m.Confirmer == nil {
			return store.Channel{}, "", &channelRefusal{http.StatusUnprocessableEntity, "invalid_channel", "address: alerts can go to the account's own verified address only"}
		}
		n.Target, verified = addr, own
	default:
		return store.Channel{}, "", &channelRefusal{http.StatusUnprocessableEntity, "invalid_channel", `kind must be "email" or "webhook"`}
	}
	c, err = m.Store.CreateChannel(ctx, n)
	if errors.Is(err, store.ErrConflict) {
		return store.Channel{}, "", &channelRefusal{http.StatusConflict, "exists", "the account has this channel already"}
	}
	if err != nil {
		return store.Channel{}, "", err
	}
	if verified {
		// The owner gave the URL (which the guard checks again at every
		// delivery) or proved the address at sign-up.
		if err := m.Store.MarkChannelVerified(ctx, c.ID); err != nil {
			return store.Channel{}, "", err
		}
		c.VerifiedAt = m.now()
	} else if err := m.Confirmer.SendAddressConfirmation(ctx, user, n.Target); err != nil {
		// Not sent (the queue is full or the server stopping): no
		// pending channel waits for a link that never comes.
		m.Store.DeleteChannel(ctx, user, c.ID)
		return store.Channel{}, "", err
	}
	return c, string(n.Secret), nil
}

func (m *Monitoring) addChannel(w http.ResponseWriter, r *http.Request, user store.UserID) {
	var req struct {
		Kind    string `json:"kind"`
		URL     string `json:"url"`
		Address string `json:"address"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	target := req.URL
	if req.Kind == string(store.ChannelEmail) {
		target = req.Address
	}
	c, secret, err := m.newChannel(r.Context(), user, store.ChannelKind(req.Kind), target)
	var refused *channelRefusal
	if errors.As(err, &refused) {
		apiError(w, refused.status, refused.code, refused.msg)
		return
	}
	if err != nil {
		internalError(w, err)
		return
	}
	v := channelView(c)
	v.Secret = secret
	w.Header().Set("Location", fmt.Sprintf("/api/v1/channels/%d", c.ID))
	writeJSON(w, http.StatusCreated, v)
}

// ownedChannel loads the user's channel of the path (404 for another's).
func (m *Monitoring) ownedChannel(w http.ResponseWriter, r *http.Request, user store.UserID) (store.Channel, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err == nil && id > 0 {
		c, err := m.Store.GetChannel(r.Context(), store.ChannelID(id))
		if err == nil && c.UserID == user {
			return c, true
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			internalError(w, err)
			return store.Channel{}, false
		}
	}
	apiError(w, http.StatusNotFound, "not_found", "no such channel")
	return store.Channel{}, false
}

func (m *Monitoring) changeChannel(w http.ResponseWriter, r *http.Request, user store.UserID) {
	c, ok := m.ownedChannel(w, r, user)
	if !ok {
		return
	}
	var req struct {
		Disabled   *bool `json:"disabled"`
		Digest     *bool `json:"digest"`
		DigestHour *int  `json:"digest_hour"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.DigestHour != nil && (*req.DigestHour < 0 || *req.DigestHour > 23) {
		apiError(w, http.StatusUnprocessableEntity, "invalid_channel", "digest_hour is an hour of the day in UTC, 0 to 23")
		return
	}
	if req.Disabled != nil {
		if err := m.Store.SetChannelDisabled(r.Context(), user, c.ID, *req.Disabled); err != nil {
			internalError(w, err)
			return
		}
	}
	if req.Digest != nil || req.DigestHour != nil {
		digest, hour := c.Digest, c.DigestHour
		if req.Digest != nil {
			digest = *req.Digest
		}
		if req.DigestHour != nil {
			hour, digest = *req.DigestHour, req.Digest == nil || *req.Digest
		}
		if err := m.Store.SetChannelDigest(r.Context(), user, c.ID, digest, hour); err != nil {
			internalError(w, err)
			return
		}
	}
	c, err := m.Store.GetChannel(r.Context(), c.ID)
	if err != nil {
		internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, channelView(c))
}

func (m *Monitoring) deleteChannel(w http.ResponseWriter, r *http.Request, user store.UserID) {
	c, ok := m.ownedChannel(w, r, user)
	if !ok {
		return
	}
	if err := m.Store.DeleteChannel(r.Context(), user, c.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		internalError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// testChannel queues a test message ("send test"); its delivery shows in
// the channel's log.
func (m *Monitoring) testChannel(w http.ResponseWriter, r *http.Request, user store.UserID) {
	c, ok := m.ownedChannel(w, r, user)
	if !ok {
		return
	}
	if !c.DisabledAt.IsZero() {
		apiError(w, http.StatusConflict, "disabled", "the channel is off; turn it on first")
		return
	}
	if c.VerifiedAt.IsZero() {
		apiError(w, http.StatusConflict, "unconfirmed", "the address is not confirmed yet: its reader must open the link mailed to it first")
		return
	}
	id, err := monitor.QueueTest(r.Context(), m.Store, c, m.now(), m.BaseURL, m.Poke)
	if err != nil {
		internalError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"message_id": int64(id)})
}

func (m *Monitoring) channelDeliveries(w http.ResponseWriter, r *http.Request, user store.UserID) {
	c, ok := m.ownedChannel(w, r, user)
	if !ok {
		return
	}
	ds, err := m.Store.ListDeliveries(r.Context(), user, c.ID, 100)
	if err != nil {
		internalError(w, err)
		return
	}
	type delivery struct {
		MessageID int64     `json:"message_id"`
		Kind      string    `json:"kind"`
		At        time.Time `json:"at"`
		OK        bool      `json:"ok"`
		Error     string    `json:"error,omitempty"`
		Detail    string    `json:"detail,omitempty"`
	}
	out := []delivery{}
	for _, d := range ds {
		out = append(out, delivery{MessageID: int64(d.MessageID), Kind: d.Kind, At: d.At.UTC(), OK: d.Error == "", Error: d.Error, Detail: d.Detail})
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": out})
}
