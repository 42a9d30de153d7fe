package finding_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// reqID matches a requirement ID of the checklist (docs/conformance.md):
// STS-TXT-7, RPT-TXT-11, DANE-VER-4, MISC-34, NAME-5, AMB-2…
var reqID = regexp.MustCompile(`\b((?:STS-(?:TXT|FETCH|HOST|POL|SND|DANE)|RPT-(?:TXT|DLV|JSON)|DANE-(?:DNS|REC|VER))-[0-9]+|(?:MISC|NAME|AMB)-[0-9]+)\b`)

// testRef is one test in the tests column: `pkg.TestName` and the quoted
// names of some of its cases.
var testRef = regexp.MustCompile("`([a-z0-9]+)\\.((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]*)`((?: \"(?:[^\"\\\\]|\\\\.)*\")*)")

var quoted = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)

// conformanceRow is one requirement of docs/conformance.md.
type conformanceRow struct {
	id, requirement, rfc, tests string
	line                        int
}

// readConformance parses the tables of docs/conformance.md.
func readConformance(t *testing.T, root string) []conformanceRow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "conformance.md"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []conformanceRow
	for i, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| ") || !reqID.MatchString(strings.SplitN(line, "|", 3)[1]) {
			continue
		}
		// Cells are separated by " | "; a '|' inside a cell is escaped.
		cells := strings.Split(strings.ReplaceAll(strings.Trim(line, "| "), `\|`, "\x00"), " | ")
		for j := range cells {
			cells[j] = strings.ReplaceAll(strings.TrimSpace(cells[j]), "\x00", "|")
		}
		if len(cells) != 4 {
			t.Errorf("docs/conformance.md:%d: %d cells, want ID | requirement | RFC | tests", i+1, len(cells))
			continue
		}
		rows = append(rows, conformanceRow{id: cells[0], requirement: cells[1], rfc: cells[2], tests: cells[3], line: i + 1})
	}
	return rows
}

// TestConformanceIDs: every requirement ID that code or docs use is
// defined in docs/conformance.md, once, with a requirement in words, its
// RFC section and the tests that cover it; and every test and case listed
// there exists.
func TestConformanceIDs(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	rows := readConformance(t, root)
	if len(rows) < 100 {
		t.Fatalf("docs/conformance.md defines %d IDs; the parser must be broken", len(rows))
	}
	defined := map[string]bool{}
	for _, r := range rows {
		if reqID.FindString(r.id) != r.id {
			t.Errorf("docs/conformance.md:%d: %q is not a requirement ID", r.line, r.id)
		}
		if defined[r.id] {
			t.Errorf("docs/conformance.md:%d: %s is defined twice", r.line, r.id)
		}
		defined[r.id] = true
		if len(r.requirement) < 15 {
			t.Errorf("docs/conformance.md:%d: %s says no requirement", r.line, r.id)
		}
		if !regexp.MustCompile(`^RFC [0-9]{4} §`).MatchString(r.rfc) {
			t.Errorf("docs/conformance.md:%d: %s: RFC column %q, want \"RFC NNNN §…\"", r.line, r.id, r.rfc)
		}
		refs := testRef.FindAllStringSubmatch(r.tests, -1)
		if len(refs) == 0 {
			t.Errorf("docs/conformance.md:%d: %s names no test", r.line, r.id)
		}
		for _, ref := range refs {
			checkTestExists(t, root, r, ref[1], ref[2], quoted.FindAllStringSubmatch(ref[3], -1))
		}
	}

	// Every ID used in the repository (code, tests, docs) is defined.
	used := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if rel == filepath.Join("docs", "conformance.md") || !strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, id := range reqID.FindAllString(string(b), -1) {
			if !slices.Contains(used[id], rel) {
				used[id] = append(used[id], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, files := range used {
		if !defined[id] {
			t.Errorf("%s is used in %s but not defined in docs/conformance.md", id, strings.Join(files, ", "))
		}
	}
}

// testFiles caches the test sources of a package directory.
var testFiles = map[string]string{}

// checkTestExists checks that package pkg (internal/pkg or cmd/pkg) has a
// test function name and, for each case, a string literal that names it.
func checkTestExists(t *testing.T, root string, r conformanceRow, pkg, name string, cases [][]string) {
	t.Helper()
	src, ok := testFiles[pkg]
	if !ok {
		for _, dir := range []string{filepath.Join(root, "internal", pkg), filepath.Join(root, "cmd", pkg)} {
			files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				src += string(b)
			}
		}
		testFiles[pkg] = src
	}
	if src == "" {
		t.Errorf("docs/conformance.md:%d: %s: no package %q with tests", r.line, r.id, pkg)
		return
	}
	if !strings.Contains(src, "\nfunc "+name+"(") {
		t.Errorf("docs/conformance.md:%d: %s: %s.%s does not exist", r.line, r.id, pkg, name)
	}
	for _, c := range cases {
		if !strings.Contains(src, `"`+c[1]+`"`) {
			t.Errorf("docs/conformance.md:%d: %s: %s.%s has no case %q", r.line, r.id, pkg, name, c[1])
		}
	}
}
