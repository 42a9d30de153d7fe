package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/scanjob"
)

// TestAPIScan: POST starts a scan (202, Location), GET ?wait returns the
// CLI's JSON document, and that document is exactly what the CLI renders
// from the same evidence (report.NewDocument of check.Evaluate).
func TestAPIScan(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	w := world{t, h.lab}
	w.grade("aplus.test", "A+")
	r := h.do("POST", "/api/v1/scans", "application/json", `{"domain": "postmaster@APlus.Test."}`)
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.StatusCode, r.body)
	}
	m := r.json(t)
	id := m["id"].(string)
	if loc := r.Header.Get("Location"); loc != "/api/v1/scans/"+id {
		t.Errorf("Location = %q", loc)
	}
	if m["domain"] != "aplus.test" || m["smtp"] != true || m["outcome"] != "started" {
		t.Errorf("POST body: %v", m)
	}
	if notes, _ := m["notes"].([]any); len(notes) == 0 {
		t.Errorf("POST body has no notes on how the input was read: %v", m)
	}
	done := h.finish(id)
	if done["state"] != "done" || done["expires_at"] == nil {
		t.Fatalf("scan: %v", done)
	}
	raw, _ := json.Marshal(done["document"])
	var doc report.Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SchemaVersion != report.SchemaVersion || doc.Grade == nil || *doc.Grade != "A+" {
		t.Fatalf("document: schema %d, grade %v; reasons %v", doc.SchemaVersion, doc.Grade, doc.GradeReasons)
	}
	if doc.Input != "" || len(doc.Notes) != 0 {
		t.Errorf("the shared document carries the input %q / notes %v; they belong to one client", doc.Input, doc.Notes)
	}
	// The same rendering as the CLI: evaluate the evidence again.
	again := report.NewDocument(check.Evaluate(doc.Evidence, time.Now()), doc.Domain)
	a, _ := json.Marshal(again)
	b, _ := json.Marshal(&doc)
	if string(a) != string(b) {
		t.Errorf("the API's document differs from the CLI's rendering of its evidence:\nAPI %s\nCLI %s", truncate(b), truncate(a))
	}
	stages, _ := done["stages"].([]any)
	if len(stages) < 10 {
		t.Errorf("%d stages recorded, want every DNS answer, fetch and probe", len(stages))
	}
	// A second request joins nothing (the scan is over) but reuses it.
	r = h.do("POST", "/api/v1/scans", "application/json", `{"domain": "aplus.test", "smtp": true}`)
	if m := r.json(t); r.StatusCode != http.StatusAccepted || m["id"] != id || m["outcome"] != "reused" || m["state"] != "done" {
		t.Errorf("second POST within 2 minutes: %d %v", r.StatusCode, m)
	}
}

// TestAPIGoldenDocuments: the CLI's golden JSON documents validate
// against the Document schema of openapi.yaml.
func TestAPIGoldenDocuments(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	schema := doc.Components.Schemas["Document"].Value
	files, _ := filepath.Glob("../report/testdata/*.json")
	if len(files) == 0 {
		t.Fatal("no golden documents in internal/report/testdata")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s does not match the Document schema: %v", f, err)
		}
	}
	// The goldens above leave the evidence out; it has its own.
	evidence := schema.Properties["evidence"].Value
	files, _ = filepath.Glob("../report/testdata/evidence/*.json")
	if len(files) == 0 {
		t.Fatal("no golden evidence in internal/report/testdata/evidence")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := evidence.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s does not match the evidence schema of Document: %v", f, err)
		}
	}
}

// TestAPIBadInput: every refusal is a JSON error with the right status
// (and matches openapi.yaml; the harness checks).
func TestAPIBadInput(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	long := strings.Repeat("a", 300) + ".test"
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
		contains                        string
	}{
		{"empty domain", "POST", "/api/v1/scans", "application/json", `{"domain": ""}`, 400, "invalid_domain", "empty"},
		{"300 characters", "POST", "/api/v1/scans", "application/json", `{"domain": "` + long + `"}`, 400, "invalid_domain", "invalid domain"},
		{"not a domain", "POST", "/api/v1/scans", "application/json", `{"domain": "not a domain!"}`, 400, "invalid_domain", "invalid domain"},
		{"IP literal", "POST", "/api/v1/scans", "application/json", `{"domain": "192.0.2.1"}`, 400, "invalid_domain", "IP address"},
		{"no domain", "POST", "/api/v1/scans", "application/json", `{"smtp": true}`, 400, "invalid_request", "required"},
		{"unknown field", "POST", "/api/v1/scans", "application/json", `{"domain": "a.test", "resolver": "10.0.0.1:53"}`, 400, "invalid_request", "unknown field"},
		{"not JSON", "POST", "/api/v1/scans", "application/json", `domain=a.test`, 400, "invalid_request", ""},
		{"two objects", "POST", "/api/v1/scans", "application/json", `{"domain": "a.test"} {}`, 400, "invalid_request", ""},
		{"wrong type", "POST", "/api/v1/scans", "application/json", `{"domain": 42}`, 400, "invalid_request", ""},
		{"form body", "POST", "/api/v1/scans", "application/x-www-form-urlencoded", `domain=a.test`, 415, "unsupported_media_type", ""},
		{"no content type", "POST", "/api/v1/scans", "", `{"domain": "a.test"}`, 415, "unsupported_media_type", ""},
		{"oversized", "POST", "/api/v1/scans", "application/json", `{"domain": "a.test", "x": "` + strings.Repeat("x", 8000) + `"}`, 413, "body_too_large", ""},
		{"GET the collection", "GET", "/api/v1/scans", "", "", 405, "method_not_allowed", ""},
		{"DELETE a scan", "DELETE", "/api/v1/scans/aaaaaaaaaaaaaaaaaaaaaaaaaa", "", "", 405, "method_not_allowed", ""},
		{"PUT the events", "PUT", "/api/v1/scans/aaaaaaaaaaaaaaaaaaaaaaaaaa/events", "", "", 405, "method_not_allowed", ""},
		{"unknown id", "GET", "/api/v1/scans/aaaaaaaaaaaaaaaaaaaaaaaaaa", "", "", 404, "not_found", ""},
		{"malformed id", "GET", "/api/v1/scans/..%2f..%2fetc", "", "", 404, "not_found", ""},
		{"unknown id events", "GET", "/api/v1/scans/aaaaaaaaaaaaaaaaaaaaaaaaaa/events", "", "", 404, "not_found", ""},
		{"unknown path", "GET", "/api/v1/domains", "", "", 404, "not_found", ""},
		{"unknown version", "GET", "/api/v2/scans", "", "", 404, "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(tt.method, tt.path, tt.ctype, tt.body)
			if r.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tt.status, r.body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			e, _ := r.json(t)["error"].(map[string]any)
			if e["code"] != tt.code || !strings.Contains(fmt.Sprint(e["message"]), tt.contains) {
				t.Errorf("error = %v, want code %s mentioning %q", e, tt.code, tt.contains)
			}
			if tt.status == 405 && r.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	// The domain error is the CLI's message.
	r := h.do("POST", "/api/v1/scans", "application/json", `{"domain": "exa mple.com"}`)
	e := r.json(t)["error"].(map[string]any)
	if !strings.HasPrefix(e["message"].(string), "invalid domain: ") {
		t.Errorf("domain error %q is not the CLI's", e["message"])
	}
	// A bad ?wait on a running scan.
	w := world{t, h.lab}
	w.grade("slow.test", "F")
	h.lab.DNS.SetLatency(300 * time.Millisecond)
	id := h.startScan("slow.test", false)
	if r := h.do("GET", "/api/v1/scans/"+id+"?wait=forever", "", ""); r.StatusCode != 400 || r.json(t)["error"].(map[string]any)["code"] != "invalid_wait" {
		t.Errorf("?wait=forever: %d %s", r.StatusCode, r.body)
	}
	if r := h.do("GET", "/api/v1/scans/"+id+"?wait=2h", "", ""); r.StatusCode != 400 {
		t.Errorf("?wait=2h: %d", r.StatusCode)
	}
	h.lab.DNS.SetLatency(0)
	h.finish(id)
}

// TestAPILimits: 429 with Retry-After per client, 503 when the queue is
// full; another client is not affected by the first one's limit.
func TestAPILimits(t *testing.T) {
	h := newHarness(t, harnessOptions{jobs: scanjob.Config{Workers: 1, Queue: 1, PerClientRate: 1.0 / 60, PerClientBurst: 2, PerClientConcurrent: 5}})
	w := world{t, h.lab}
	for _, d := range []string{"l1.test", "l2.test", "l3.test"} {
		w.grade(d, "F")
	}
	h.lab.DNS.SetLatency(200 * time.Millisecond) // keep the first scans running
	h.startScan("l1.test", false)
	h.startScan("l2.test", false)
	r := h.do("POST", "/api/v1/scans", "application/json", `{"domain": "l3.test"}`)
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("third scan within the burst: %d %q %s", r.StatusCode, r.Header.Get("Retry-After"), r.body)
	}
	// Another client (trusted proxy header) hits the full queue instead:
	// one running, one waiting.
	h.web.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	r = h.do("POST", "/api/v1/scans", "application/json", `{"domain": "l3.test"}`, "X-Forwarded-For", "203.0.113.9")
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("with the queue full: %d %s", r.StatusCode, r.body)
	}
	h.lab.DNS.SetLatency(0)
}

// TestAPIEvents: the event stream replays the stages, streams the rest,
// ends with "end", and Last-Event-ID resumes after a stage.
func TestAPIEvents(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	world{t, h.lab}.grade("ev.test", "B")
	h.lab.DNS.SetLatency(30 * time.Millisecond)
	id := h.startScan("ev.test", true)
	events := h.readEvents(id, "")
	if len(events) < 3 || events[0].name != "state" || events[len(events)-1].name != "end" {
		t.Fatalf("events: %+v", events)
	}
	var steps []int
	for _, e := range events {
		if e.name == "step" {
			var ev scanjob.Event
			if err := json.Unmarshal([]byte(e.data), &ev); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(ev.Seq) != e.id {
				t.Errorf("event id %q for seq %d", e.id, ev.Seq)
			}
			steps = append(steps, ev.Seq)
		}
	}
	for i, s := range steps {
		if s != i+1 {
			t.Fatalf("steps %v: want 1, 2, 3, … without gaps", steps)
		}
	}
	var end stateEvent
	json.Unmarshal([]byte(events[len(events)-1].data), &end)
	if end.State != scanjob.Done || end.Grade == nil || *end.Grade != "B" || end.Page != "/scan/"+id {
		t.Errorf("end event: %+v", end)
	}
	// Resume after stage 3.
	again := h.readEvents(id, "3")
	var first string
	for _, e := range again {
		if e.name == "step" {
			first = e.id
			break
		}
	}
	if first != "4" {
		t.Errorf("after Last-Event-ID 3 the first step is %q, want 4", first)
	}
}

type sse struct{ name, id, data string }

// readEvents reads a whole event stream (it ends with the scan).
func (h *harness) readEvents(id, lastID string) []sse {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/api/v1/scans/"+id+"/events", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		h.t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	h.validate(req, "", response{resp, nil})
	var out []sse
	var cur sse
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" {
				out = append(out, cur)
			}
			cur = sse{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return out
}

// TestAPIJoin: a second request for a domain being scanned joins it.
func TestAPIJoin(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	world{t, h.lab}.grade("join.test", "F")
	h.lab.DNS.SetLatency(100 * time.Millisecond)
	a := h.startScan("join.test", true)
	r := h.do("POST", "/api/v1/scans", "application/json", `{"domain": "JOIN.test"}`)
	m := r.json(t)
	if m["id"] != a || m["outcome"] != "joined" {
		t.Errorf("second request while scanning: %v", m)
	}
	h.finish(a)
}

// TestAPISSRF: the web role never connects to private, loopback or
// link-local targets; the report says so in findings and is served as a
// normal result.
func TestAPISSRF(t *testing.T) {
	h := newHarness(t, harnessOptions{allow: []netip.Prefix{}})
	w := world{t, h.lab}
	w.dns("internal.test", `_mta-sts.$D. 300 IN TXT "v=STSv1; id=1"`,
		"mta-sts.$D. 300 IN A 169.254.169.254", "mta-sts.$D. 300 IN AAAA fe80::1",
		"$D. 300 IN MX 10 mx1.$D.", "$D. 300 IN MX 20 mx2.$D.", "$D. 300 IN MX 30 mx3.$D.",
		"mx1.$D. 300 IN A 127.0.0.1", "mx2.$D. 300 IN A 10.0.0.25", "mx3.$D. 300 IN A 100.64.1.1", "mx3.$D. 300 IN AAAA ::1")
	id := h.startScan("internal.test", true)
	done := h.finish(id)
	raw, _ := json.Marshal(done["document"])
	var doc report.Document
	json.Unmarshal(raw, &doc)
	got := map[string]int{}
	for _, f := range doc.Findings {
		got[f.ID]++
	}
	if got["policy-host-not-public"] != 1 || got["mx-address-not-public"] != 4 {
		t.Errorf("findings %v: want policy-host-not-public once and mx-address-not-public for each of 4 addresses", got)
	}
	if got["smtp-unreachable"]+got["policy-fetch-failed"] > 0 {
		t.Errorf("blocked targets reported as network failures: %v", got)
	}
	for _, st := range done["stages"].([]any) {
		s := st.(map[string]any)
		if (s["stage"] == "smtp" || s["stage"] == "policy") && s["status"] != "blocked" {
			t.Errorf("stage %v: want blocked", s)
		}
	}
	// The page is the report, not an error page.
	r := h.do("GET", "/scan/"+id, "", "")
	if r.StatusCode != 200 || !strings.Contains(string(r.body), "finding-mx-address-not-public") {
		t.Errorf("result page: %d", r.StatusCode)
	}
}
