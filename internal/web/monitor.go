package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mailtls/mailtls/internal/domainverify"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/alert"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/diff"
	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/store"
)

// Monitoring is the saved-domain part of the web role: the JSON API of
// saved domains, their scans, diffs, "rescan now" and mute, and the
// one-click unsubscribe of alert mails (RFC 8058). Who is asking is told
// by Users (the accounts part: API tokens, sessions).
type Monitoring struct {
	Store store.Store
	Users Users
	// Poke wakes the monitor worker after "rescan now" (nil: none).
	Poke func()
	// RescanCooldown is the least time between two "rescan now" of one
	// domain (default 5 minutes).
	RescanCooldown time.Duration
	// BaseURL is where the pages are ("https://checker.example.com"), for
	// the unsubscribe link of test messages; "" leaves it out.
	BaseURL string
	// WebhookGuard judges webhook targets when a channel is added (nil:
	// public addresses on port 443 only); deliveries check again at every
	// dial.
	WebhookGuard *dial.Guard
	// Confirmer mails the link that confirms an alert address other than
	// the account's own (nil: the Server's Accounts when accounts are on;
	// without either, alerts go to the account's own address only).
	Confirmer AddressConfirmer
	Now       func() time.Time
	// Resolver looks up the TXT records that verify domains (nil: a
	// check answers "could not check").
	Resolver domainverify.Resolver
}

// Users authenticates requests. APIUser reads the Authorization: Bearer
// token of an API request (never a session cookie) and checks that it
// has scope. Errors: ErrUnauthenticated (401), ErrScope (403), or one with
// a RetryAfter() time.Duration method (429, a rate limit). PageUser is the
// signed-in user of a page request (the session cookie); pages without
// one send the browser to /login?next=….
type Users interface {
	APIUser(r *http.Request, scope store.Scope) (store.UserID, error)
	PageUser(r *http.Request) (store.UserID, bool)
}

// Errors of Users.
var (
	ErrUnauthenticated = errors.New("web: no valid API token")
	ErrScope           = errors.New("web: the API token lacks the scope")
)

// DefaultRescanCooldown is the default of Monitoring.RescanCooldown.
const DefaultRescanCooldown = 5 * time.Minute

func (m *Monitoring) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (s *Server) routesMonitor(mux *http.ServeMux) {
	m := s.Monitor
	if m.RescanCooldown <= 0 {
		m.RescanCooldown = DefaultRescanCooldown
	}
	api := func(pattern string, scope store.Scope, h func(http.ResponseWriter, *http.Request, store.UserID)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			user, err := m.Users.APIUser(r, scope)
			if err != nil {
				authError(w, err)
				return
			}
			h(w, r, user)
		})
	}
	api("GET /api/v1/domains", store.ScopeRead, m.listDomains)
	api("POST /api/v1/domains", store.ScopeManage, m.addDomain)
	api("GET /api/v1/domains/{id}", store.ScopeRead, m.getDomain)
	api("DELETE /api/v1/domains/{id}", store.ScopeManage, m.deleteDomain)
	api("PATCH /api/v1/domains/{id}", store.ScopeManage, m.changeDomain)
	api("GET /api/v1/domains/{id}/scans", store.ScopeRead, m.listScans)
	api("GET /api/v1/domains/{id}/scans/{scan}", store.ScopeRead, m.getScan)
	api("GET /api/v1/domains/{id}/diff", store.ScopeRead, m.getDiff)
	api("POST /api/v1/domains/{id}/rescan", store.ScopeScan, m.rescan)
	api("PUT /api/v1/domains/{id}/mute", store.ScopeManage, m.mute)
	api("GET /api/v1/domains/{id}/verification", store.ScopeRead, m.getVerification)
	api("POST /api/v1/domains/{id}/verification", store.ScopeManage, m.checkVerificationAPI)
	s.routesChannels(api)
	api("GET /api/v1/shares", store.ScopeRead, m.listShares)
	api("POST /api/v1/domains/{id}/scans/{scan}/shares", store.ScopeManage, m.addShare)
	api("DELETE /api/v1/shares/{share}", store.ScopeManage, m.deleteShare)
	// One-click unsubscribe (RFC 8058 §3.1): a POST of
	// "List-Unsubscribe=One-Click" to the link, from the mail provider, so
	// no login and no cross-origin check; the unguessable id is the
	// credential. GET shows a button (a link scanner's GET must not
	// unsubscribe).
	mux.HandleFunc("POST /unsubscribe/{id}", m.unsubscribe)
	mux.HandleFunc("GET /unsubscribe/{id}", s.unsubscribePage)
	s.routesMonitorPages(mux)
}

func authError(w http.ResponseWriter, err error) {
	var limited interface{ RetryAfter() time.Duration }
	switch {
	case errors.Is(err, ErrScope):
		apiError(w, http.StatusForbidden, "forbidden", "the API token does not have the scope this needs")
	case errors.As(err, &limited):
		w.Header().Set("Retry-After", strconv.Itoa(int(limited.RetryAfter().Seconds())+1))
		apiError(w, http.StatusTooManyRequests, "rate_limited", "too many requests with wrong tokens; try again later")
	case errors.Is(err, ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="mailtls"`)
		apiError(w, http.StatusUnauthorized, "unauthenticated", "an API token is required (Authorization: Bearer …)")
	default:
		apiError(w, http.StatusInternalServerError, "internal", "authentication failed")
	}
}

// domainResource is a saved domain in the API.
type domainResource struct {
	ID            int64      `json:"id"`
	Domain        string     `json:"domain"`
	CreatedAt     time.Time  `json:"created_at"`
	IntervalSecs  int64      `json:"interval_seconds"`
	NextScanAt    time.Time  `json:"next_scan_at"`
	MutedUntil    *time.Time `json:"muted_until"`
	LastScan      *scanBrief `json:"last_scan"`
	PreviousGrade *string    `json:"previous_grade"`
	OpenProblems  []openItem `json:"open_problems"`
}

type scanBrief struct {
	ID         int64      `json:"id"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
	State      string     `json:"state"`
	Trigger    string     `json:"trigger"`
	Grade      *string    `json:"grade"`
	Errors     int        `json:"errors"`
	Warnings   int        `json:"warnings"`
	Error      string     `json:"error,omitempty"`
	// RulesChanged: the finding catalog changed since the scan, so a scan
	// today could judge the same evidence differently.
	RulesChanged bool `json:"rules_changed"`
}

// openItem is an open problem of a domain as monitoring tracks it.
type openItem struct {
	ID       string    `json:"id"`
	Severity string    `json:"severity"`
	Subject  string    `json:"subject,omitempty"`
	Message  string    `json:"message"`
	Since    time.Time `json:"since"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func brief(s store.Scan) *scanBrief {
	return &scanBrief{ID: int64(s.ID), CreatedAt: s.CreatedAt.UTC(), FinishedAt: optTime(s.FinishedAt), State: string(s.State), Trigger: string(s.Trigger),
		Grade: optString(s.Grade), Errors: s.Errors, Warnings: s.Warnings, Error: s.Error,
		RulesChanged: s.CatalogVersion != "" && s.CatalogVersion != finding.CatalogVersion()}
}

func (m *Monitoring) domainView(d store.Domain, last *store.Scan, prevGrade string) domainResource {
	v := domainResource{ID: int64(d.ID), Domain: d.Name, CreatedAt: d.CreatedAt.UTC(), IntervalSecs: int64(d.Interval / time.Second),
		NextScanAt: d.NextScanAt.UTC(), PreviousGrade: optString(prevGrade), OpenProblems: []openItem{}}
	if d.Muted(m.now()) {
		v.MutedUntil = optTime(d.MutedUntil)
	}
	if last != nil {
		v.LastScan = brief(*last)
	}
	if st, err := alert.Unmarshal(d.AlertState); err == nil {
		for _, p := range st.Open() {
			v.OpenProblems = append(v.OpenProblems, openItem{ID: p.ID, Severity: p.Severity, Subject: p.Subject, Message: p.Message, Since: p.Since.UTC()})
		}
	}
	return v
}

func (m *Monitoring) listDomains(w http.ResponseWriter, r *http.Request, user store.UserID) {
	rows, err := m.Store.Dashboard(r.Context(), user)
	if err != nil {
		internalError(w, err)
		return
	}
	out := []domainResource{}
	for _, row := range rows {
		out = append(out, m.domainView(row.Domain, row.Last, row.PreviousGrade))
	}
	writeJSON(w, http.StatusOK, map[string]any{"domains": out})
}

// owned loads the user's domain named by the path; it writes 404 for a
// domain of another account, as for one that does not exist.
func (m *Monitoring) owned(w http.ResponseWriter, r *http.Request, user store.UserID) (store.Domain, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		apiError(w, http.StatusNotFound, "not_found", "no such domain")
		return store.Domain{}, false
	}
	d, err := m.Store.GetDomain(r.Context(), store.DomainID(id))
	if errors.Is(err, store.ErrNotFound) || err == nil && d.UserID != user {
		apiError(w, http.StatusNotFound, "not_found", "no such domain")
		return store.Domain{}, false
	}
	if err != nil {
		internalError(w, err)
		return store.Domain{}, false
	}
	return d, true
}

func internalError(w http.ResponseWriter, err error) {
	apiError(w, http.StatusInternalServerError, "internal", "the store failed: "+err.Error())
}

func (m *Monitoring) getDomain(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	scans, _, err := m.Store.ListScans(r.Context(), d.ID, "", 20)
	if err != nil {
		internalError(w, err)
		return
	}
	var last *store.Scan
	prev := ""
	for i, s := range scans {
		if s.State != store.ScanDone {
			continue
		}
		if last == nil {
			last = &scans[i]
		} else {
			prev = s.Grade
			break
		}
	}
	writeJSON(w, http.StatusOK, m.domainView(d, last, prev))
}

// readJSON decodes a small JSON body into v.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "the body must be a JSON object of at most 4 KiB: "+err.Error())
		return false
	}
	return true
}

func (m *Monitoring) addDomain(w http.ResponseWriter, r *http.Request, user store.UserID) {
	var req struct {
		Domain          string `json:"domain"`
		IntervalSeconds int64  `json:"interval_seconds"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	name, _, err := domain.Parse(req.Domain)
	if err != nil {
		apiError(w, http.StatusUnprocessableEntity, "invalid_domain", err.Error())
		return
	}
	interval := time.Duration(req.IntervalSeconds) * time.Second
	if req.IntervalSeconds != 0 && !intervalOK(w, interval) {
		return
	}
	// Scanned at once: the first scan is the baseline monitoring compares
	// with; the next ones fall on the domain's own slot.
	d, err := m.Store.AddDomain(r.Context(), store.NewDomain{UserID: user, Name: name, Interval: interval, NextScanAt: m.now()})
	if errors.Is(err, store.ErrConflict) {
		apiError(w, http.StatusConflict, "exists", name+" is saved already")
		return
	}
	if err == nil {
		err = monitor.DefaultChannel(r.Context(), m.Store, user)
	}
	if err != nil {
		internalError(w, err)
		return
	}
	if m.Poke != nil {
		m.Poke()
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/domains/%d", d.ID))
	writeJSON(w, http.StatusCreated, m.domainView(d, nil, ""))
}

// intervalOK checks a rescan interval (an hour to a week), answering 422
// when it is not.
func intervalOK(w http.ResponseWriter, interval time.Duration) bool {
	if interval < time.Hour || interval > 7*24*time.Hour {
		apiError(w, http.StatusUnprocessableEntity, "invalid_interval", "interval_seconds must be between 3600 (an hour) and 604800 (a week)")
		return false
	}
	return true
}

// changeDomain sets the rescan interval; the next scan moves to the
// domain's slot on the new interval.
func (m *Monitoring) changeDomain(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	var req struct {
		IntervalSeconds int64 `json:"interval_seconds"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	interval := time.Duration(req.IntervalSeconds) * time.Second
	if !intervalOK(w, interval) {
		return
	}
	next := store.NextScan(d.Name, interval, m.now())
	if err := m.Store.SetInterval(r.Context(), user, d.ID, interval, next); err != nil {
		internalError(w, err)
		return
	}
	d.Interval, d.NextScanAt = interval, next
	writeJSON(w, http.StatusOK, m.domainView(d, nil, ""))
}

func (m *Monitoring) deleteDomain(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	if err := m.Store.DeleteDomain(r.Context(), user, d.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		internalError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Monitoring) listScans(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	limit := 50
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 200 {
			apiError(w, http.StatusBadRequest, "invalid_request", "limit must be between 1 and 200")
			return
		}
		limit = n
	}
	scans, next, err := m.Store.ListScans(r.Context(), d.ID, store.Cursor(r.URL.Query().Get("cursor")), limit)
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "the cursor is not one this API gave out")
		return
	}
	out := []*scanBrief{}
	for _, s := range scans {
		out = append(out, brief(s))
	}
	writeJSON(w, http.StatusOK, map[string]any{"scans": out, "next_cursor": optString(string(next))})
}

// scanOf loads a scan of the domain named by the path parameter key.
func (m *Monitoring) scanOf(w http.ResponseWriter, r *http.Request, d store.Domain, raw string) (store.Scan, bool) {
	id, err := strconv.ParseInt(raw, 10, 64)
	if err == nil && id > 0 {
		s, err := m.Store.GetScan(r.Context(), store.ScanID(id))
		if err == nil && s.DomainID == d.ID {
			return s, true
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			internalError(w, err)
			return store.Scan{}, false
		}
	}
	apiError(w, http.StatusNotFound, "not_found", "no such scan of this domain")
	return store.Scan{}, false
}

func (m *Monitoring) getScan(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	s, ok := m.scanOf(w, r, d, r.PathValue("scan"))
	if !ok {
		return
	}
	out := struct {
		*scanBrief
		ScannerVersion string          `json:"scanner_version"`
		CatalogVersion string          `json:"catalog_version"`
		Pruned         bool            `json:"pruned"`
		Report         json.RawMessage `json:"report"`
		Findings       []store.Finding `json:"findings,omitempty"`
	}{scanBrief: brief(s), ScannerVersion: s.ScannerVersion, CatalogVersion: s.CatalogVersion}
	raw, err := m.Store.ScanReport(r.Context(), s.ID)
	switch {
	case err == nil:
		out.Report = raw
	case errors.Is(err, store.ErrPruned):
		// Retention kept a summary: the grade and the findings.
		out.Pruned = true
		if out.Findings, err = m.Store.ScanFindings(r.Context(), s.ID); err != nil {
			internalError(w, err)
			return
		}
	case errors.Is(err, store.ErrNotFound):
		out.Report = json.RawMessage("null") // not finished, or failed
	default:
		internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// getDiff compares two scans of the domain: from and to (scan ids), by
// default the two latest finished ones.
func (m *Monitoring) getDiff(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	var from, to store.Scan
	q := r.URL.Query()
	if q.Get("from") != "" || q.Get("to") != "" {
		if from, ok = m.scanOf(w, r, d, q.Get("from")); !ok {
			return
		}
		if to, ok = m.scanOf(w, r, d, q.Get("to")); !ok {
			return
		}
	} else {
		scans, _, err := m.Store.ListScans(r.Context(), d.ID, "", 50)
		if err != nil {
			internalError(w, err)
			return
		}
		var done []store.Scan
		for _, s := range scans {
			if s.State == store.ScanDone {
				done = append(done, s)
			}
		}
		if len(done) < 2 {
			apiError(w, http.StatusConflict, "too_few_scans", "the domain has fewer than two finished scans")
			return
		}
		from, to = done[1], done[0]
	}
	if from.State != store.ScanDone || to.State != store.ScanDone {
		apiError(w, http.StatusConflict, "not_finished", "both scans must have finished")
		return
	}
	if to.CreatedAt.Before(from.CreatedAt) {
		from, to = to, from // older first
	}
	a, err := monitor.LoadScan(r.Context(), m.Store, from)
	if err != nil {
		internalError(w, err)
		return
	}
	b, err := monitor.LoadScan(r.Context(), m.Store, to)
	if err != nil {
		internalError(w, err)
		return
	}
	dd := diff.Compare(*a, *b)
	writeJSON(w, http.StatusOK, struct {
		From *scanBrief `json:"from"`
		To   *scanBrief `json:"to"`
		diff.Diff
	}{brief(from), brief(to), dd})
}

func (m *Monitoring) rescan(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	at, err := m.Store.RequestRescan(r.Context(), user, d.ID, m.RescanCooldown)
	if errors.Is(err, store.ErrCooldown) {
		w.Header().Set("Retry-After", strconv.Itoa(int(at.Sub(m.now()).Seconds())+1))
		apiError(w, http.StatusTooManyRequests, "cooldown", "the domain was scanned moments ago; a rescan can be asked for from "+at.UTC().Format(time.RFC3339))
		return
	}
	if err != nil {
		internalError(w, err)
		return
	}
	if m.Poke != nil {
		m.Poke()
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"next_scan_at": at.UTC()})
}

func (m *Monitoring) mute(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	var req struct {
		Until *time.Time `json:"until"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	var until time.Time
	if req.Until != nil {
		until = req.Until.UTC()
		if !until.After(m.now()) || until.Sub(m.now()) > 366*24*time.Hour {
			apiError(w, http.StatusUnprocessableEntity, "invalid_until", "until must be in the future and within a year (null unmutes)")
			return
		}
	}
	if err := m.Store.Mute(r.Context(), user, d.ID, until); err != nil {
		internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"muted_until": optTime(until)})
}

// unsubscribe is the one-click unsubscribe of RFC 8058 §3.1.
func (m *Monitoring) unsubscribe(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	_ = r.ParseForm()
	ch, err := m.Store.Unsubscribe(r.Context(), r.PathValue("id"))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case errors.Is(err, store.ErrNotFound):
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "This unsubscribe link is not valid (the channel may have been deleted).\n")
	case err != nil:
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "Unsubscribing failed; please try again.\n")
	default:
		fmt.Fprintf(w, "Unsubscribed: %s gets no more mailtls alerts. Turn it on again in your account's settings.\n", maskTarget(ch))
	}
}

// unsubscribePage answers a GET of the link (a person, or a link scanner)
// with a form that does the POST.
func (s *Server) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) > 64 || strings.ContainsAny(id, "/?#") {
		s.errorPage(w, r, http.StatusNotFound, "Page not found", "This unsubscribe link is not valid.")
		return
	}
	s.render(w, r, http.StatusOK, "unsubscribe", &unsubscribeView{page: page{Title: "Unsubscribe", Main: "Unsubscribe from alerts"}, ID: id})
}

type unsubscribeView struct {
	page
	ID string
}

// maskTarget shows an e-mail channel's address, and only the host of a
// webhook (its path may hold a secret).
func maskTarget(ch store.Channel) string {
	if ch.Kind == store.ChannelWebhook {
		if i := strings.Index(ch.Target, "://"); i >= 0 {
			rest := ch.Target[i+3:]
			if j := strings.IndexAny(rest, "/?"); j >= 0 {
				rest = rest[:j]
			}
			return "the webhook at " + rest
		}
	}
	return ch.Target
}
