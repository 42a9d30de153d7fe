package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scanjob"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/store"
)

// progressWait bounds how long a progress page without JavaScript waits
// for the next stage before it is sent (it then asks again at once).
const progressWait = 20 * time.Second

func (s *Server) routesPages(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("POST /scan", s.submitForm)
	mux.HandleFunc("GET /scan/{id}", s.scanPage)
	mux.HandleFunc("GET /scan/{id}/report.json", s.downloadJSON)
	mux.HandleFunc("GET /scan/{id}/mta-sts.txt", s.downloadPolicy)
	mux.HandleFunc("GET /static/", serveStatic)
	for path, allow := range map[string]string{"/scan": "POST", "/scan/{id}": "GET, HEAD", "/scan/{id}/report.json": "GET, HEAD", "/scan/{id}/mta-sts.txt": "GET, HEAD"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			s.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", r.Method+" is not allowed here.")
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, "Page not found", "There is no page at this address.")
	})
}

// page is what every template gets.
type page struct {
	Title string
	// Main is the heading of the page.
	Main string
	// Nav is the account part of the header, set by render.
	Nav nav
}

// nav is the header's account links.
type nav struct {
	Accounts bool        // accounts are on
	User     *store.User // logged in
	CSRF     string      // the session's CSRF token, for forms (logged in only)
}

func (p *page) pageData() *page { return p }

type homeView struct {
	page
	Domain   string
	SMTP     bool
	Error    string
	EHLOName string
}

// render writes a page; data is a pointer to a view embedding page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	if p, ok := data.(interface{ pageData() *page }); ok {
		n := nav{Accounts: s.Accounts != nil, User: CurrentUser(r)}
		if n.User != nil {
			n.CSRF = s.sessions.GetString(r.Context(), sessionCSRF)
		}
		p.pageData().Nav = n
	}
	var b bytes.Buffer
	if err := templates[name].Execute(&b, data); err != nil {
		s.Log.Error("rendering a page failed", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	s.render(w, r, http.StatusOK, "home", &homeView{page: page{Title: "Check a domain"}, SMTP: true, EHLOName: s.EHLOName})
}

type errorView struct {
	page
	Message string
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	s.render(w, r, status, "error", &errorView{page: page{Title: title}, Message: msg})
}

// submitForm starts a scan from the home page's form and sends the
// browser to its page (303, so that reloading does not post again).
func (s *Server) submitForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.errorPage(w, r, http.StatusRequestEntityTooLarge, "Request too large", "The form was larger than a domain can be.")
			return
		}
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	input := r.PostForm.Get("domain")
	// The checkbox sends nothing when unchecked; "form" tells that the
	// form (not a bare request) was posted.
	smtp := r.PostForm.Get("smtp") != "" || r.PostForm.Get("form") == ""
	name, _, err := domain.Parse(input)
	if err != nil {
		msg := err.Error()
		var ie *domain.InvalidError
		if errors.As(err, &ie) {
			msg = ie.Reason
		}
		s.render(w, r, http.StatusBadRequest, "home", &homeView{page: page{Title: "Check a domain"}, Domain: input, SMTP: smtp,
			Error: "That is not a domain we can scan: " + msg + ".", EHLOName: s.EHLOName})
		return
	}
	j, _, err := s.Jobs.Submit(r.Context(), scanjob.Request{Domain: name, SMTP: smtp, Client: s.client(r)})
	if err != nil {
		status, _, msg := submitError(w, err)
		s.errorPage(w, r, status, http.StatusText(status), msg+".")
		return
	}
	http.Redirect(w, r, "/scan/"+j.ID(), http.StatusSeeOther)
}

// scanPage shows a scan: progress while it runs, the report when done.
// Without JavaScript the progress page asks again at once with ?seen=N,
// and that request waits until a stage beyond N finishes.
func (s *Server) scanPage(w http.ResponseWriter, r *http.Request) {
	j := s.job(w, r, s.pageNotFound(r))
	if j == nil {
		return
	}
	snap := j.Snapshot()
	if q := r.URL.Query().Get("seen"); q != "" && !snap.State.Final() {
		seen, err := strconv.Atoi(q)
		if err == nil && seen >= 0 {
			if done, ok := s.openStream(s.client(r)); ok {
				_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(progressWait + streamWriteTimeout))
				ctx, cancel := context.WithTimeout(r.Context(), progressWait)
				snap = j.Wait(ctx, seen)
				cancel()
				done()
			}
		}
	}
	if !snap.State.Final() {
		v := progressView(snap)
		s.render(w, r, http.StatusOK, "progress", &v)
		return
	}
	rec := snap.Record
	if rec.State == scanjob.Failed {
		s.errorPage(w, r, http.StatusOK, "The scan failed", "The scan of "+snap.Domain+" could not run: "+rec.Error+". Please try again.")
		return
	}
	doc, err := rec.Doc()
	if err != nil || doc == nil {
		s.Log.Error("a stored document does not decode", "scan", snap.ID, "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Internal error", "The result could not be shown.")
		return
	}
	v := newResultView(snap, doc)
	s.render(w, r, http.StatusOK, "result", &v)
}

func (s *Server) pageNotFound(r *http.Request) func(http.ResponseWriter, int, string, string) {
	return func(w http.ResponseWriter, status int, _, _ string) {
		s.render(w, r, status, "error", &errorView{page: page{Title: "Scan not found"},
			Message: "This scan does not exist or has expired: anonymous results are deleted an hour after the scan. Scan the domain again from the home page."})
	}
}

// progress page

type progressData struct {
	page
	ID       string
	Domain   string
	State    scanjob.State
	Position int
	Seen     int
	Events   []scanjob.Event
	Refresh  string // the URL a browser without JavaScript loads next
}

func progressView(snap scanjob.Snapshot) progressData {
	v := progressData{page: page{Title: "Scanning " + snap.Domain}, ID: snap.ID, Domain: snap.Domain, State: snap.State,
		Position: snap.Position, Seen: len(snap.Events), Events: snap.Events,
		Refresh: fmt.Sprintf("/scan/%s?seen=%d", snap.ID, len(snap.Events))}
	return v
}

// status words and icons: never colour alone (WCAG 1.4.1).
var statusWords = map[scanjob.Status][2]string{
	scanjob.StatusOK:           {"✓", "OK"},
	scanjob.StatusAbsent:       {"–", "Absent"},
	scanjob.StatusUndetermined: {"?", "Could not tell"},
	scanjob.StatusFailed:       {"✗", "Failed"},
	scanjob.StatusBlocked:      {"⊘", "Not connected"},
	scanjob.StatusStopped:      {"⏱", "Stopped"},
	scanjob.StatusSkipped:      {"–", "Not probed"},
}

// downloads

// downloadJSON serves the CLI's JSON document as a file.
func (s *Server) downloadJSON(w http.ResponseWriter, r *http.Request) {
	rec := s.finished(w, r)
	if rec == nil {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.mailtls.json"`, rec.Domain))
	w.Header().Set("Cache-Control", "no-store")
	w.Write(rec.Document)
	w.Write([]byte("\n"))
}

// downloadPolicy serves the policy file of the report's fix as
// text/plain with CRLF line endings (RFC 8461 §3.2), ready to publish.
func (s *Server) downloadPolicy(w http.ResponseWriter, r *http.Request) {
	rec := s.finished(w, r)
	if rec == nil {
		return
	}
	doc, err := rec.Doc()
	if err != nil || doc == nil {
		s.errorPage(w, r, http.StatusInternalServerError, "Internal error", "The result could not be read.")
		return
	}
	for _, f := range doc.Fixes {
		if f.Kind == "policy" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="mta-sts.txt"`)
			w.Header().Set("Cache-Control", "no-store")
			w.Write([]byte(crlf(f.Content)))
			return
		}
	}
	s.errorPage(w, r, http.StatusNotFound, "No policy file to publish", "The report of "+rec.Domain+" has no policy file among its fixes.")
}

// crlf makes every line end with CRLF.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if s != "" && !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}

// finished returns the record of a done scan, or answers 404.
func (s *Server) finished(w http.ResponseWriter, r *http.Request) *scanjob.Record {
	j := s.job(w, r, s.pageNotFound(r))
	if j == nil {
		return nil
	}
	snap := j.Snapshot()
	if snap.State != scanjob.Done {
		s.errorPage(w, r, http.StatusNotFound, "Not ready", "The scan of "+snap.Domain+" has not finished yet.")
		return nil
	}
	return snap.Record
}

// result page

type resultData struct {
	page
	ID          string
	Doc         *report.Document
	Grade       string // "" when undetermined
	GradeClass  string
	Counts      [4]int // by severity: 0 unused, info, warning, error
	Components  []componentView
	Fixes       []fixView
	HasPolicy   bool
	Expires     time.Time
	DNS         []answerView
	Fetches     []*fetch.Result
	Probes      []*smtpprobe.Result
	RescanInput string
	SMTP        bool
}

type componentView struct {
	Title    string
	ID       string
	Findings []findingView
}

type findingView struct {
	report.Finding
	Anchor string
	Title  string
	Icon   string
	Word   string
}

type fixView struct {
	report.Fix
	Step int
	// Copy is the text a copy button copies (a zone-file line, a policy).
	Copy string
}

type answerView struct {
	Label string
	*resolve.Answer
}

var severityWords = map[string][2]string{
	"error":   {"✖", "Error"},
	"warning": {"▲", "Warning"},
	"info":    {"ℹ", "Info"},
}

func newResultView(snap scanjob.Snapshot, doc *report.Document) resultData {
	v := resultData{page: page{Title: "Report for " + doc.Domain}, ID: snap.ID, Doc: doc, Expires: snap.Expires,
		RescanInput: doc.Domain, SMTP: snap.SMTP}
	if doc.Grade != nil {
		v.Grade = *doc.Grade
		v.GradeClass = "g-" + strings.ToLower(strings.TrimSuffix(v.Grade, "+"))
		if strings.HasSuffix(v.Grade, "+") {
			v.GradeClass += "plus"
		}
	}
	anchors := map[string]int{}
	for _, c := range finding.Components {
		cv := componentView{Title: c.Title(), ID: "c-" + string(c)}
		for _, f := range doc.Findings {
			if f.Component != string(c) {
				continue
			}
			fv := findingView{Finding: f, Anchor: "finding-" + f.ID}
			if n := anchors[f.ID]; n > 0 {
				fv.Anchor = fmt.Sprintf("finding-%s-%d", f.ID, n+1)
			}
			anchors[f.ID]++
			if d := finding.Lookup(finding.ID(f.ID)); d != nil {
				fv.Title = d.Title
			}
			sw := severityWords[f.Severity]
			fv.Icon, fv.Word = sw[0], sw[1]
			switch f.Severity {
			case "info":
				v.Counts[1]++
			case "warning":
				v.Counts[2]++
			case "error":
				v.Counts[3]++
			}
			cv.Findings = append(cv.Findings, fv)
		}
		if len(cv.Findings) > 0 {
			v.Components = append(v.Components, cv)
		}
	}
	for i, f := range doc.Fixes {
		fv := fixView{Fix: f, Step: i + 1}
		switch f.Kind {
		case "dns":
			fv.Copy = f.Zone
		case "policy":
			fv.Copy = f.Content
			v.HasPolicy = true
		}
		v.Fixes = append(v.Fixes, fv)
	}
	if o := doc.Evidence; o != nil {
		add := func(label string, a *resolve.Answer) {
			if a != nil {
				v.DNS = append(v.DNS, answerView{Label: label, Answer: a})
			}
		}
		add("MTA-STS record", o.DNS.STS)
		add("MTA-STS record at the draft name", o.DNS.STSDraft)
		add("TXT at the domain itself", o.DNS.Apex)
		add("Wildcard check", o.DNS.WildcardProbe)
		add("TLS-RPT record", o.DNS.TLSRPT)
		add("TLS-RPT at a draft name", o.DNS.TLSRPTDraft)
		add("TLS-RPT at a draft name", o.DNS.TLSRPTDraftUnder)
		add("MX records", o.DNS.MX)
		add("Policy host IPv4", o.DNS.PolicyHostA)
		add("Policy host IPv6", o.DNS.PolicyHostAAAA)
		add("Root zone (DNSSEC check)", o.DNS.Root)
		for _, h := range o.MXHosts {
			add("MX host IPv4", h.A)
			add("MX host IPv6", h.AAAA)
			add("DANE TLSA", h.TLSA)
			add("DANE TLSA at the CNAME target", h.TLSAExpanded)
			add("_tcp node of the MX host", h.TCPNode)
			add("TLS-RPT record of the MX host", h.TLSRPT)
			v.Probes = append(v.Probes, h.Probes...)
		}
		v.Fetches = o.Fetches
	}
	return v
}
