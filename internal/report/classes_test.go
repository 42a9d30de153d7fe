package report

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// classConstants returns the values of every constant of type Class
// declared in the package directory dir (test files excluded).
func classConstants(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pkgs {
		for _, f := range p.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				vs, ok := n.(*ast.ValueSpec)
				if !ok {
					return true
				}
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Class" {
					return true
				}
				for _, v := range vs.Values {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, _ := strconv.Unquote(lit.Value)
						out = append(out, s)
					}
				}
				return true
			})
		}
	}
	if len(out) == 0 {
		t.Fatalf("no Class constants found in %s", dir)
	}
	return out
}

// TestFailureClassesDocumented: every failure class a policy fetch or an
// SMTP probe can record is explained where docs/json.md describes that
// object, so a JSON consumer never meets an undocumented value.
func TestFailureClassesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	var probe, fetch string
	for _, para := range strings.Split(string(doc), "\n\n") {
		if strings.Contains(para, "| `failure` |") {
			probe = para
		}
		if strings.HasPrefix(para, "A policy fetch:") {
			fetch = para
		}
	}
	if probe == "" || fetch == "" {
		t.Fatal("docs/json.md: the SMTP probe's `failure` row or the paragraph \"A policy fetch:\" is gone")
	}
	for _, c := range []struct {
		dir, text, where string
	}{
		{"../smtpprobe", probe, "the SMTP probe's `failure` row"},
		{"../fetch", fetch, "the policy fetch's `error_class`"},
	} {
		for _, class := range classConstants(t, c.dir) {
			if !strings.Contains(c.text, "`"+class+"`") {
				t.Errorf("docs/json.md, %s: class %q is not documented", c.where, class)
			}
		}
	}
}
