package web

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/diff/difftest"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/store"
)

// TestSummarisedScans: a scan that retention reduced to its summary still
// has its grade and findings in the API and on its page, is compared with
// a full scan by grade and findings, and every answer says the evidence
// was removed.
func TestSummarisedScans(t *testing.T) {
	st, clock, ann, h := annsStore(t, []store.Scope{store.ScopeRead})
	d, _ := st.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: "example.com"})

	broken := difftest.Healthy(clock.Now())
	difftest.AddFinding(broken, "mx-not-covered", "error", "mx", "mx3.example.com", "mx3.example.com is not covered")
	difftest.SetGrade(broken, "D")
	old := saveScan(t, st, d.ID, broken)
	clock.Advance(40 * 24 * time.Hour)
	recent := saveScan(t, st, d.ID, difftest.Healthy(clock.Now()))
	st0, err := st.Prune(t.Context(), store.Retention{FullScans: 30 * 24 * time.Hour, KeepFull: 1})
	if err != nil || st0.Summarised != 1 {
		t.Fatalf("Prune = %+v, %v", st0, err)
	}

	auth := []string{"Authorization", "Bearer ann"}
	path := fmt.Sprintf("/api/v1/domains/%d", d.ID)
	r := h.do("GET", fmt.Sprintf("%s/scans/%d", path, old.ID), "", "", auth...)
	var one struct {
		Grade    *string         `json:"grade"`
		Pruned   bool            `json:"pruned"`
		Report   json.RawMessage `json:"report"`
		Findings []store.Finding `json:"findings"`
	}
	json.Unmarshal(r.body, &one)
	if r.StatusCode != 200 || !one.Pruned || one.Grade == nil || *one.Grade != "D" || len(one.Findings) != len(broken.Findings) || string(one.Report) != "null" {
		t.Errorf("summarised scan: %d %s", r.StatusCode, truncate(r.body))
	}

	r = h.do("GET", path+"/diff", "", "", auth...)
	var df struct {
		Removed []report.Finding `json:"removed"`
		Grade   struct{ From, To string }
		Limited string `json:"limited"`
	}
	json.Unmarshal(r.body, &df)
	if r.StatusCode != 200 || df.Limited == "" || df.Grade.From != "D" || df.Grade.To != "A" ||
		len(df.Removed) != 1 || df.Removed[0].ID != "mx-not-covered" {
		t.Errorf("diff with a summary: %d %s", r.StatusCode, truncate(r.body))
	}

	cookie := []string{"Cookie", "session=ann"}
	r = h.do("GET", fmt.Sprintf("/domains/%d/scans/%d", d.ID, old.ID), "", "", cookie...)
	if body := string(r.body); r.StatusCode != 200 || !strings.Contains(body, "kept only a summary") || !strings.Contains(body, "mx3.example.com is not covered") {
		t.Errorf("summarised scan page: %d\n%s", r.StatusCode, body)
	}
	r = h.do("GET", fmt.Sprintf("/domains/%d/diff?from=%d&to=%d", d.ID, old.ID, recent.ID), "", "", cookie...)
	if body := string(r.body); r.StatusCode != 200 || !strings.Contains(body, "Only the grade and the findings can be compared") {
		t.Errorf("diff page with a summary: %d\n%s", r.StatusCode, body)
	}
	if r := h.do("GET", fmt.Sprintf("/domains/%d/scans/%d/report.json", d.ID, old.ID), "", "", cookie...); r.StatusCode != 404 || !strings.Contains(string(r.body), "only a summary") {
		t.Errorf("report.json of a summary: %d", r.StatusCode)
	}
}
