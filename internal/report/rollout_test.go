package report

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/rollout"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/webpki"
)

// testingReady is the enforced fixture in testing mode with every MX
// address passing: promote accepts it.
func testingReady() *scan.Observations {
	o := enforced()
	body := "version: STSv1\r\nmode: testing\r\nmx: *.example.com\r\nmax_age: 86400\r\n"
	o.Fetches[0].Body, o.Fetches[0].BodyBytes = fetch.Body(body), int64(len(body))
	p := *o.MXHosts[0].Probes[0]
	p.Host, p.Address = "mx2.example.com", "192.0.2.26:25"
	p.TLS = &smtpprobe.TLS{Version: "TLS 1.3", Chain: []webpki.Cert{{DNSNames: []string{"mx2.example.com"}, NotAfter: notAfter}},
		Verdict: webpki.Verdict{Trusted: true, NameMatch: true, NotAfter: notAfter}}
	o.MXHosts[1].Probes = []*smtpprobe.Result{&p}
	return o
}

// rolloutOutputs are the outputs of every lifecycle command for the
// fixtures, each rendered in the three formats.
func rolloutOutputs(t *testing.T) map[string]*rollout.Output {
	t.Helper()
	must := func(o *rollout.Output, err error) *rollout.Output {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	newProbe := &smtpprobe.Result{Host: "mx.newprovider.example", Address: "198.51.100.25:25", Class: smtpprobe.STARTTLSNotOffered, Error: "the EHLO reply does not offer STARTTLS"}
	return map[string]*rollout.Output{
		"init": must(rollout.Init("example.com", []string{"mx1.example.com", "tenant-example-com.mail.protection.outlook.com"},
			rollout.InitOptions{HostAddrs: []string{"192.0.2.80", "2001:db8::80"}, Now: started})),
		"init-cname": must(rollout.Init("example.com", []string{"mx1.example.com"},
			rollout.InitOptions{RUA: []string{"mailto:tls@example.com", "https://reports.example.net/tlsrpt"}, HostCNAME: "policies.host.example.", Now: started, CurrentID: "20261128120000"})),
		"promote":         rollout.Promote(check.Evaluate(testingReady(), started), rollout.PromoteOptions{Now: started}),
		"promote-refused": rollout.Promote(check.Evaluate(fixture(), started), rollout.PromoteOptions{Now: started}),
		"promote-forced":  rollout.Promote(check.Evaluate(fixture(), started), rollout.PromoteOptions{Force: true, MaxAge: 1209600, Now: started}),
		"retire":          rollout.Retire(check.Evaluate(enforced(), started), rollout.RetireOptions{PreviousMaxAge: 31557600, Now: started}),
		"plan": must(rollout.Plan(check.Evaluate(enforced(), started), rollout.PlanOptions{
			Add: []string{"mx.newprovider.example"}, Remove: []string{"mx2.example.com"}, Now: started,
			Probes: map[string][]*smtpprobe.Result{"mx.newprovider.example": {newProbe}}})),
	}
}

// TestGoldenRollout pins the three renderings of every lifecycle command
// (docs/policy.md): zone-file lines, the JSON document and octoDNS
// records. go test ./internal/report -update rewrites them.
func TestGoldenRollout(t *testing.T) {
	for name, out := range rolloutOutputs(t) {
		t.Run(name, func(t *testing.T) {
			var zone, js, octo bytes.Buffer
			if err := WriteRolloutZone(&zone, out, started); err != nil {
				t.Fatal(err)
			}
			if err := WriteRolloutJSON(&js, out); err != nil {
				t.Fatal(err)
			}
			if err := WriteRolloutOctoDNS(&octo, out, started); err != nil {
				t.Fatal(err)
			}
			golden(t, "rollout/"+name+".zone", zone.Bytes())
			golden(t, "rollout/"+name+".json", js.Bytes())
			golden(t, "rollout/"+name+".octodns.yaml", octo.Bytes())
			var doc map[string]any
			if err := json.Unmarshal(js.Bytes(), &doc); err != nil || doc["schema_version"] != float64(SchemaVersion) || doc["command"] != out.Command {
				t.Errorf("JSON document: %v %v", err, doc)
			}
		})
	}
}

// TestGoldenLint pins the text and JSON reports of mailtls policy lint,
// for a broken draft alone and for a draft against a live scan.
func TestGoldenLint(t *testing.T) {
	broken := []byte("\ufeffversion: STSv1\nmode: enforce\nmx: mx1.example.com.\nmax_age: 3600\n")
	draft := []byte("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: old.example.com\r\nmax_age: 604800\r\n")
	for name, r := range map[string]*check.Report{
		"lint-broken": check.Lint(broken, check.LintOptions{Now: started}),
		"lint-html":   check.Lint(draft, check.LintOptions{ServedAs: "text/html", Now: started}),
		"lint-live":   check.Lint(draft, check.LintOptions{Live: enforced(), Now: started}),
	} {
		t.Run(name, func(t *testing.T) {
			var text, js bytes.Buffer
			if err := WriteLintText(&text, r, TextOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&js, NewLintDocument(r)); err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, js.Bytes(), "", "  "); err != nil {
				t.Fatal(err)
			}
			golden(t, "lint/"+name+".txt", text.Bytes())
			golden(t, "lint/"+name+".json", pretty.Bytes())
		})
	}
}
