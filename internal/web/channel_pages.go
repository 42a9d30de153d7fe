package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/store"
)

// The alert channels' pages under /settings/channels: the list with each
// channel's state, adding an e-mail address (another than the account's
// own is confirmed by a link mailed to it first) or a webhook (its secret
// shown once), a channel's delivery log, "send test", on/off, a daily
// digest, removal; and the public page of an address's confirmation link.
// Every form carries the session's CSRF token (the page wrapper checks it).

func (s *Server) routesChannelPages(page func(string, func(http.ResponseWriter, *http.Request, store.UserID))) {
	page("GET /settings/channels", s.channelsPage)
	page("POST /settings/channels", s.addChannelForm)
	page("GET /settings/channels/{id}", s.channelPage)
	page("POST /settings/channels/{id}/test", s.testChannelForm)
	page("POST /settings/channels/{id}/state", s.channelStateForm)
	page("POST /settings/channels/{id}/digest", s.channelDigestForm)
	page("POST /settings/channels/{id}/delete", s.deleteChannelForm)
}

// channelRow is a channel as the pages show it.
type channelRow struct {
	store.Channel
	State string // "on", "off", "waiting for confirmation"
}

func rowOf(c store.Channel) channelRow {
	row := channelRow{Channel: c, State: "on"}
	switch {
	case c.VerifiedAt.IsZero():
		row.State = "waiting for confirmation"
	case !c.DisabledAt.IsZero():
		row.State = "off"
	case c.Digest:
		row.State = fmt.Sprintf("on, daily digest at %02d:00 UTC", c.DigestHour)
	}
	return row
}

type channelsView struct {
	page
	Notice   string
	Error    string
	ErrorIn  string // "email" or "webhook": the form the error belongs to
	Channels []channelRow
	// NewSecret is a new webhook's signing secret, shown once.
	NewSecret string
	NewHook   string
	Address   string // the e-mail form's value, kept after an error
	URL       string // the webhook form's value, kept after an error
	Own       string // the account's address
	Max       int
}

var channelNotices = map[string]string{
	"email":     "The address was added: alerts go there from now on.",
	"pending":   "A confirmation link was mailed to the address. No alert goes there until its reader opens the link.",
	"test":      "A test message is queued: its delivery shows in the channel's log in a moment.",
	"off":       "The channel is off: no alerts go there until you turn it on.",
	"on":        "The channel is on again.",
	"removed":   "The channel was removed with its queue and log.",
	"digest":    "The channel gets one daily digest from now on.",
	"immediate": "The channel gets each alert as it happens from now on.",
}

func (s *Server) channels(w http.ResponseWriter, r *http.Request, user store.UserID, status int, v *channelsView) {
	chans, err := s.Monitor.Store.ListChannels(r.Context(), user)
	if err == nil {
		var u store.User
		if u, err = s.Monitor.Store.GetUser(r.Context(), user); err == nil {
			v.Own = u.Email
		}
	}
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "Your alert channels could not be read; please try again.")
		return
	}
	for _, c := range chans {
		v.Channels = append(v.Channels, rowOf(c))
	}
	v.page.Title, v.Max = "Alert channels", maxChannels
	if v.Notice == "" {
		v.Notice = channelNotices[r.URL.Query().Get("done")]
	}
	noStore(w)
	s.render(w, r, status, "channels", v)
}

func (s *Server) channelsPage(w http.ResponseWriter, r *http.Request, user store.UserID) {
	s.channels(w, r, user, http.StatusOK, &channelsView{})
}

func (s *Server) addChannelForm(w http.ResponseWriter, r *http.Request, user store.UserID) {
	if !s.readForm(w, r) {
		return
	}
	kind := store.ChannelKind(field(r, "kind", 16))
	target := field(r, "url", 2048)
	if kind == store.ChannelEmail {
		target = field(r, "address", account.MaxEmailLen+1)
	}
	c, secret, err := s.Monitor.newChannel(r.Context(), user, kind, target)
	var refused *channelRefusal
	switch {
	case errors.As(err, &refused):
		v := &channelsView{Error: sentence(refused.msg) + ".", ErrorIn: string(kind)}
		if kind == store.ChannelEmail {
			v.Address = target
		} else {
			v.URL = target
		}
		s.channels(w, r, user, refused.status, v)
	case err != nil:
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The channel could not be added; please try again.")
	case kind == store.ChannelWebhook:
		// The secret is shown on this answer only: no redirect.
		s.channels(w, r, user, http.StatusOK, &channelsView{NewSecret: secret, NewHook: c.Target,
			Notice: "The webhook was added. Copy its signing secret now: it is not shown again."})
	case c.VerifiedAt.IsZero():
		http.Redirect(w, r, "/settings/channels?done=pending", http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/settings/channels?done=email", http.StatusSeeOther)
	}
}

// pageChannel loads the user's channel of the path; another account's is
// "not found".
func (s *Server) pageChannel(w http.ResponseWriter, r *http.Request, user store.UserID) (store.Channel, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err == nil && id > 0 {
		c, err := s.Monitor.Store.GetChannel(r.Context(), store.ChannelID(id))
		if err == nil && c.UserID == user {
			return c, true
		}
	}
	s.errorPage(w, r, http.StatusNotFound, "Page not found", "You have no alert channel at this address.")
	return store.Channel{}, false
}

type channelPageView struct {
	page
	Channel    channelRow
	Notice     string
	Deliveries []store.Delivery
	Hours      []int
}

func (s *Server) channelPage(w http.ResponseWriter, r *http.Request, user store.UserID) {
	c, ok := s.pageChannel(w, r, user)
	if !ok {
		return
	}
	ds, err := s.Monitor.Store.ListDeliveries(r.Context(), user, c.ID, 100)
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The delivery log could not be read; please try again.")
		return
	}
	v := channelPageView{page: page{Title: "Alert channel " + c.Target}, Channel: rowOf(c), Deliveries: ds,
		Notice: channelNotices[r.URL.Query().Get("done")]}
	for h := range 24 {
		v.Hours = append(v.Hours, h)
	}
	noStore(w)
	s.render(w, r, http.StatusOK, "channel", &v)
}

func (s *Server) backToChannel(w http.ResponseWriter, r *http.Request, c store.Channel, done string) {
	http.Redirect(w, r, fmt.Sprintf("/settings/channels/%d?done=%s", c.ID, done), http.StatusSeeOther)
}

func (s *Server) testChannelForm(w http.ResponseWriter, r *http.Request, user store.UserID) {
	c, ok := s.pageChannel(w, r, user)
	if !ok {
		return
	}
	switch {
	case c.VerifiedAt.IsZero():
		s.errorPage(w, r, http.StatusConflict, "Not confirmed yet", "Nothing is sent to this address until its reader opens the confirmation link mailed to it.")
		return
	case !c.DisabledAt.IsZero():
		s.errorPage(w, r, http.StatusConflict, "The channel is off", "Turn the channel on to send it a test message.")
		return
	}
	if _, err := monitor.QueueTest(r.Context(), s.Monitor.Store, c, s.Monitor.now(), s.Monitor.BaseURL, s.Monitor.Poke); err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The test message could not be queued; please try again.")
		return
	}
	s.backToChannel(w, r, c, "test")
}

func (s *Server) channelStateForm(w http.ResponseWriter, r *http.Request, user store.UserID) {
	c, ok := s.pageChannel(w, r, user)
	if !ok || !s.readForm(w, r) {
		return
	}
	off := field(r, "state", 3) == "off"
	if err := s.Monitor.Store.SetChannelDisabled(r.Context(), user, c.ID, off); err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The channel could not be changed; please try again.")
		return
	}
	done := "on"
	if off {
		done = "off"
	}
	s.backToChannel(w, r, c, done)
}

func (s *Server) channelDigestForm(w http.ResponseWriter, r *http.Request, user store.UserID) {
	c, ok := s.pageChannel(w, r, user)
	if !ok || !s.readForm(w, r) {
		return
	}
	digest, hour, done := false, c.DigestHour, "immediate"
	if raw := field(r, "hour", 4); raw != "" && raw != "none" {
		h, err := strconv.Atoi(raw)
		if err != nil || h < 0 || h > 23 {
			s.errorPage(w, r, http.StatusBadRequest, "Bad request", "The digest's hour is an hour of the day in UTC, 0 to 23.")
			return
		}
		digest, hour, done = true, h, "digest"
	}
	if err := s.Monitor.Store.SetChannelDigest(r.Context(), user, c.ID, digest, hour); err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The channel could not be changed; please try again.")
		return
	}
	s.backToChannel(w, r, c, done)
}

func (s *Server) deleteChannelForm(w http.ResponseWriter, r *http.Request, user store.UserID) {
	c, ok := s.pageChannel(w, r, user)
	if !ok {
		return
	}
	if err := s.Monitor.Store.DeleteChannel(r.Context(), user, c.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The channel could not be removed; please try again.")
		return
	}
	http.Redirect(w, r, "/settings/channels?done=removed", http.StatusSeeOther)
}

// The confirmation link of an alert address: no login (its reader may
// have no account); a GET shows a button, so that a link scanner's GET
// confirms nothing; the POST carries the token.

func (s *Server) confirmAddressPage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	tok := r.URL.Query().Get("token")
	if len(tok) > maxTokenField {
		tok = ""
	}
	s.render(w, r, http.StatusOK, "confirmaddress", &authView{page: page{Title: "Confirm alerts to this address"}, Token: tok})
}

func (s *Server) confirmAddressSubmit(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r) {
		return
	}
	_, err := s.Accounts.ConfirmAddress(r.Context(), field(r, "token", maxTokenField))
	switch {
	case err == nil:
		s.message(w, r, http.StatusOK, "Address confirmed", "This address receives the account's mailtls alerts from now on. Each alert mail has a link to unsubscribe.", "", "")
	case errors.Is(err, account.ErrLinkUnknown), errors.Is(err, account.ErrLinkExpired), errors.Is(err, account.ErrLinkUsed):
		s.message(w, r, http.StatusBadRequest, "Link not usable", "This confirmation link cannot be used: "+linkWords(err)+
			" The account's owner can add the address again to send a new one.", "", "")
	case errors.Is(err, account.ErrChannelGone):
		s.message(w, r, http.StatusNotFound, "Nothing to confirm", "The account's owner removed this address from its alerts: nothing is sent here.", "", "")
	default:
		status, msg := s.formError(w, err)
		s.message(w, r, status, "Not confirmed", msg, "", "")
	}
}
