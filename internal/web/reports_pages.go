package web

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
	"github.com/mailtls/mailtls/internal/tlsrptview"
)

// The TLS-RPT reports of a saved domain (RFC 8460): the readiness verdict
// with its evidence, the daily sessions per policy type, the failures
// with their explanations, the reporters and the raw reports, with CSV
// and JSON exports. Every number comes from internal/tlsrptview, as the
// CLI's `mailtls reports` prints it; this file only renders.

// reportDays bounds ?days= (the CLI's --window allows the same).
const (
	defaultReportDays = 14
	maxReportDays     = 366
	// maxListedReports caps the raw reports listed on the page; the JSON
	// export and the CLI list them all.
	maxListedReports = 200
)

// chartTypes are the policy types drawn, in order; sts and tlsa are
// never added together (Microsoft reports a DANE domain's sessions under
// both), so each has its own bar.
var chartTypes = []tlsrpt.PolicyType{tlsrpt.PolicySTS, tlsrpt.PolicyTLSA, tlsrpt.PolicyNotFound}

// reportsData is everything the page and the exports show.
type reportsData struct {
	Domain    string                  `json:"domain"`
	Days      int                     `json:"days"`
	Window    tlsrptview.Window       `json:"window"`
	ScanAt    time.Time               `json:"scan_at,omitzero"` // the saved scan the verdict and explanations judge against; zero: none
	Summary   *tlsrptview.Summary     `json:"summary"`
	Readiness *tlsrptagg.Verdict      `json:"readiness"`
	Failures  []tlsrptagg.Explanation `json:"failures"`
	Reporters []tlsrptview.Reporter   `json:"reporters"`
	Reports   []tlsrptview.Item       `json:"reports"`
	More      bool                    `json:"reports_truncated,omitempty"`
	Daily     []tlsrptagg.DayTotals   `json:"-"`
	dailyBy   map[tlsrpt.PolicyType]map[time.Time]tlsrptagg.DayTotals
}

func (s *Server) routesReportsPages(page func(string, func(http.ResponseWriter, *http.Request, store.UserID))) {
	page("GET /domains/{id}/reports", s.reportsPage)
	page("GET /domains/{id}/reports.json", s.reportsJSON)
	page("GET /domains/{id}/reports.csv", s.reportsCSV)
	page("GET /domains/{id}/reports/{report}/raw", s.rawReport)
}

// reportDaysParam reads ?days= (1 to 366, default 14).
func reportDaysParam(r *http.Request) (int, bool) {
	v := r.URL.Query().Get("days")
	if v == "" {
		return defaultReportDays, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxReportDays {
		return 0, false
	}
	return n, true
}

// loadReports gathers d's reports over the last days whole UTC days.
func (s *Server) loadReports(ctx context.Context, d store.Domain, days int, limit int) (*reportsData, error) {
	now := s.Monitor.now()
	st := s.Monitor.Store
	view := &tlsrptview.View{Store: st, Now: s.Monitor.now}
	out := &reportsData{Domain: d.Name, Days: days, Window: tlsrptview.LastDays(now, days)}

	// The verdict and the explanations judge against the newest saved
	// scan (what monitoring alerts judge against); without one they say
	// there is no scan rather than guess.
	var cur tlsrptagg.Current
	scans, _, err := st.ListScans(ctx, d.ID, "", 30)
	if err != nil {
		return nil, err
	}
	for _, sc := range scans {
		if sc.State != store.ScanDone {
			continue
		}
		raw, err := st.ScanReport(ctx, sc.ID)
		if errors.Is(err, store.ErrPruned) {
			break
		}
		if err != nil {
			return nil, err
		}
		var doc report.Document
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, fmt.Errorf("scan %d: stored report: %w", sc.ID, err)
		}
		cur, out.ScanAt = monitor.Current(&doc, sc.CreatedAt), sc.CreatedAt
		break
	}

	if out.Summary, err = view.Summary(ctx, d.Name, out.Window); err != nil {
		return nil, err
	}
	if out.Readiness, err = view.Readiness(ctx, d.Name, cur, tlsrptagg.Thresholds{Window: time.Duration(days) * 24 * time.Hour}); err != nil {
		return nil, err
	}
	if out.Failures, err = view.Failures(ctx, d.Name, out.Window, cur); err != nil {
		return nil, err
	}
	if out.Reporters, err = view.Reporters(ctx, d.Name, out.Window); err != nil {
		return nil, err
	}
	out.Reports = []tlsrptview.Item{}
	var after store.Cursor
	for {
		page, next, err := st.ListTLSRPTReports(ctx, store.TLSRPTQuery{Domain: d.Name, From: out.Window.From, To: out.Window.To, After: after})
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			if limit > 0 && len(out.Reports) == limit {
				out.More = true
				break
			}
			out.Reports = append(out.Reports, tlsrptview.NewItem(r))
		}
		if next == "" || out.More {
			break
		}
		after = next
	}
	out.dailyBy = map[tlsrpt.PolicyType]map[time.Time]tlsrptagg.DayTotals{}
	for typ, days := range out.Summary.Daily {
		m := map[time.Time]tlsrptagg.DayTotals{}
		for _, dt := range days {
			m[dt.Day.UTC()] = dt
		}
		out.dailyBy[typ] = m
	}
	return out, nil
}

// day is one row of the daily table.
type dayRow struct {
	Day   time.Time
	Cells []dayCell // one per chartTypes
}

type dayCell struct {
	Reported           bool
	Successful, Failed int64
}

func (d *reportsData) days() []dayRow {
	var rows []dayRow
	for day := d.Window.From; day.Before(d.Window.To); day = day.AddDate(0, 0, 1) {
		row := dayRow{Day: day}
		for _, t := range chartTypes {
			dt, ok := d.dailyBy[t][day]
			row.Cells = append(row.Cells, dayCell{Reported: ok, Successful: dt.Successful, Failed: dt.Failed})
		}
		rows = append(rows, row)
	}
	return rows
}

// chart draws the daily sessions per policy type as SVG: per day one bar
// per type (successful, with its failed part on top in a darker shade),
// and a marker under any bar with failures so that a single failure among
// thousands of sessions is still seen. The table beside it is the text
// alternative; the <title> and <desc> say what it shows.
func chart(rows []dayRow, domainName string) template.HTML {
	const height, top, bottom, left = 220, 12, 40, 56
	// A month or less gets readable bars; a longer window thin ones, so
	// that a year stays about 3,000 units wide (the CSS scales it down).
	barW, gap, dayGap := 8, 1, 10
	if len(rows) > 31 {
		barW, gap, dayGap = 2, 0, 2
	}
	fills := []string{"#0a4fa3", "#1b6b2a", "#7a4700"} // sts, tlsa, no-policy-found: the page's colours
	var max int64
	var failedDays int
	for _, r := range rows {
		failed := false
		for _, c := range r.Cells {
			max = maxInt(max, c.Successful+c.Failed)
			failed = failed || c.Failed > 0
		}
		if failed {
			failedDays++
		}
	}
	dayW := len(chartTypes)*(barW+gap) + dayGap
	width := left + len(rows)*dayW + 8
	plot := float64(height - top - bottom)
	y := func(n int64) float64 {
		if max == 0 {
			return 0
		}
		return float64(n) / float64(max) * plot
	}
	esc := html.EscapeString
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-labelledby="chart-title chart-desc" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`, width, height, width, height)
	fmt.Fprintf(&b, `<title id="chart-title">TLS sessions per day by policy type for %s</title>`, esc(domainName))
	fmt.Fprintf(&b, `<desc id="chart-desc">Bars per UTC day, %s to %s: for each policy type (sts, tlsa, no-policy-found, never added together) the sessions reported, the failed part darker on top; a red mark under a bar means failures that day (%d day(s) with failures). The table below gives the same figures.</desc>`,
		rows[0].Day.Format(time.DateOnly), rows[len(rows)-1].Day.Format(time.DateOnly), failedDays)
	base := float64(height - bottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#4a4a4a"/>`, left, base, width-8, base)
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#1a1a1a">%d</text>`, left-4, float64(top)+4, max)
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#1a1a1a">0</text>`, left-4, base+4)
	for i, r := range rows {
		x0 := left + i*dayW + dayGap/2
		for j, c := range r.Cells {
			if !c.Reported {
				continue
			}
			x := x0 + j*(barW+gap)
			hs, hf := y(c.Successful), y(c.Failed)
			label := fmt.Sprintf("%s %s: %d sessions, %d failed", r.Day.Format(time.DateOnly), chartTypes[j], c.Successful+c.Failed, c.Failed)
			fmt.Fprintf(&b, `<g><title>%s</title><rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"/>`, esc(label), x, base-hs, barW, hs, fills[j])
			if c.Failed > 0 {
				fmt.Fprintf(&b, `<rect class="failed" x="%d" y="%.1f" width="%d" height="%.1f" fill="#a30000"/>`, x, base-hs-hf, barW, hf)
				fmt.Fprintf(&b, `<path class="fail-mark" d="M%d %.1fl4 7h-8z" fill="#a30000"/>`, x+barW/2, base+3)
			}
			b.WriteString(`</g>`)
		}
		if i%7 == 0 || i == len(rows)-1 {
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#1a1a1a">%s</text>`, x0, height-bottom+24, r.Day.Format("01-02"))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

type reportsView struct {
	page
	Domain  store.Domain
	Data    *reportsData
	Days    []dayRow
	Types   []tlsrpt.PolicyType
	Chart   template.HTML
	Held    int
	Choices []int
}

func (s *Server) reportsPage(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok || !s.reportsAllowed(w, r, d, false) {
		return
	}
	days, ok := reportDaysParam(r)
	if !ok {
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", fmt.Sprintf("The window must be 1 to %d days.", maxReportDays))
		return
	}
	data, err := s.loadReports(r.Context(), d, days, maxListedReports)
	if err != nil {
		s.Log.Error("reading TLS-RPT reports failed", "domain", d.Name, "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The reports could not be read; please try again.")
		return
	}
	v := reportsView{page: page{Title: "TLS-RPT reports of " + d.Name}, Domain: d, Data: data, Days: data.days(), Types: chartTypes,
		Held: data.Summary.States[store.ReportHeld], Choices: []int{7, 14, 30, 90}}
	v.Chart = chart(v.Days, d.Name)
	s.render(w, r, http.StatusOK, "reports", &v)
}

// exportName is the file name of an export of d.
func exportName(d store.Domain, w tlsrptview.Window, ext string) string {
	return fmt.Sprintf("%s-tlsrpt-%s-%s.%s", d.Name, w.From.Format("20060102"), w.To.AddDate(0, 0, -1).Format("20060102"), ext)
}

// ReportsExport is /domains/{id}/reports.json (docs/reports.md).
type ReportsExport struct {
	SchemaVersion int `json:"schema_version"`
	*reportsData
}

func (s *Server) exportData(w http.ResponseWriter, r *http.Request, user store.UserID) (store.Domain, *reportsData, bool) {
	d, ok := s.pageDomain(w, r, user)
	if !ok || !s.reportsAllowed(w, r, d, true) {
		return d, nil, false
	}
	days, ok := reportDaysParam(r)
	if !ok {
		http.Error(w, fmt.Sprintf("days must be 1 to %d", maxReportDays), http.StatusBadRequest)
		return d, nil, false
	}
	data, err := s.loadReports(r.Context(), d, days, 0)
	if err != nil {
		s.Log.Error("reading TLS-RPT reports failed", "domain", d.Name, "error", err)
		http.Error(w, "the reports could not be read; please try again", http.StatusInternalServerError)
		return d, nil, false
	}
	return d, data, true
}

func (s *Server) reportsJSON(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, data, ok := s.exportData(w, r, user)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+exportName(d, data.Window, "json")+`"`)
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(ReportsExport{SchemaVersion: tlsrptview.SchemaVersion, reportsData: data})
}

// csvTables are the tables /reports.csv?table= exports (docs/reports.md).
var csvTables = map[string]func(*reportsData) [][]string{
	"daily": func(d *reportsData) [][]string {
		out := [][]string{{"day", "policy_type", "successful", "failed", "sessions"}}
		for _, row := range d.days() {
			for i, c := range row.Cells {
				if c.Reported {
					out = append(out, []string{row.Day.Format(time.DateOnly), string(chartTypes[i]), i64s(c.Successful), i64s(c.Failed), i64s(c.Successful + c.Failed)})
				}
			}
		}
		return out
	},
	"failures": func(d *reportsData) [][]string {
		out := [][]string{{"policy_type", "receiving_mx", "result_type", "failed_sessions", "first_day", "last_day", "label", "explanation", "organizations"}}
		for _, e := range d.Failures {
			out = append(out, []string{string(e.Type), e.MX, string(e.ResultType), i64s(e.Count), e.First.Format(time.DateOnly), e.Last.Format(time.DateOnly),
				string(e.Label), e.Why, strings.Join(e.Organizations, "; ")})
		}
		return out
	},
	"reporters": func(d *reportsData) [][]string {
		out := [][]string{{"organization", "reports", "sessions", "failed", "first_day", "last_day"}}
		for _, rp := range d.Reporters {
			out = append(out, []string{rp.Organization, strconv.Itoa(rp.Reports), i64s(rp.Sessions), i64s(rp.Failed), rp.FirstDay.Format(time.DateOnly), rp.LastDay.Format(time.DateOnly)})
		}
		return out
	},
	"reports": func(d *reportsData) [][]string {
		out := [][]string{{"id", "organization", "report_id", "start", "end", "state", "reason", "channel", "dkim", "policy_type", "policy_domain", "successful", "failed"}}
		for _, it := range d.Reports {
			for _, p := range it.Policies {
				out = append(out, []string{strconv.FormatInt(it.ID, 10), it.Organization, it.ReportID, it.Start.Format(time.RFC3339), it.End.Format(time.RFC3339),
					string(it.State), it.Reason, it.Channel, it.DKIM, string(p.Type), p.Domain, i64s(p.Successful), i64s(p.Failed)})
			}
		}
		return out
	},
}

func i64s(n int64) string { return strconv.FormatInt(n, 10) }

// csvCell defuses spreadsheet formulas: a cell a reporter controls (an
// organisation name, an MX host name) that starts with = + - @ (or a tab
// or carriage return, which some spreadsheets skip) is read as a formula
// by Excel and LibreOffice; a leading apostrophe makes it text (OWASP
// "CSV injection"). Numbers are written by us and never negative.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (s *Server) reportsCSV(w http.ResponseWriter, r *http.Request, user store.UserID) {
	table := r.URL.Query().Get("table")
	if table == "" {
		table = "daily"
	}
	rows, known := csvTables[table]
	if !known {
		names := make([]string, 0, len(csvTables))
		for n := range csvTables {
			names = append(names, n)
		}
		slices.Sort(names)
		http.Error(w, "table must be one of "+strings.Join(names, ", "), http.StatusBadRequest)
		return
	}
	d, data, ok := s.exportData(w, r, user)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+exportName(d, data.Window, table+".csv")+`"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	for _, row := range rows(data) {
		for i := range row {
			row[i] = csvCell(row[i])
		}
		cw.Write(row)
	}
	cw.Flush()
}

// rawReport serves a stored report's bytes as received, as a download
// (never rendered: it is what a stranger sent). Only a report with a
// policy for the domain is served.
func (s *Server) rawReport(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok || !s.reportsAllowed(w, r, d, true) {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("report"), 10, 64)
	var rep store.StoredTLSRPT
	if err == nil && id > 0 {
		rep, err = s.Monitor.Store.GetTLSRPTReport(r.Context(), store.ReportID(id), true)
	}
	if err != nil || id <= 0 || !aboutDomain(rep.Report, d.Name) {
		s.errorPage(w, r, http.StatusNotFound, "Page not found", "This domain has no such report.")
		return
	}
	if rep.RawPruned || len(rep.Raw) == 0 {
		s.errorPage(w, r, http.StatusNotFound, "No raw report", "Retention removed the raw bytes of this report; its parsed figures are kept and counted.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-tlsrpt-%d.json"`, d.Name, rep.ID))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(rep.Raw)
}

// aboutDomain: a policy of rep is about name (how the store files a
// report under a domain).
func aboutDomain(rep *tlsrpt.Report, name string) bool {
	if rep == nil {
		return false
	}
	for _, p := range rep.Policies {
		if domain.Canonical(p.Domain) == name {
			return true
		}
	}
	return false
}
