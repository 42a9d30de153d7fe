package web

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/scanjob"
)

// OpenAPI is the API's description (OpenAPI 3.1), served at
// /api/v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

func (s *Server) routesAPI(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/scans", s.apiCreate)
	mux.HandleFunc("GET /api/v1/scans/{id}", s.apiGet)
	mux.HandleFunc("GET /api/v1/scans/{id}/events", s.apiEvents)
	mux.HandleFunc("GET /api/v1/me", s.apiMe)
	mux.HandleFunc("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(OpenAPI))
	})
	// Everything else under /api/ answers in JSON too: 405 with Allow for
	// a known path, 404 for the rest.
	for path, allow := range map[string]string{
		"/api/v1/scans":                "POST",
		"/api/v1/scans/{id}":           "GET, HEAD",
		"/api/v1/scans/{id}/events":    "GET, HEAD",
		"/api/v1/openapi.yaml":         "GET, HEAD",
		"/api/v1/me":                   "GET, HEAD",
		"/api/v1/scans/{id}/{rest...}": "",
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if allow == "" {
				apiError(w, http.StatusNotFound, "not_found", "no such resource")
				return
			}
			w.Header().Set("Allow", allow)
			apiError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed here; use %s", r.Method, allow))
		})
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "not_found", "no such resource")
	})
}

// apiError writes {"error": {"code", "message"}}.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"encoding the response failed"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// scanRequest is the body of POST /api/v1/scans.
type scanRequest struct {
	Domain *string `json:"domain"`
	SMTP   *bool   `json:"smtp"`
}

// scanResource is a scan as the API shows it.
type scanResource struct {
	ID         string          `json:"id"`
	Domain     string          `json:"domain"`
	SMTP       bool            `json:"smtp"`
	State      scanjob.State   `json:"state"`
	Position   int             `json:"queue_position,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at,omitempty"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	ExpiresAt  *time.Time      `json:"expires_at,omitempty"`
	Links      links           `json:"links"`
	Stages     []scanjob.Event `json:"stages"`
	Document   json.RawMessage `json:"document,omitempty"`
	Error      string          `json:"error,omitempty"`
	Outcome    scanjob.Outcome `json:"outcome,omitempty"` // POST only
	Notes      []string        `json:"notes,omitempty"`   // POST only: how the input was read
}

type links struct {
	Self   string `json:"self"`
	Events string `json:"events"`
	Page   string `json:"page"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func resource(snap scanjob.Snapshot) scanResource {
	res := scanResource{ID: snap.ID, Domain: snap.Domain, SMTP: snap.SMTP, State: snap.State, Position: snap.Position,
		CreatedAt: snap.Created, StartedAt: timePtr(snap.Started), FinishedAt: timePtr(snap.Finished), ExpiresAt: timePtr(snap.Expires),
		Links:  links{Self: "/api/v1/scans/" + snap.ID, Events: "/api/v1/scans/" + snap.ID + "/events", Page: "/scan/" + snap.ID},
		Stages: snap.Events}
	if res.Stages == nil {
		res.Stages = []scanjob.Event{}
	}
	if rec := snap.Record; rec != nil {
		res.Document, res.Error = rec.Document, rec.Error
	}
	return res
}

// submitError maps a Submit error to a status, a code and a message, and
// sets Retry-After.
func submitError(w http.ResponseWriter, err error) (int, string, string) {
	var le *scanjob.LimitError
	switch {
	case errors.As(err, &le):
		w.Header().Set("Retry-After", strconv.Itoa(int((le.RetryAfter+time.Second-1)/time.Second)))
		msg := fmt.Sprintf("too many scans from your address; retry in %d seconds", int(le.RetryAfter.Round(time.Second)/time.Second))
		if le.Limit == "concurrent" {
			msg = "too many of your scans are still running; wait for one to finish"
		}
		return http.StatusTooManyRequests, "rate_limited", msg
	case errors.Is(err, scanjob.ErrQueueFull), errors.Is(err, scanjob.ErrClosed):
		w.Header().Set("Retry-After", "30")
		return http.StatusServiceUnavailable, "busy", "the scanner is busy; retry in a minute"
	}
	return http.StatusInternalServerError, "internal", "the scan could not be started"
}

func (s *Server) apiCreate(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		apiError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the request as application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the request body is larger than %d bytes", maxFormBytes))
			return
		}
		apiError(w, http.StatusBadRequest, "invalid_request", "the request body could not be read")
		return
	}
	var req scanRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		msg := "the body must be a JSON object such as {\"domain\": \"example.com\", \"smtp\": true}"
		if err != nil {
			msg += " (" + err.Error() + ")"
		}
		apiError(w, http.StatusBadRequest, "invalid_request", msg)
		return
	}
	if req.Domain == nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "the field \"domain\" is required")
		return
	}
	name, notes, err := domain.Parse(*req.Domain)
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_domain", err.Error())
		return
	}
	smtp := req.SMTP == nil || *req.SMTP
	j, outcome, err := s.Jobs.Submit(r.Context(), scanjob.Request{Domain: name, SMTP: smtp, Client: s.client(r)})
	if err != nil {
		status, code, msg := submitError(w, err)
		apiError(w, status, code, msg)
		return
	}
	res := resource(j.Snapshot())
	res.Outcome, res.Notes = outcome, notes
	w.Header().Set("Location", res.Links.Self)
	writeJSON(w, http.StatusAccepted, res)
}

// job finds the job named by the path, or answers 404.
func (s *Server) job(w http.ResponseWriter, r *http.Request, fail func(http.ResponseWriter, int, string, string)) *scanjob.Job {
	id := r.PathValue("id")
	if !scanjob.ValidID(id) {
		fail(w, http.StatusNotFound, "not_found", "no such scan: unknown or expired (anonymous scans are kept for an hour)")
		return nil
	}
	j, err := s.Jobs.Get(r.Context(), id)
	if err != nil {
		fail(w, http.StatusNotFound, "not_found", "no such scan: unknown or expired (anonymous scans are kept for an hour)")
		return nil
	}
	return j
}

func (s *Server) apiGet(w http.ResponseWriter, r *http.Request) {
	j := s.job(w, r, apiError)
	if j == nil {
		return
	}
	snap := j.Snapshot()
	if q := r.URL.Query().Get("wait"); q != "" && !snap.State.Final() {
		d, err := parseWait(q)
		if err != nil {
			apiError(w, http.StatusBadRequest, "invalid_wait", err.Error())
			return
		}
		done, ok := s.openStream(s.client(r))
		if !ok {
			w.Header().Set("Retry-After", "10")
			apiError(w, http.StatusTooManyRequests, "rate_limited", "too many open requests from your address")
			return
		}
		// The server's WriteTimeout runs from the request; waiting moves it.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d + streamWriteTimeout))
		ctx, cancel := context.WithTimeout(r.Context(), d)
		for !snap.State.Final() && ctx.Err() == nil {
			select {
			case <-j.Changed():
			case <-ctx.Done():
			}
			snap = j.Snapshot()
		}
		cancel()
		done() // before the answer: a client that reads it sees the stream closed
	}
	writeJSON(w, http.StatusOK, resource(snap))
}

// parseWait reads ?wait= ("30s", or a number of seconds), at most 60s.
func parseWait(q string) (time.Duration, error) {
	d, err := time.ParseDuration(q)
	if err != nil {
		n, err2 := strconv.Atoi(q)
		if err2 != nil {
			return 0, fmt.Errorf("wait=%q: give a duration such as 30s", q)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 || d > maxWait {
		return 0, fmt.Errorf("wait=%q: give a duration from 0s to %s", q, maxWait)
	}
	return d, nil
}
