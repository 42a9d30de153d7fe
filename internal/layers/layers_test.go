package layers

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mailtls/mailtls/"

// The layers of docs/development.md ("Import rules").
var (
	// protocol packages: pure parsers and verdicts, no I/O.
	protocol = []string{"internal/domain", "internal/txtrec", "internal/mtasts", "internal/tlsrpt", "internal/dane", "internal/webpki", "internal/finding"}
	// observers gather evidence over the network.
	observers = []string{"internal/dial", "internal/resolve", "internal/fetch", "internal/smtpprobe", "internal/scan"}
	// judges turn evidence into findings, plans and documents.
	judges = []string{"internal/check", "internal/rollout", "internal/report", "internal/tlsrptagg", "internal/sendpolicy"}
	// servers and composition: what judges never depend on.
	servers = []string{"internal/config", "internal/daemon", "internal/policyhost", "internal/web", "internal/bulk", "internal/scanjob", "internal/resolver", "internal/lab", "cmd/mailtls"}
)

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Standard   bool
}

// modulePackages lists the module's packages (tests left out) with their
// direct imports and all their dependencies, as go list -deps reports them.
func modulePackages(t *testing.T) map[string]*pkg {
	t.Helper()
	touchSources(t)
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Imports,Deps,Standard", module+"...")
	cmd.Dir = "../.."
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(&out)
	for {
		p := &pkg{}
		if err := dec.Decode(p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if rel, ok := strings.CutPrefix(p.ImportPath, module); ok {
			pkgs[rel] = p
		}
	}
	if len(pkgs) < 30 || pkgs["internal/check"] == nil || pkgs["cmd/mailtls"] == nil {
		t.Fatalf("go list found %d packages of the module", len(pkgs))
	}
	return pkgs
}

// touchSources reads every Go file of the module, so that go test's cache
// (which sees the files a test opens, not those go list reads) runs the
// test again when an import changes.
func touchSources(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && path != "../.." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata"):
			return filepath.SkipDir
		case !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod"):
			_, err = os.ReadFile(path)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// local returns the module's packages among paths, relative to the module.
func local(paths []string) []string {
	var out []string
	for _, p := range paths {
		if rel, ok := strings.CutPrefix(p, module); ok {
			out = append(out, rel)
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	pkgs := modulePackages(t)
	for _, name := range slices.Sorted(maps.Keys(pkgs)) {
		p := pkgs[name]
		deps, imports := local(p.Deps), p.Imports
		bad := func(rule, what string) { t.Errorf("%s %s (%s)", name, what, rule) }
		only := func(rule string, allowed ...[]string) {
			for _, d := range deps {
				if !slices.ContainsFunc(allowed, func(set []string) bool { return slices.Contains(set, d) }) {
					bad(rule, "depends on "+d)
				}
			}
		}
		switch {
		case slices.Contains(protocol, name):
			only("protocol packages depend only on protocol packages", protocol)
		case slices.Contains(observers, name):
			only("observers depend only on observers and protocol packages", observers, protocol)
		case slices.Contains(judges, name):
			for _, d := range deps {
				if slices.Contains(servers, d) {
					bad("judges never depend on servers or configuration", "depends on "+d)
				}
			}
		case name == "internal/policyhost":
			only("policyhost takes its own types: no configuration, no observer", protocol)
		case name == "internal/daemon":
			for _, d := range []string{"internal/scan", "internal/smtpprobe"} {
				if slices.Contains(local(imports), d) {
					bad("daemon composes roles; the roles' packages observe", "imports "+d)
				}
			}
		}
		if slices.Contains(local(imports), "internal/config") && name != "cmd/mailtls" && name != "internal/daemon" {
			bad("only the composition roots (cmd/mailtls, internal/daemon) read the configuration", "imports internal/config")
		}
		if slices.Contains(imports, "gopkg.in/yaml.v3") && name != "internal/config" {
			bad("YAML stays in internal/config", "imports gopkg.in/yaml.v3")
		}
		if slices.Contains(imports, "github.com/miekg/dns") && name != "internal/resolve" && name != "internal/lab" {
			bad("DNS wire types stay in internal/resolve (and the lab's DNS server)", "imports github.com/miekg/dns")
		}
		if slices.Contains(deps, "internal/lab") && name != "internal/lab" && !strings.HasPrefix(name, "bench") {
			bad("the lab is for tests and benchmarks only", "depends on internal/lab")
		}
	}
}
