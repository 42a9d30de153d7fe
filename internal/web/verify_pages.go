package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/domainverify"
	"github.com/mailtls/mailtls/internal/store"
)

// Domain verification (docs/accounts.md, "Verifying a domain"): saving a
// domain to watch its public DNS and MTA-STS state needs no proof, but
// its TLS-RPT reports are private (who sends it mail, from which
// addresses), and registration may be open to anyone. So the reports
// page, its exports, the raw reports and the report alerts need the
// account to have published its own token at _mailtls-verify.<domain>.

func (s *Server) routesVerifyPages(page func(string, func(http.ResponseWriter, *http.Request, store.UserID))) {
	page("GET /domains/{id}/verify", s.verifyDomainPage)
	page("POST /domains/{id}/verify", s.verifyDomainForm)
}

// verifyView is the page that says how to verify, and why.
type verifyView struct {
	page
	Domain       store.Domain
	V            store.DomainVerification
	RecordName   string
	RecordValue  string
	Result       string // "found", "absent", "unknown" after a check; "" before
	Status       string // the lookup's status, for "unknown" and "absent"
	FromReports  bool   // shown instead of the reports
	NotPublished bool
}

// verification returns d's verification, creating its token on first use.
func (m *Monitoring) verification(ctx context.Context, d store.Domain) (store.DomainVerification, error) {
	return m.Store.StartVerification(ctx, d.UserID, d.ID, domainverify.NewToken())
}

// reportsAllowed is the gate of every reports URL: true when the account
// verified d. Otherwise it has answered (the page explaining how, for a
// page; 403 for a download) and nothing of the reports was read.
func (s *Server) reportsAllowed(w http.ResponseWriter, r *http.Request, d store.Domain, download bool) bool {
	v, err := s.Monitor.Store.Verification(r.Context(), d.ID)
	if err == nil && v.Verified() {
		return true
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.Log.Error("reading a domain verification failed", "domain", d.Name, "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "Please try again.")
		return false
	}
	if download {
		// Not even a count: the whole answer is how to verify.
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "verify that you control "+d.Name+" first: /domains/"+strconv.FormatInt(int64(d.ID), 10)+"/verify", http.StatusForbidden)
		return false
	}
	s.renderVerify(w, r, http.StatusForbidden, d, "", "", true)
	return false
}

func (s *Server) renderVerify(w http.ResponseWriter, r *http.Request, status int, d store.Domain, result, lookup string, fromReports bool) {
	v, err := s.Monitor.verification(r.Context(), d)
	if err != nil {
		s.Log.Error("starting a domain verification failed", "domain", d.Name, "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "Please try again.")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, status, "verifydomain", &verifyView{page: page{Title: "Verify " + d.Name}, Domain: d, V: v,
		RecordName: domainverify.Name(d.Name), RecordValue: domainverify.Value(v.Token), Result: result, Status: lookup, FromReports: fromReports})
}

func (s *Server) verifyDomainPage(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok {
		return
	}
	s.renderVerify(w, r, http.StatusOK, d, "", "", false)
}

// checkVerification looks the record up and stores the outcome (a
// temporary failure stores nothing: could not check, retry).
func (m *Monitoring) checkVerification(ctx context.Context, d store.Domain) (store.DomainVerification, domainverify.Outcome, string, error) {
	v, err := m.verification(ctx, d)
	if err != nil {
		return v, domainverify.Unknown, "", err
	}
	if m.Resolver == nil {
		return v, domainverify.Unknown, "no resolver configured", nil
	}
	o, a := domainverify.Check(ctx, m.Resolver, d.Name, v.Token)
	if o == domainverify.Unknown {
		return v, o, string(a.Status), nil
	}
	v = domainverify.Apply(v, o, m.now())
	return v, o, string(a.Status), m.Store.SaveVerification(ctx, v)
}

var outcomeWords = map[domainverify.Outcome]string{domainverify.Found: "found", domainverify.Absent: "absent", domainverify.Unknown: "unknown"}

func (s *Server) verifyDomainForm(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := s.pageDomain(w, r, user)
	if !ok {
		return
	}
	_, o, status, err := s.Monitor.checkVerification(r.Context(), d)
	if err != nil {
		s.Log.Error("checking a domain verification failed", "domain", d.Name, "error", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Something failed", "The check could not be stored; please try again.")
		return
	}
	s.renderVerify(w, r, http.StatusOK, d, outcomeWords[o], status, false)
}

// The API: GET shows the record to publish and the state, POST checks.
type apiVerification struct {
	Domain      string    `json:"domain"`
	RecordName  string    `json:"record_name"`
	RecordType  string    `json:"record_type"`
	RecordValue string    `json:"record_value"`
	Verified    bool      `json:"verified"`
	VerifiedAt  time.Time `json:"verified_at,omitzero"`
	CheckedAt   time.Time `json:"checked_at,omitzero"`
	// MissingSince: the record was absent at every check since then (a
	// verified domain lapses after domainverify.Lapse).
	MissingSince time.Time `json:"missing_since,omitzero"`
	// Check is the outcome of this request's lookup (POST only): found,
	// absent, or unknown (the lookup failed: retry; nothing changed).
	Check       string `json:"check,omitempty"`
	CheckStatus string `json:"check_status,omitempty"`
}

func newAPIVerification(d store.Domain, v store.DomainVerification) apiVerification {
	out := apiVerification{Domain: d.Name, RecordName: domainverify.Name(d.Name), RecordType: "TXT", RecordValue: domainverify.Value(v.Token), Verified: v.Verified()}
	out.VerifiedAt, out.CheckedAt, out.MissingSince = v.VerifiedAt.UTC(), v.CheckedAt.UTC(), v.MissingSince.UTC()
	return out
}

func (m *Monitoring) getVerification(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	v, err := m.verification(r.Context(), d)
	if err != nil {
		internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, newAPIVerification(d, v))
}

func (m *Monitoring) checkVerificationAPI(w http.ResponseWriter, r *http.Request, user store.UserID) {
	d, ok := m.owned(w, r, user)
	if !ok {
		return
	}
	v, o, status, err := m.checkVerification(r.Context(), d)
	if err != nil {
		internalError(w, err)
		return
	}
	out := newAPIVerification(d, v)
	out.Check, out.CheckStatus = outcomeWords[o], status
	code := http.StatusOK
	if o == domainverify.Unknown {
		// Could not check: retry later; nothing was changed.
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "60")
	}
	writeJSON(w, code, out)
}
