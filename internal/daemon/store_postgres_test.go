package daemon

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// serve with `store: postgres://…`: two instances on one database take
// TLS-RPT reports over HTTPS into it, and each reports its own
// connection pool on /healthz and /metrics.
func TestStoreOnPostgres(t *testing.T) {
	// A password in the URL (the test server trusts its clients, so it
	// is never asked for) must not reach the log.
	u, err := url.Parse(lab.NewPostgresDB(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "s3cret-pw")
	dbURL := u.String()
	var envs []*env
	for i := range 2 {
		e := newEnv(t)
		e.writeConfig("", e.domainYAML("example.test", "testing", "mx.example.test"))
		b, _ := os.ReadFile(e.cfgPath)
		os.WriteFile(e.cfgPath, append(b, fmt.Sprintf("store: %s\nreports:\n  domains: [example.test]\n", dbURL)...), 0o600)
		e.start(Options{Resolver: &resolve.Client{Servers: []string{e.l.DNS.Addr()}}, WatchInterval: -1})
		resp, err := e.client().Post("https://mta-sts.example.test/tlsrpt", "application/tlsrpt+gzip", bytes.NewReader(tlsReport(t, fmt.Sprint("instance-", i), "example.test")))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST to instance %d: %d", i, resp.StatusCode)
		}
		envs = append(envs, e)
	}
	db, err := sqlstore.OpenPostgres(context.Background(), dbURL, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	all, _, err := db.ListTLSRPTReports(context.Background(), store.TLSRPTQuery{Domain: "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].State != store.ReportCounted || all[1].State != store.ReportCounted {
		t.Fatalf("reports in the shared store: %+v", all)
	}
	for i, e := range envs {
		if h := e.admin("/healthz"); !strings.Contains(h, "store: postgres, ") || !strings.Contains(h, "connection(s) in use") {
			t.Errorf("instance %d /healthz: %s", i, h)
		}
		m := e.admin("/metrics")
		for _, want := range []string{"mailtls_store_pool_max_conns ", "mailtls_store_pool_conns ", "mailtls_store_pool_acquires_total "} {
			if !strings.Contains(m, want) {
				t.Errorf("instance %d /metrics lacks %s", i, want)
			}
		}
		// The log names the database without its password.
		if l := e.logs.String(); !strings.Contains(l, "store open") || strings.Contains(l, "s3cret-pw") {
			t.Errorf("instance %d log: %s", i, e.logs)
		}
	}
}
