package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/lab"
)

// TestSamples parses every real report body in ../shared/tlsrpt-samples
// (the .eml files are read by internal/tlsrptmail) and cross-checks the
// numbers against an independent reading with encoding/json: the summary
// totals and the sum of the failure details of every policy.
func TestSamples(t *testing.T) {
	dir := lab.Shared(t, "tlsrpt-samples")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json*"))
	if len(files) < 30 {
		t.Fatalf("only %d report bodies in %s", len(files), dir)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Parse(bytes.NewReader(raw), &Options{Hints: Hints{FileName: name}})
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			crossCheck(t, raw, r)
			if want, ok := sampleFacts[name]; ok {
				want(t, r)
			}
		})
	}
}

// crossCheck compares r with a plain encoding/json reading of raw.
func crossCheck(t *testing.T, raw []byte, r *Report) {
	t.Helper()
	if raw[0] == 0x1f {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ = io.ReadAll(zr)
	}
	var doc struct {
		Org      string `json:"organization-name"`
		ID       string `json:"report-id"`
		Policies []struct {
			Summary map[string]float64 `json:"summary"`
			Details []map[string]any   `json:"failure-details"`
		} `json:"policies"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	if doc.Org != "" && doc.Org != r.OrganizationName {
		t.Errorf("organization %q, encoding/json %q", r.OrganizationName, doc.Org)
	}
	if doc.ID != "" && doc.ID != r.ReportID {
		t.Errorf("report-id %q, encoding/json %q", r.ReportID, doc.ID)
	}
	if len(doc.Policies) != len(r.Policies) {
		t.Fatalf("%d policies, encoding/json %d", len(r.Policies), len(doc.Policies))
	}
	for i, p := range doc.Policies {
		got := r.Policies[i]
		var sum int64
		for _, d := range p.Details {
			if n, ok := d["failed-session-count"].(float64); ok {
				sum += int64(n)
			}
		}
		if got.DetailsFailed != sum {
			t.Errorf("policy %d: details sum %d, encoding/json %d", i, got.DetailsFailed, sum)
		}
		if s, ok := p.Summary["total-successful-session-count"]; ok && int64(s) != got.Successful {
			t.Errorf("policy %d: successful %d, encoding/json %v", i, got.Successful, s)
		}
		if f, ok := p.Summary["total-failure-session-count"]; ok && int64(f) != got.Failed {
			t.Errorf("policy %d: failed %d, encoding/json %v", i, got.Failed, f)
		}
	}
}

// sampleFacts are facts about particular samples, read off the files by
// hand (tlsrpt-landscape.md §2 lists the quirks).
var sampleFacts = map[string]func(t *testing.T, r *Report){
	"phiag-microsoft-2024-03-26-notz.json": func(t *testing.T, r *Report) {
		wantDay(t, r, "2024-03-26")
		wantNote(t, r, NoteDateNoZone)
	},
	"cryinc-microsoft.json": func(t *testing.T, r *Report) {
		if len(r.Policies) != 2 || r.Policies[1].Type != PolicyTLSA || len(r.Policies[1].Strings) != 2 || !strings.HasPrefix(r.Policies[1].Strings[0], "3 1 1 6007") {
			t.Errorf("TLSA policy %+v", r.Policies[1])
		}
		if strings.Join(r.Policies[0].MXPatterns, ",") != "*.random.net" || r.Policies[0].MXSource != "policy-string" {
			t.Errorf("sts patterns %q from %q", r.Policies[0].MXPatterns, r.Policies[0].MXSource)
		}
	},
	"cryinc-no-contact.json": func(t *testing.T, r *Report) {
		wantNote(t, r, NoteContactMissing)
		if strings.Join(r.Policies[0].MXPatterns, ",") != "mx.server.com" {
			t.Errorf("patterns %q", r.Policies[0].MXPatterns)
		}
	},
	"cryinc-no_ip_and_mx.json": func(t *testing.T, r *Report) {
		d := r.Policies[0].Failures[0]
		if d.ResultType != STSPolicyFetchError || d.FailedSessions != 3 || d.SendingMTAIP != "" || d.ReceivingMXHostname != "" {
			t.Errorf("detail %+v", d)
		}
	},
	"parsedmarc-mailru-2024-02-22.json": func(t *testing.T, r *Report) {
		p := r.Policies[0]
		if p.Failed != 1 || p.DetailsFailed != 2 {
			t.Errorf("failed %d details %d", p.Failed, p.DetailsFailed)
		}
		wantNote(t, r, NoteTotalsDisagree)
		wantDay(t, r, "2024-02-22")
	},
	"issue-sys4-51-postfix-sonne-2025-09-20.json": func(t *testing.T, r *Report) {
		if r.ReportID != "2025-09-20T00:00:00Z_idx1_mpi-klsb.mpg.de" || r.Policies[0].Type != PolicyNotFound || r.Policies[0].Domain != "" {
			t.Errorf("%q %+v", r.ReportID, r.Policies[0])
		}
		wantNote(t, r, NotePolicyDomainMissing)
	},
	"bq-socketlabs-2020-02-27.json": func(t *testing.T, r *Report) {
		if r.Policies[1].Failures[0].ReceivingMXHostname != "mta-sts.test.mailflow.ovh" {
			t.Errorf("alias not read: %+v", r.Policies[1].Failures[0])
		}
		wantNote(t, r, NoteKeyAlias)
		wantNote(t, r, NoteSamePolicyTwice)
		wantDay(t, r, "2020-02-27")
	},
	"stalwart-rpt03.json": func(t *testing.T, r *Report) {
		if r.Policies[1].Type != "invalid-policy-type" {
			t.Errorf("type %q", r.Policies[1].Type)
		}
	},
	"marcbradshaw-google-2020-03-02.json.gz": func(t *testing.T, r *Report) {
		if r.Policies[0].Type != PolicyNotFound || r.Policies[0].Successful != 343 || r.Policies[0].Domain != "fastmaildmarc.com" {
			t.Errorf("%+v", r.Policies[0])
		}
	},
	"sebastka-microsoft-2026-08-18.json": func(t *testing.T, r *Report) {
		if r.Policies[0].Type != PolicyTLSA || r.Policies[0].Sessions() != 4 || r.Policies[1].Type != PolicySTS || r.Policies[1].Sessions() != 4 {
			t.Errorf("%+v", r.Policies)
		}
	},
}

func wantDay(t *testing.T, r *Report, day string) {
	t.Helper()
	if got := r.Start.Format("2006-01-02"); got != day {
		t.Errorf("start day %s, want %s", got, day)
	}
}

func wantNote(t *testing.T, r *Report, c NoteCode) {
	t.Helper()
	if !r.HasNote(c) {
		t.Errorf("no %s note in %+v", c, r.Notes)
	}
}
