package finding

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

var idRe = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// TestCatalog checks every definition is complete and consistent: that is
// what docs/findings.md and the grading rubric are generated from.
func TestCatalog(t *testing.T) {
	for _, d := range Catalog() {
		if !idRe.MatchString(string(d.ID)) {
			t.Errorf("%s: ID is not kebab-case", d.ID)
		}
		if !slices.Contains(Components, d.Component) {
			t.Errorf("%s: unknown component %q", d.ID, d.Component)
		}
		if !strings.HasPrefix(d.Ref, "RFC ") {
			t.Errorf("%s: Ref %q does not cite an RFC", d.ID, d.Ref)
		}
		// The grade drop is about the grade, which sums up the other
		// findings; no requirement of the checklist is about it.
		if len(d.Checklist) == 0 && d.ID != HistoryGradeDropped {
			t.Errorf("%s: no checklist IDs", d.ID)
		}
		for s := range d.Caps {
			if !slices.Contains(d.Severities, s) {
				t.Errorf("%s: cap for severity %s it cannot have", d.ID, s)
			}
		}
		for _, text := range []string{d.Title, d.Explain, d.Fix} {
			if text == "" || strings.HasSuffix(text, " ") {
				t.Errorf("%s: empty or badly trimmed text %q", d.ID, text)
			}
		}
	}
}

func TestNewAndCap(t *testing.T) {
	f := New(MXNotCovered, Error, "mx1.example.com", "m", "fix")
	if f.Component != ComponentMX || f.Ref == "" || f.Cap() != GradeD {
		t.Errorf("New = %+v, cap %q", f, f.Cap())
	}
	if got := New(TLSRPTMissing, Info, "", "m", "").Cap(); got != "" {
		t.Errorf("info cap = %q, want none", got)
	}
	if got := New(PolicyVersion, Error, "", "m", "").Cap(); got != GradeC {
		t.Errorf("default error cap = %q, want C", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("New with a severity the catalog does not allow must panic")
		}
	}()
	New(STSRecordMissing, Error, "", "", "")
}

func TestWorseAndSort(t *testing.T) {
	if Worse("", GradeB) != GradeB || Worse(GradeA, GradeD) != GradeD || Worse(GradeF, GradeAPlus) != GradeF {
		t.Error("Worse is wrong")
	}
	fs := []Finding{
		New(TLSRPTMissing, Warning, "", "", ""),
		New(PolicyTrailingSpace, Info, "", "", ""),
		New(PolicyVersion, Error, "", "", ""),
		New(STSRecordMultiple, Error, "", "", ""),
	}
	Sort(fs)
	var got []ID
	for _, f := range fs {
		got = append(got, f.ID)
	}
	want := []ID{STSRecordMultiple, PolicyVersion, PolicyTrailingSpace, TLSRPTMissing}
	if !slices.Equal(got, want) {
		t.Errorf("Sort = %v, want %v", got, want)
	}
	if Worst(fs) != Error || Worst(nil) != 0 {
		t.Error("Worst is wrong")
	}
	var s Severity
	if err := s.UnmarshalText([]byte("warning")); err != nil || s != Warning {
		t.Errorf("UnmarshalText = %v, %v", s, err)
	}
}

// TestCatalogVersion: the version is stable within a build and changes
// with any text of the catalog.
func TestCatalogVersion(t *testing.T) {
	v := CatalogVersion()
	if len(v) != 12 || v != CatalogVersion() || v != versionOf(Catalog()) {
		t.Fatalf("CatalogVersion = %q", v)
	}
	defs := Catalog()
	edited := *defs[0]
	edited.Title += " (edited)"
	defs[0] = &edited
	if versionOf(defs) == v {
		t.Error("an edited title did not change the catalog version")
	}
}

// TestHistoryFindingsDoNotCap: history findings describe changes between
// scans; the grade describes one scan.
func TestHistoryFindingsDoNotCap(t *testing.T) {
	for _, d := range Catalog() {
		if d.Component != ComponentHistory {
			continue
		}
		for _, s := range d.Severities {
			if c := d.Cap(s); c != "" {
				t.Errorf("%s as %s caps the grade at %s", d.ID, s, c)
			}
		}
	}
}
