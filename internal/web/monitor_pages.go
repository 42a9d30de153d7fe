package web

import (
	"errors"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/alert"
	"github.com/mailtls/mailtls/internal/diff"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/store"
)

// The pages of saved domains: the dashboard, a domain's page (open
// problems, the timeline of scans, rescan now, mute), a saved scan and
// the diff of two scans. They need a signed-in user (Users.PageUser);
// without one they send the browser to /login.

func (s *Server) routesMonitorPages(mux *http.ServeMux) {
	page := func(pattern string, h func(http.ResponseWriter, *http.Request, store.UserID)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			user, ok := s.Monitor.Users.PageUser(r)
			if !ok {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			// With accounts, a form post also needs the session's CSRF
			// token (as every account form does).
			if r.Method == http.MethodPost && s.sessions != nil && !s.checkCSRF(w, r) {
				return
			}
			h(w, r, user)
		})
	}
	page("GET /domains", s.dashboardPage)
	page("GET /domains/{id}", s.domainPage)
	page("GET /domains/{id}/scans/{scan}", s.savedScanPage)
	page("GET /domains/{id}/scans/{scan}/report.json", s.savedScanJSON)
	page("GET /domains/{id}/diff", s.diffPage)
	page("POST /domains/{id}/rescan", s.rescanForm)
	page("POST /domains/{id}/mute", s.muteForm)
	page("POST /domains/{id}/scans/{scan}/share", s.shareForm)
	page("GET /shares", s.sharesPage)
	page("POST /shares/{share}/revoke", s.revokeShareForm)
	// A share link is public: no login, the unguessable id is the
	// credential.
	mux.HandleFunc("GET /s/{share}", s.sharedPage)
	mux.HandleFunc("GET /s/{share}/report.json", s.sharedJSON)
	s.routesChannelPages(page)
	if s.Accounts != nil {
		mux.HandleFunc("GET /channels/confirm", s.confirmAddressPage)
		mux.HandleFunc("POST /channels/confirm", s.confirmAddressSubmit)
	}
	s.routesReportsPages(page)
	s.routesVerifyPages(page)
}

// dashboardRow is one saved domain on the dashboard.
type dashboardRow struct {
	ID                store.DomainID
	Name              string
	Grade, GradeClass string // "none", "g-none" when undetermined or not scanned
	TrendIcon, Trend  string // "↓", "worse"
	LastScan, Next    string
	Errors, Warnings  int // open problems
	Muted             bool
}

// html writes the row. A dashboard may list thousands of domains: the
// rows are written here with explicit escaping, not by the template's
// reflection, which costs ten times more per row.
func (r dashboardRow) html(b *strings.Builder) {
	esc := html.EscapeString
	id := strconv.FormatInt(int64(r.ID), 10)
	b.WriteString(`<tr>
<th scope="row"><a href="/domains/` + id + `">` + esc(r.Name) + `</a>`)
	if r.Muted {
		b.WriteString(` <span class="muted">(alerts muted)</span>`)
	}
	b.WriteString("</th>\n<td><span class=\"chip " + r.GradeClass + `">` + esc(r.Grade) + "</span></td>\n<td>")
	if r.TrendIcon != "" {
		b.WriteString(`<span aria-hidden="true">` + r.TrendIcon + `</span> `)
	}
	b.WriteString(r.Trend + "</td>\n<td>" + r.LastScan + "</td>\n<td>")
	count := func(n int, one, many, icon string) {
		w := many
		if n == 1 {
			w = one
		}
		b.WriteString(`<span aria-hidden="true">` + icon + `</span> ` + strconv.Itoa(n) + " " + w)
	}
	switch {
	case r.Errors > 0 && r.Warnings > 0:
		count(r.Errors, "error", "errors", "✖")
		b.WriteString(", ")
		count(r.Warnings, "warning", "warnings", "▲")
	case r.Errors > 0:
		count(r.Errors, "error", "errors", "✖")
	case r.Warnings > 0:
		count(r.Warnings, "warning", "warnings", "▲")
	default:
		b.WriteString("none")
	}
	b.WriteString("</td>\n<td>" + r.Next + "</td>\n</tr>\n")
}

type dashboardView struct {
	page
	Notice   string
	Count    int
	Rows     template.HTML // the table's rows (dashboardRow.html)
	Problems int           // domains with open problems
}

func gradeClass(g string) string {
	if g == "" {
		return "g-none"
	}
	c := "g-" + strings.ToLower(strings.TrimSuffix(g, "+"))
	if strings.HasSuffix(g, "+") {
		c += "plus"
	}
	return c
}

func trend(prev, cur string) string {
	switch {
	case prev == "" || cur == "":
		return ""
	case diff.Rank(cur) < diff.Rank(prev):
		return "up"
	case diff.Rank(cur) > diff.Rank(prev):
		return "down"
	}
	return "same"
}

func (s *Server) dashboardPage(w http.ResponseWriter, r *http.Request, user store.UserID) {
	rows, err := s.Monitor.Store.DomainSummaries(r.Context(), user)
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The saved domains could not be read; please try again.")
		return
	}
	now := s.Monitor.now()
	v := dashboardView{page: page{Title: "Your domains"}, Count: len(rows)}
	if r.URL.Query().Get("done") == "removed" {
		v.Notice = "The domain and its history were removed."
	}
	const stamp = "2006-01-02 15:04 UTC"
	var b strings.Builder
	b.Grow(300 * len(rows))
	for _, d := range rows {
		row := dashboardRow{ID: d.ID, Name: d.Name, Muted: d.Muted(now), Next: d.NextScanAt.UTC().Format(stamp),
			Grade: "none", GradeClass: "g-none", LastScan: "not yet", Trend: "—"}
		if d.LastScan != 0 {
			row.LastScan = d.LastScanAt.UTC().Format(stamp)
			if d.LastGrade != "" {
				row.Grade, row.GradeClass = d.LastGrade, gradeClass(d.LastGrade)
			}
			switch trend(d.PreviousGrade, d.LastGrade) {
			case "up":
				row.TrendIcon, row.Trend = "↑", "better"
			case "down":
				row.TrendIcon, row.Trend = "↓", "worse"
			case "same":
				row.TrendIcon, row.Trend = "=", "same"
			}
		}
		row.Errors, row.Warnings = d.OpenErrors, d.OpenWarnings
		if !d.OpenCounted {
			// A state stored without its counts (by an older version);
			// an unreadable one counts nothing (the domain page says more).
			row.Errors, row.Warnings, _ = alert.OpenCounts(d.AlertState)
		}
		if row.Errors+row.Warnings > 0 {
			v.Problems++
		}
		row.html(&b)
	}
	v.Rows = template.HTML(b.String())
	s.render(w, r, http.StatusOK, "dashboard", &v)
}

// pageDomain loads the user's domain of the path; another account's is
// "not found".
func (s *Server) pageDomain(w http.ResponseWriter, r *http.Request, user store.UserID) (store.Domain, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err == nil && id > 0 {
		d, err := s.Monitor.Store.GetDomain(r.Context(), store.DomainID(id))
		if err == nil && d.UserID == user {
			return d, true
		}
	}
	s.errorPage(w, r, http.StatusNotFound, "Page not found", "You have no saved domain at this address.")
	return store.Domain{}, false
}

type problemView struct {
	alert.Problem
	Title string
	Icon  string
	Word  string
}

type timelineRow struct {
	store.Scan
	GradeClass string
	Trend      string
}

type domainView struct {
	page
	Domain   store.Domain
	Grade    string
	Class    string
	Muted    bool
	Problems []problemView
	Scans    []timelineRow
	Next     store.Cursor
	Notice   string
	// IntervalSecs is the rescan interval.
	IntervalSecs int64
}

var notices = map[string]string{
	"rescan":   "The domain is being scanned again; reload this page in a minute.",
	"cooldown": "The domain was scanned moments ago; rescan it again in a few minutes.",
	"muted":    "Alerts for this domain are muted.",
	"saved":    "The domain is saved: it is scanned now and then every day, and its history is kept here.",
	"exists":   "This domain was saved already.",
	"unmuted":  "Alerts for this domain are on again.",
}

func (s *Server) domainPage(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok {
		return
	}
	scans, next, err := s.Monitor.Store.ListScans(r.Context(), d.ID, store.Cursor(r.URL.Query().Get("before")), 30)
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", "That page of the history does not exist.")
		return
	}
	v := domainView{page: page{Title: d.Name}, Domain: d, Muted: d.Muted(s.Monitor.now()), Next: next, Notice: notices[r.URL.Query().Get("done")], Class: "g-none",
		IntervalSecs: int64(d.Interval / time.Second)}
	// Each row's trend compares with the next older finished scan.
	for i, sc := range scans {
		row := timelineRow{Scan: sc, GradeClass: gradeClass(sc.Grade)}
		for _, older := range scans[i+1:] {
			if older.State == store.ScanDone {
				row.Trend = trend(older.Grade, sc.Grade)
				break
			}
		}
		v.Scans = append(v.Scans, row)
		if v.Grade == "" && sc.State == store.ScanDone {
			v.Grade, v.Class = sc.Grade, gradeClass(sc.Grade)
		}
	}
	if st, err := alert.Unmarshal(d.AlertState); err == nil {
		for _, p := range st.Open() {
			pv := problemView{Problem: p, Icon: severityWords[p.Severity][0], Word: severityWords[p.Severity][1], Title: p.ID}
			if def := finding.Lookup(finding.ID(p.ID)); def != nil {
				pv.Title = def.Title
			}
			v.Problems = append(v.Problems, pv)
		}
	}
	s.render(w, r, http.StatusOK, "domain", &v)
}

// pageScan loads a scan of the domain.
func (s *Server) pageScan(w http.ResponseWriter, r *http.Request, d store.Domain, raw string) (store.Scan, bool) {
	id, err := strconv.ParseInt(raw, 10, 64)
	if err == nil && id > 0 {
		sc, err := s.Monitor.Store.GetScan(r.Context(), store.ScanID(id))
		if err == nil && sc.DomainID == d.ID {
			return sc, true
		}
	}
	s.errorPage(w, r, http.StatusNotFound, "Page not found", "This domain has no such scan.")
	return store.Scan{}, false
}

type savedScanView struct {
	page
	Domain       store.Domain
	Scan         store.Scan
	Class        string
	Findings     []findingView
	Pruned       bool
	RulesChanged bool
	Catalog      string
	Notice       string
	Shares       []shareRow
	ShareDays    []int
	Next         string // where a revoked link's form comes back to
}

// scanFindings are a saved scan's findings for a page, by severity.
type scanFindings struct {
	findings []findingView
	pruned   bool // retention kept the summary only
}

// loadFindings reads a finished scan's findings (nothing for another state).
func (s *Server) loadFindings(r *http.Request, sc store.Scan) (scanFindings, error) {
	var out scanFindings
	if sc.State != store.ScanDone {
		return out, nil
	}
	side, err := monitor.LoadScan(r.Context(), s.Monitor.Store, sc)
	if err != nil {
		return out, err
	}
	out.pruned = side.Doc == nil
	for _, sev := range []string{"error", "warning", "info"} {
		for _, f := range side.Findings {
			if f.Severity != sev {
				continue
			}
			fv := findingView{Finding: f, Icon: severityWords[sev][0], Word: severityWords[sev][1], Title: f.ID}
			if def := finding.Lookup(finding.ID(f.ID)); def != nil {
				fv.Title = def.Title
			}
			out.findings = append(out.findings, fv)
		}
	}
	return out, nil
}

func (s *Server) savedScanPage(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok {
		return
	}
	sc, ok := s.pageScan(w, r, d, r.PathValue("scan"))
	if !ok {
		return
	}
	v := savedScanView{page: page{Title: d.Name + " on " + sc.CreatedAt.UTC().Format("2006-01-02")}, Domain: d, Scan: sc, Class: gradeClass(sc.Grade),
		RulesChanged: sc.CatalogVersion != "" && sc.CatalogVersion != finding.CatalogVersion(), Catalog: finding.CatalogVersion()}
	side, err := s.loadFindings(r, sc)
	if err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The stored scan could not be read.")
		return
	}
	v.Findings, v.Pruned = side.findings, side.pruned
	if v.Shares, err = s.Monitor.shareRows(r, user, sc.ID); err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The share links could not be read.")
		return
	}
	if r.URL.Query().Get("done") == "shared" {
		v.Notice = "The share link is below: anyone who has it can see this scan until it expires."
	} else if r.URL.Query().Get("done") == "revoked" {
		v.Notice = "The link was revoked: it shows nothing any more."
	}
	v.ShareDays, v.Next = shareDays, fmt.Sprintf("/domains/%d/scans/%d#shares", d.ID, sc.ID)
	s.render(w, r, http.StatusOK, "savedscan", &v)
}

func (s *Server) savedScanJSON(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok {
		return
	}
	sc, ok := s.pageScan(w, r, d, r.PathValue("scan"))
	if !ok {
		return
	}
	s.writeReport(w, r, d, sc)
}

// writeReport sends the scan's stored JSON report as a download.
func (s *Server) writeReport(w http.ResponseWriter, r *http.Request, d store.Domain, sc store.Scan) {
	s.writeReportAs(w, r, d, sc, nil)
}

// writeReportAs is writeReport with the document passed through edit
// first (when not nil).
func (s *Server) writeReportAs(w http.ResponseWriter, r *http.Request, d store.Domain, sc store.Scan, edit func([]byte) ([]byte, error)) {
	raw, err := s.Monitor.Store.ScanReport(r.Context(), sc.ID)
	if err == nil && edit != nil {
		if raw, err = edit(raw); err != nil {
			s.Log.Error("a stored scan report could not be read", "scan", sc.ID, "error", err)
			s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The stored report could not be read.")
			return
		}
	}
	if err != nil {
		msg := "This scan has no stored report."
		if errors.Is(err, store.ErrPruned) {
			msg = "Retention kept only a summary of this scan (its grade and findings); the full report was removed."
		}
		s.errorPage(w, r, http.StatusNotFound, "No report", msg)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+d.Name+"-"+sc.CreatedAt.UTC().Format("20060102T150405Z")+`.json"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(raw)
}

type diffView struct {
	page
	Domain   store.Domain
	From, To store.Scan
	Diff     diff.Diff
	Changed  []diff.Sustained // sustained findings whose severity or message changed
}

func (s *Server) diffPage(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok {
		return
	}
	from, ok := s.pageScan(w, r, d, r.URL.Query().Get("from"))
	if !ok {
		return
	}
	to, ok := s.pageScan(w, r, d, r.URL.Query().Get("to"))
	if !ok {
		return
	}
	if from.State != store.ScanDone || to.State != store.ScanDone {
		s.errorPage(w, r, http.StatusConflict, "Cannot compare", "Only finished scans can be compared.")
		return
	}
	if to.CreatedAt.Before(from.CreatedAt) {
		from, to = to, from
	}
	a, errA := monitor.LoadScan(r.Context(), s.Monitor.Store, from)
	b, errB := monitor.LoadScan(r.Context(), s.Monitor.Store, to)
	if errA != nil || errB != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The stored scans could not be read.")
		return
	}
	v := diffView{page: page{Title: "Changes of " + d.Name}, Domain: d, From: from, To: to, Diff: diff.Compare(*a, *b)}
	for _, sd := range v.Diff.Sustained {
		if sd.Before.Severity != sd.After.Severity || sd.Before.Message != sd.After.Message {
			v.Changed = append(v.Changed, sd)
		}
	}
	s.render(w, r, http.StatusOK, "diff", &v)
}

func (s *Server) rescanForm(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok {
		return
	}
	done := "rescan"
	_, err := s.Monitor.Store.RequestRescan(r.Context(), user, d.ID, s.Monitor.RescanCooldown)
	switch {
	case errors.Is(err, store.ErrCooldown):
		done = "cooldown"
	case err != nil:
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The rescan could not be asked for; please try again.")
		return
	case s.Monitor.Poke != nil:
		s.Monitor.Poke()
	}
	http.Redirect(w, r, "/domains/"+strconv.FormatInt(int64(d.ID), 10)+"?done="+done, http.StatusSeeOther)
}

func (s *Server) muteForm(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	hours, err := strconv.Atoi(r.PostForm.Get("hours"))
	if err != nil || hours < 0 || hours > 24*366 {
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", "Choose how long to mute the alerts.")
		return
	}
	var until time.Time
	done := "unmuted"
	if hours > 0 {
		until, done = s.Monitor.now().Add(time.Duration(hours)*time.Hour), "muted"
	}
	if err := s.Monitor.Store.Mute(r.Context(), user, d.ID, until); err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The alerts could not be muted; please try again.")
		return
	}
	http.Redirect(w, r, "/domains/"+strconv.FormatInt(int64(d.ID), 10)+"?done="+done, http.StatusSeeOther)
}
