package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/store"
)

// Share links: the owner of a saved scan shares it by an explicit,
// unguessable (128 random bits), expiring link; nothing is public by
// default. The shared page shows the scan read-only, without login, with
// nothing of the account, and is not to be indexed. A revoked or expired
// link is "not found", like one that never existed.

// shareDays are the lifetimes a share link may have, in days.
var shareDays = []int{1, 7, 30}

// maxShares bounds an account's live share links.
const maxShares = 100

// shareIDLen is the length of a share id: 128 bits in base32.
const shareIDLen = 26

func shareLifetime(days int) (time.Duration, bool) {
	for _, d := range shareDays {
		if d == days {
			return time.Duration(days) * 24 * time.Hour, true
		}
	}
	return 0, false
}

// validShareID rejects what cannot be a share id before the store is asked.
func validShareID(id string) bool {
	if len(id) != shareIDLen {
		return false
	}
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// shareURL is the absolute link of a share: on the public URL when it is
// configured, else on the origin the request came to.
func (m *Monitoring) shareURL(r *http.Request, id string) string {
	base := m.BaseURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return base + "/s/" + id
}

// createShare makes a share of one of the user's finished saved scans; the
// errors are for people (pages) and the API alike.
var (
	errShareScan  = errors.New("only a finished scan can be shared")
	errShareLimit = fmt.Errorf("an account has at most %d live share links; revoke one first", maxShares)
)

func (m *Monitoring) createShare(r *http.Request, user store.UserID, sc store.Scan, days int) (store.Share, error) {
	ttl, ok := shareLifetime(days)
	if !ok {
		return store.Share{}, fmt.Errorf("a share link lasts 1, 7 or 30 days, not %d", days)
	}
	if sc.State != store.ScanDone {
		return store.Share{}, errShareScan
	}
	live, err := m.Store.ListShares(r.Context(), user)
	if err != nil {
		return store.Share{}, err
	}
	if len(live) >= maxShares {
		return store.Share{}, errShareLimit
	}
	return m.Store.CreateShare(r.Context(), user, sc.ID, ttl)
}

// shareRow is a share link with what it shows, for the owner.
type shareRow struct {
	store.Share
	URL      string
	Domain   store.Domain
	ScanTime time.Time
}

// shareRows lists the user's live share links, of one scan when scan is
// not 0, newest first.
func (m *Monitoring) shareRows(r *http.Request, user store.UserID, scan store.ScanID) ([]shareRow, error) {
	shares, err := m.Store.ListShares(r.Context(), user)
	if err != nil {
		return nil, err
	}
	var out []shareRow
	domains := map[store.DomainID]store.Domain{}
	for i := len(shares) - 1; i >= 0; i-- {
		sh := shares[i]
		if scan != 0 && sh.ScanID != scan {
			continue
		}
		sc, err := m.Store.GetScan(r.Context(), sh.ScanID)
		if err != nil {
			return nil, err
		}
		d, ok := domains[sc.DomainID]
		if !ok {
			if d, err = m.Store.GetDomain(r.Context(), sc.DomainID); err != nil {
				return nil, err
			}
			domains[d.ID] = d
		}
		out = append(out, shareRow{Share: sh, URL: m.shareURL(r, sh.ID), Domain: d, ScanTime: sc.CreatedAt})
	}
	return out, nil
}

// The pages.

func (s *Server) shareForm(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok {
		return
	}
	sc, ok := s.pageScan(w, r, d, r.PathValue("scan"))
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	days, _ := strconv.Atoi(r.PostForm.Get("days"))
	if _, err := s.Monitor.createShare(r, user, sc, days); err != nil {
		if errors.Is(err, errShareScan) || errors.Is(err, errShareLimit) || days != 1 && days != 7 && days != 30 {
			s.errorPage(w, r, http.StatusUnprocessableEntity, "Cannot share", sentence(err.Error())+".")
			return
		}
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The link could not be made; please try again.")
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/domains/%d/scans/%d?done=shared#shares", d.ID, sc.ID), http.StatusSeeOther)
}

func (s *Server) revokeShareForm(w http.ResponseWriter, r *http.Request, user store.UserID) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	id := r.PathValue("share")
	err := store.ErrNotFound
	if validShareID(id) {
		err = s.Monitor.Store.DeleteShare(r.Context(), user, id)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Another account's link, or one gone already.
		s.errorPage(w, r, http.StatusNotFound, "Page not found", "You have no share link at this address.")
		return
	case err != nil:
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The link could not be revoked; please try again.")
		return
	}
	next := "/shares"
	if n := r.PostForm.Get("next"); n != "" {
		next = localPath(n)
	}
	u, _ := url.Parse(next)
	q := u.Query()
	q.Set("done", "revoked")
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

type sharesView struct {
	page
	Notice string
	Shares []shareRow
	Next   string
}

func (s *Server) sharesPage(w http.ResponseWriter, r *http.Request, user store.UserID) {
	rows, err := s.Monitor.shareRows(r, user, 0)
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The share links could not be read; please try again.")
		return
	}
	v := sharesView{page: page{Title: "Share links"}, Shares: rows, Next: "/shares"}
	if r.URL.Query().Get("done") == "revoked" {
		v.Notice = "The link was revoked: it shows nothing any more."
	}
	s.render(w, r, http.StatusOK, "shares", &v)
}

// sharedView is the public page of a share link.
type sharedView struct {
	page
	Name      string
	Share     store.Share
	Scan      store.Scan
	Class     string
	Findings  []findingView
	Pruned    bool
	Rules     bool // the rules changed since the scan
	Catalog   string
	ReportURL string
	// Withheld counts the findings from the domain's TLS-RPT reports
	// left out (privateFinding).
	Withheld int
}

// sharedScan loads the live share of the path and its scan; a revoked,
// expired or unknown link is "not found" (404), the same page for all.
func (s *Server) sharedScan(w http.ResponseWriter, r *http.Request) (store.Share, store.Scan, bool) {
	w.Header().Set("X-Robots-Tag", "noindex, nofollow")
	id := r.PathValue("share")
	if validShareID(id) {
		sh, err := s.Monitor.Store.GetShare(r.Context(), id)
		if err == nil {
			sc, err := s.Monitor.Store.GetScan(r.Context(), sh.ScanID)
			if err == nil {
				return sh, sc, true
			}
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The shared scan could not be read; please try again.")
			return store.Share{}, store.Scan{}, false
		}
	}
	s.errorPage(w, r, http.StatusNotFound, "Link not found", "This share link does not exist, has expired or was revoked by its owner.")
	return store.Share{}, store.Scan{}, false
}

func (s *Server) sharedPage(w http.ResponseWriter, r *http.Request) {
	sh, sc, ok := s.sharedScan(w, r)
	if !ok {
		return
	}
	d, err := s.Monitor.Store.GetDomain(r.Context(), sc.DomainID)
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The shared scan could not be read; please try again.")
		return
	}
	v := sharedView{page: page{Title: d.Name + " on " + sc.CreatedAt.UTC().Format("2006-01-02") + " (shared)"}, Name: d.Name, Share: sh, Scan: sc,
		Class: gradeClass(sc.Grade), Rules: sc.CatalogVersion != "" && sc.CatalogVersion != finding.CatalogVersion(), Catalog: finding.CatalogVersion(),
		ReportURL: "/s/" + sh.ID + "/report.json"}
	side, err := s.loadFindings(r, sc)
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The shared scan could not be read; please try again.")
		return
	}
	v.Pruned = side.pruned
	for _, f := range side.findings {
		if !privateFinding(f.Finding) {
			v.Findings = append(v.Findings, f)
			continue
		}
		v.Withheld++
		switch f.Severity {
		case "error":
			v.Scan.Errors--
		case "warning":
			v.Scan.Warnings--
		}
	}
	s.render(w, r, http.StatusOK, "shared", &v)
}

// privateFinding: f comes from the domain's TLS-RPT reports, which only
// an account that verified the domain may see (docs/accounts.md,
// "Verifying a domain"). A share link is opened by anyone holding it,
// without an account, and outlives the verification; it shows the scan's
// public findings only.
func privateFinding(f report.Finding) bool { return f.Component == string(finding.ComponentReports) }

// publicReport is a stored scan document without its private findings
// (the bytes unchanged when it has none).
func publicReport(raw []byte) ([]byte, error) {
	var doc report.Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	n := len(doc.Findings)
	doc.Findings = slices.DeleteFunc(doc.Findings, privateFinding)
	if len(doc.Findings) == n {
		return raw, nil
	}
	return json.Marshal(&doc)
}

func (s *Server) sharedJSON(w http.ResponseWriter, r *http.Request) {
	_, sc, ok := s.sharedScan(w, r)
	if !ok {
		return
	}
	d, err := s.Monitor.Store.GetDomain(r.Context(), sc.DomainID)
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The shared scan could not be read; please try again.")
		return
	}
	s.writeReportAs(w, r, d, sc, publicReport)
}

// The API.

type shareResource struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	DomainID  int64     `json:"domain_id"`
	Domain    string    `json:"domain"`
	ScanID    int64     `json:"scan_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (row shareRow) resource() shareResource {
	return shareResource{ID: row.ID, URL: row.URL, DomainID: int64(row.Domain.ID), Domain: row.Domain.Name, ScanID: int64(row.ScanID),
		CreatedAt: row.CreatedAt.UTC(), ExpiresAt: row.ExpiresAt.UTC()}
}

func (m *Monitoring) listShares(w http.ResponseWriter, r *http.Request, user store.UserID) {
	rows, err := m.shareRows(r, user, 0)
	if err != nil {
		internalError(w, err)
		return
	}
	out := []shareResource{}
	for _, row := range rows {
		out = append(out, row.resource())
	}
	writeJSON(w, http.StatusOK, map[string]any{"shares": out})
}

func (m *Monitoring) addShare(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	sc, ok := m.scanOf(w, r, d, r.PathValue("scan"))
	if !ok {
		return
	}
	var req struct {
		Days int `json:"days"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	sh, err := m.createShare(r, user, sc, req.Days)
	if _, valid := shareLifetime(req.Days); !valid || errors.Is(err, errShareScan) {
		apiError(w, http.StatusUnprocessableEntity, "invalid_share", err.Error())
		return
	}
	if errors.Is(err, errShareLimit) {
		apiError(w, http.StatusUnprocessableEntity, "too_many", err.Error())
		return
	}
	if err != nil {
		internalError(w, err)
		return
	}
	w.Header().Set("Location", "/api/v1/shares/"+sh.ID)
	writeJSON(w, http.StatusCreated, shareRow{Share: sh, URL: m.shareURL(r, sh.ID), Domain: d, ScanTime: sc.CreatedAt}.resource())
}

func (m *Monitoring) deleteShare(w http.ResponseWriter, r *http.Request, user store.UserID) {
	id := r.PathValue("share")
	err := store.ErrNotFound
	if validShareID(id) {
		err = m.Store.DeleteShare(r.Context(), user, id)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		apiError(w, http.StatusNotFound, "not_found", "no such share link")
	case err != nil:
		internalError(w, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
