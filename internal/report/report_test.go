package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/webpki"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var (
	started  = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	notAfter = time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)
)

func txt(name string, ttl uint32, values ...string) *resolve.Answer {
	a := &resolve.Answer{Name: name, Type: "TXT", Status: resolve.StatusOK, Rcode: "NOERROR", Server: "127.0.0.1:53"}
	for _, v := range values {
		a.Records = append(a.Records, resolve.Record{Name: name, Type: "TXT", TTL: ttl, Value: `"` + v + `"`, Text: []string{v}})
	}
	if len(values) == 0 {
		a.Status = resolve.StatusNXDomain
		a.Rcode = "NXDOMAIN"
	}
	return a
}

func addr(name, typ string, ips ...string) *resolve.Answer {
	a := &resolve.Answer{Name: name, Type: typ, Status: resolve.StatusOK, Rcode: "NOERROR", Server: "127.0.0.1:53"}
	for _, ip := range ips {
		a.Records = append(a.Records, resolve.Record{Name: name, Type: typ, TTL: 300, Value: ip, Addr: netip.MustParseAddr(ip)})
	}
	if len(ips) == 0 {
		a.Status, a.Rcode = resolve.StatusNoData, "NOERROR"
	}
	return a
}

// fixture is a domain in testing mode with a policy that has line-ending
// and coverage problems, one MX host outside the policy and no TLS-RPT.
func fixture() *scan.Observations {
	d := "example.com"
	body := "version: STSv1\nmode: testing\r\nmx: mx1.example.com\nmax_age: 86400 \n"
	mx := &resolve.Answer{Name: d, Type: "MX", Status: resolve.StatusOK, Rcode: "NOERROR", Server: "127.0.0.1:53", Records: []resolve.Record{
		{Name: d, Type: "MX", TTL: 300, Value: "10 mx1.example.com.", Preference: 10, Host: "mx1.example.com"},
		{Name: d, Type: "MX", TTL: 300, Value: "20 mx2.example.com.", Preference: 20, Host: "mx2.example.com"},
	}}
	return &scan.Observations{
		Domain: d, StartedAt: started, DurationMS: 142.5, PolicyHost: "mta-sts." + d,
		DNS: scan.DNS{
			STS:              txt("_mta-sts."+d, 300, "v=STSv1; id=20261101"),
			STSDraft:         txt("_mta_sts."+d, 300),
			Apex:             txt(d, 300, "v=spf1 mx -all"),
			TLSRPT:           txt("_smtp._tls."+d, 300),
			TLSRPTDraft:      txt("_smtp-tlsrpt."+d, 300),
			TLSRPTDraftUnder: txt("_smtp_tlsrpt."+d, 300),
			MX:               mx,
			PolicyHostA:      addr("mta-sts."+d, "A", "192.0.2.80"),
			PolicyHostAAAA:   addr("mta-sts."+d, "AAAA"),
		},
		Fetches: []*fetch.Result{{
			URL: "https://mta-sts.example.com/.well-known/mta-sts.txt", Host: "mta-sts.example.com", Address: "192.0.2.80:443",
			TLS: &fetch.TLS{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256",
				Chain:   []webpki.Cert{{Subject: "", Issuer: "CN=Test Intermediate", DNSNames: []string{"mta-sts.example.com"}, NotBefore: started.Add(-24 * time.Hour), NotAfter: notAfter, KeyType: "ECDSA", SHA256: strings.Repeat("ab", 32), SPKISHA256: strings.Repeat("cd", 32)}},
				Verdict: webpki.Verdict{Trusted: true, NameMatch: true, NotAfter: notAfter}},
			Status: 200, Header: map[string]string{"Content-Type": "text/plain"}, Body: fetch.Body(body), BodyBytes: int64(len(body)),
			Timings: fetch.Timings{Connect: 10, Handshake: 25, FirstByte: 40, Total: 41}, StartedAt: started,
		}},
		MXHosts: []*scan.MXHost{
			{Host: "mx1.example.com", Preference: 10, A: addr("mx1.example.com", "A", "192.0.2.25"), AAAA: addr("mx1.example.com", "AAAA", "2001:db8::25")},
			{Host: "mx2.example.com", Preference: 20, A: addr("mx2.example.com", "A", "192.0.2.26"), AAAA: addr("mx2.example.com", "AAAA")},
		},
	}
}

// enforced is the fixture in enforce mode with TLS-RPT and SMTP probes: mx1
// passes on both addresses, mx2 offers no STARTTLS.
func enforced() *scan.Observations {
	o := fixture()
	body := "version: STSv1\r\nmode: enforce\r\nmx: *.example.com\r\nmax_age: 604800\r\n"
	o.Fetches[0].Body, o.Fetches[0].BodyBytes = fetch.Body(body), int64(len(body))
	o.DNS.TLSRPT = txt("_smtp._tls.example.com", 300, "v=TLSRPTv1; rua=mailto:tlsrpt@example.com")
	good := func(host, ip string) *smtpprobe.Result {
		return &smtpprobe.Result{Host: host, Address: netip.AddrPortFrom(netip.MustParseAddr(ip), 25).String(), BannerCode: 220, Banner: host + " ESMTP",
			EHLOName: "[192.0.2.2]", Extensions: []string{"PIPELINING", "STARTTLS"}, STARTTLS: true, Transcript: []string{"S: 220 " + host + " ESMTP"},
			TLS: &smtpprobe.TLS{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256",
				Chain:   []webpki.Cert{{DNSNames: []string{host}, NotAfter: notAfter, KeyType: "ECDSA"}},
				Verdict: webpki.Verdict{Trusted: true, NameMatch: true, NotAfter: notAfter}},
			Timings: smtpprobe.Timings{Connect: 5, Banner: 6, EHLO: 7, Handshake: 12, Total: 14}, StartedAt: started}
	}
	o.MXHosts[0].Probes = []*smtpprobe.Result{good("mx1.example.com", "192.0.2.25"), good("mx1.example.com", "2001:db8::25")}
	o.MXHosts[1].Probes = []*smtpprobe.Result{{Host: "mx2.example.com", Address: "192.0.2.26:25", BannerCode: 220, Banner: "mx2.example.com ESMTP",
		EHLOName: "[192.0.2.2]", Extensions: []string{"PIPELINING"}, Class: smtpprobe.STARTTLSNotOffered, Error: "the EHLO reply does not offer STARTTLS",
		Transcript: []string{"S: 220 mx2.example.com ESMTP"}, StartedAt: started}}
	for _, h := range o.MXHosts {
		h.TLSA = &resolve.Answer{Name: "_25._tcp." + h.Host, Type: "TLSA", Status: resolve.StatusNXDomain, Rcode: "NXDOMAIN"}
	}
	return o
}

// undetermined is a domain whose _mta-sts lookup failed.
func undetermined() *scan.Observations {
	o := fixture()
	o.DNS.STS = &resolve.Answer{Name: "_mta-sts.example.com", Type: "TXT", Status: resolve.StatusServFail, Rcode: "SERVFAIL", Server: "127.0.0.1:53", Error: "127.0.0.1:53: SERVFAIL"}
	return o
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/report -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test ./internal/report -update after checking the change):\n--- got ---\n%s\n--- want ---\n%s", name, got, want)
	}
}

func TestGoldenText(t *testing.T) {
	for name, o := range map[string]*scan.Observations{"testing": fixture(), "undetermined": undetermined(), "enforce-smtp": enforced()} {
		r := check.Evaluate(o, started)
		r.Notes = []string{`normalised "Example.COM." to "example.com"`}
		var b bytes.Buffer
		if err := WriteText(&b, r, TextOptions{}); err != nil {
			t.Fatal(err)
		}
		golden(t, name+".txt", b.Bytes())
		var c bytes.Buffer
		if err := WriteText(&c, r, TextOptions{Color: true}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(c.String(), "\x1b[") || strings.Contains(b.String(), "\x1b[") {
			t.Error("colour must appear only when asked for")
		}
	}
}

// TestGoldenJSON pins the JSON document without its evidence, which is
// the input (TestEvidenceRoundTrip covers it): an -update diff shows what
// changed in the report.
func TestGoldenJSON(t *testing.T) {
	for name, o := range map[string]*scan.Observations{"testing": fixture(), "undetermined": undetermined(), "enforce-smtp": enforced()} {
		r := check.Evaluate(o, started)
		doc := NewDocument(r, "Example.COM.")
		if doc.Evidence != o {
			t.Errorf("%s: the document does not carry the evidence", name)
		}
		doc.Evidence = nil
		var b bytes.Buffer
		if err := WriteJSON(&b, doc); err != nil {
			t.Fatal(err)
		}
		if bytes.Count(b.Bytes(), []byte("\n")) != 1 {
			t.Errorf("%s: a document must be one line (JSON Lines)", name)
		}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, b.Bytes(), "", "  "); err != nil {
			t.Fatal(err)
		}
		golden(t, name+".json", pretty.Bytes())
	}
}

// TestJSONContract checks the fields docs/json.md promises.
func TestJSONContract(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, NewDocument(check.Evaluate(fixture(), started), "example.com")); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema_version", "domain", "grade", "policy", "policy_status", "mx", "tlsrpt", "findings", "fixes", "evidence", "duration_ms"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("missing %q", k)
		}
	}
	if doc["schema_version"] != float64(SchemaVersion) || doc["grade"] != "D" && doc["grade"] != "B" {
		t.Errorf("schema_version %v grade %v", doc["schema_version"], doc["grade"])
	}
	mx := doc["mx"].([]any)[1].(map[string]any)
	if mx["host"] != "mx2.example.com" || mx["policy_match"] != false {
		t.Errorf("mx[1] = %v", mx)
	}
	var u bytes.Buffer
	if err := WriteJSON(&u, NewDocument(check.Evaluate(undetermined(), started), "example.com")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(u.Bytes(), []byte(`"grade":null`)) || !bytes.Contains(u.Bytes(), []byte(`"policy_status":"undetermined"`)) {
		t.Errorf("an undetermined scan has grade null: %s", u.String()[:200])
	}
}

// TestEvidenceRoundTrip: the evidence in a JSON document reads back into
// the same Observations, which evaluate to the same report: a saved scan
// can be replayed offline (docs/json.md, "evidence"). The evidence of the
// SMTP fixture is pinned in testdata/evidence.
func TestEvidenceRoundTrip(t *testing.T) {
	for name, o := range map[string]*scan.Observations{"testing": fixture(), "undetermined": undetermined(), "enforce-smtp": enforced()} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteJSON(&b, NewDocument(check.Evaluate(o, started), "example.com")); err != nil {
				t.Fatal(err)
			}
			var back struct {
				Evidence *scan.Observations `json:"evidence"`
			}
			if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Evidence == nil {
				t.Fatalf("no evidence read back: %v", err)
			}
			want, _ := json.Marshal(o)
			got, _ := json.Marshal(back.Evidence)
			if !bytes.Equal(got, want) {
				t.Errorf("the evidence changes on a round trip:\n got %s\nwant %s", got, want)
			}
			var replayed, orig bytes.Buffer
			WriteText(&orig, check.Evaluate(o, started), TextOptions{})
			WriteText(&replayed, check.Evaluate(back.Evidence, started), TextOptions{})
			if replayed.String() != orig.String() {
				t.Errorf("the replayed evidence is judged differently:\n%s\n---\n%s", replayed.String(), orig.String())
			}
			if name == "enforce-smtp" {
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, want, "", "  "); err != nil {
					t.Fatal(err)
				}
				golden(t, "evidence/"+name+".json", pretty.Bytes())
			}
		})
	}
}

func TestZoneLine(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		f    check.Fix
		want string
	}{
		{check.Fix{Name: "_mta-sts.example.com", Type: "TXT", TTL: 3600, Value: "v=STSv1; id=1"}, `_mta-sts.example.com. 3600 IN TXT "v=STSv1; id=1"`},
		{check.Fix{Name: "x.example.com", Type: "TXT", Value: `a"b\c`}, `x.example.com. IN TXT "a\"b\\c"`},
		{check.Fix{Name: "x.example.com", Type: "TXT", Value: long}, `x.example.com. IN TXT "` + long[:255] + `" "` + long[255:] + `"`},
		{check.Fix{Name: "_mta-sts.example.com", Type: "CNAME", TTL: 300, Value: "gone.test."}, `_mta-sts.example.com. 300 IN CNAME gone.test.`},
	}
	for _, tt := range tests {
		if got := ZoneLine(tt.f); got != tt.want {
			t.Errorf("ZoneLine = %s, want %s", got, tt.want)
		}
	}
}

// TestFindingsDocIsCurrent fails when docs/findings.md does not match the
// catalog. Regenerate with: go run ./cmd/mailtls findings --markdown > docs/findings.md
func TestFindingsDocIsCurrent(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFindingsMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "findings.md")
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Error("docs/findings.md is stale: run go run ./cmd/mailtls findings --markdown > docs/findings.md (or go test ./internal/report -update)")
	}
}
