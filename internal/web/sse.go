package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/scanjob"
)

// streamWriteTimeout bounds each write of an event stream; the server's
// own WriteTimeout would otherwise end every stream.
const streamWriteTimeout = 30 * time.Second

// stateEvent is the data of the "state" and "end" events.
type stateEvent struct {
	State    scanjob.State `json:"state"`
	Position int           `json:"queue_position,omitempty"`
	Grade    *string       `json:"grade,omitempty"` // "end" of a done scan; null when undetermined
	Error    string        `json:"error,omitempty"`
	Page     string        `json:"page"`
}

// apiEvents streams a scan's progress as server-sent events: "state" when
// the state changes, "step" for each stage (with its number as the event
// id, so Last-Event-ID resumes after it), and "end" when the scan is
// final, after which the stream closes.
func (s *Server) apiEvents(w http.ResponseWriter, r *http.Request) {
	j := s.job(w, r, apiError)
	if j == nil {
		return
	}
	after := 0
	for _, v := range []string{r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")} {
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			apiError(w, http.StatusBadRequest, "invalid_request", "Last-Event-ID and after must be event numbers")
			return
		}
		after = n
		break
	}
	done, ok := s.openStream(s.client(r))
	if !ok {
		w.Header().Set("Retry-After", "10")
		apiError(w, http.StatusTooManyRequests, "rate_limited", "too many open event streams from your address")
		return
	}
	defer done()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	flush := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		buf.Reset()
		return rc.Flush() == nil
	}
	buf.WriteString("retry: 2000\n\n")
	var lastState scanjob.State
	lastPos := -1
	for {
		ctx, cancel := context.WithTimeout(r.Context(), s.Heartbeat)
		snap := j.Wait(ctx, after)
		cancel()
		if r.Context().Err() != nil {
			return
		}
		if snap.State != lastState || snap.Position != lastPos {
			writeEvent(&buf, "state", "", stateEvent{State: snap.State, Position: snap.Position, Page: "/scan/" + snap.ID})
			lastState, lastPos = snap.State, snap.Position
		}
		for _, e := range snap.Events {
			if e.Seq > after {
				writeEvent(&buf, "step", strconv.Itoa(e.Seq), e)
				after = e.Seq
			}
		}
		if snap.State.Final() {
			end := stateEvent{State: snap.State, Page: "/scan/" + snap.ID}
			if rec := snap.Record; rec != nil {
				end.Error = rec.Error
				if doc, err := rec.Doc(); err == nil && doc != nil {
					end.Grade = doc.Grade
				}
			}
			writeEvent(&buf, "end", "", end)
			flush()
			return
		}
		if buf.Len() == 0 {
			buf.WriteString(": keep-alive\n\n")
		}
		if !flush() {
			return
		}
	}
}

// writeEvent appends one event; data is JSON on one line.
func writeEvent(buf *bytes.Buffer, event, id string, data any) {
	b, err := json.Marshal(data)
	if err != nil {
		b = []byte(`{}`)
	}
	if id != "" {
		fmt.Fprintf(buf, "id: %s\n", id)
	}
	fmt.Fprintf(buf, "event: %s\ndata: %s\n\n", event, b)
}
