package tlsrptview

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// jsonKeys lists the object keys a value of type t can produce: the json
// names of struct fields, recursively through pointers, slices and map
// values (a map's own keys are data, not schema). time.Time is a string.
func jsonKeys(t reflect.Type, seen map[reflect.Type]bool) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() || seen[t] {
		return nil
	}
	seen[t] = true
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
		out = append(out, jsonKeys(f.Type, seen)...)
	}
	return out
}

// section is the text of docs/json.md from the heading that starts with
// head up to the next heading of the same or a higher level.
func section(t *testing.T, doc, head string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+head)
	if i < 0 {
		t.Fatalf("docs/json.md has no heading %q", head)
	}
	level := strings.Count(strings.Fields(head)[0], "#")
	rest := doc[i+1+len(head):]
	for _, l := range strings.SplitAfter(rest, "\n") {
		if h, _, _ := strings.Cut(l, " "); strings.Trim(h, "#") == "" && len(h) > 0 && len(h) <= level {
			return rest[:strings.Index(rest, l)]
		}
	}
	return rest
}

// The fields of `reports list --json` and `reports summary --json` are
// the ones the issue names and docs/json.md documents: every key the
// documents can carry is in the document's section, and the fields the
// issue promises are among the keys.
func TestJSONContract(t *testing.T) {
	b, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	list := section(t, doc, "## `reports list --json`")
	summary := section(t, doc, "## `reports summary DOMAIN --json`")
	for _, c := range []struct {
		name    string
		typ     reflect.Type
		section string
		issue   []string // the fields issue 12 names
	}{
		{"reports list --json", reflect.TypeFor[Item](), list, []string{"organization", "report_id", "start", "end", "channel", "dkim", "notes", "policies",
			"type", "domain", "mx_patterns", "successful", "failed", "failures_by_result_type", "failures_by_receiving_mx"}},
		// "the same sums per policy type over a window"
		{"reports summary --json", reflect.TypeFor[Summary](), summary, []string{"policies", "window", "type", "successful", "failed",
			"failures_by_result_type", "failures_by_receiving_mx"}},
	} {
		keys := jsonKeys(c.typ, map[reflect.Type]bool{})
		for _, k := range keys {
			if !strings.Contains(c.section, "`"+k+"`") {
				t.Errorf("%s: field %q is not documented in its section of docs/json.md", c.name, k)
			}
		}
		for _, k := range c.issue {
			if !slices.Contains(keys, k) {
				t.Errorf("%s: no field %q (issue 12 names it)", c.name, k)
			}
		}
	}
}
