package tlsrptagg

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptmail"
)

// TestSamplesAggregate sums all real samples: duplicates across
// containers collapse, each policy type keeps its own figures, and
// Microsoft's sts+tlsa reports count their sessions once per domain.
func TestSamplesAggregate(t *testing.T) {
	dir := lab.Shared(t, "tlsrpt-samples")
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var reps []*tlsrpt.Report
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		switch tlsrptmail.Detect(raw) {
		case tlsrptmail.KindReport:
			r, err := tlsrpt.Parse(bytes.NewReader(raw), &tlsrpt.Options{Hints: tlsrpt.Hints{FileName: filepath.Base(f)}})
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			reps = append(reps, r)
		case tlsrptmail.KindMessage:
			m, err := tlsrptmail.Extract(bytes.NewReader(raw), nil)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			reps = append(reps, m.Parsed()...)
		}
	}
	if len(reps) != 53 {
		t.Fatalf("%d reports from the samples", len(reps))
	}
	s := Aggregate(reps)
	// Count what the unique reports hold, type by type.
	want := map[tlsrpt.PolicyType]int64{}
	seen := map[[2]string]bool{}
	for _, r := range reps {
		k := [2]string{r.OrganizationName, r.ReportID}
		if seen[k] {
			continue
		}
		seen[k] = true
		for _, p := range r.Policies {
			want[p.Type] += p.Sessions()
		}
	}
	if len(s.Duplicates) != 53-len(seen) {
		t.Errorf("%d duplicates, want %d", len(s.Duplicates), 53-len(seen))
	}
	for typ, n := range want {
		if got := s.Totals(Filter{Type: typ}); got.Sessions() != n {
			t.Errorf("%s: %d sessions, want %d", typ, got.Sessions(), n)
		}
	}
	// B-1 on real reports: Microsoft's karlsen.fr (sts 4, tlsa 4) and
	// random.net (sts 2, tlsa 2).
	for dom, n := range map[string]int64{"karlsen.fr": 4 + 2, "random.net": 2} {
		// karlsen.fr also has a Google report of 2 sessions.
		if sess, _ := s.DomainTotals(Filter{Domain: dom}); sess != n {
			t.Errorf("%s: per-domain %d sessions, want %d", dom, sess, n)
		}
	}
}
