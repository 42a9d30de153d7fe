package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
)

// TestRolesSplit: two instances share one store, one running only the
// web role and the other only the worker (serve --roles). A domain saved
// through the first is scanned by the second, which has no web listener;
// each /healthz speaks of its own roles only.
func TestRolesSplit(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		rolesSplit(t, func(web *env) string { return filepath.Join(web.dir, "mailtls.db") })
	})
	// Two instances as a deployment runs them: one PostgreSQL database
	// (docs/scaling.md).
	t.Run("postgres", func(t *testing.T) { rolesSplit(t, func(*env) string { return lab.NewPostgresDB(t) }) })
}

func rolesSplit(t *testing.T, storeOf func(web *env) string) {
	web := newEnv(t)
	const d = "split.test"
	web.l.DNS.MustAdd(t, d+`. 300 IN MX 10 mx.`+d+`.`, `_mta-sts.`+d+`. 300 IN TXT "v=STSv1; id=1"`)
	web.l.MustPolicyHost(t, d, lab.PolicyHostOptions{Body: "version: STSv1\r\nmode: enforce\r\nmx: mx." + d + "\r\nmax_age: 604800\r\n"})
	web.l.MustMX(t, "mx."+d, []netip.Addr{web.l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	dbPath := storeOf(web)
	token := apiUser(t, dbPath, "ann@example.test")

	// The worker: the same lab and the same configuration, its own file.
	dir := t.TempDir()
	worker := &env{t: t, l: web.l, dir: dir, cfgPath: filepath.Join(dir, "mailtls.yaml"), logs: &lab.LogBuffer{}, reload: make(chan struct{}, 1)}
	for _, e := range []*env{web, worker} {
		e.writeWebConfig(fmt.Sprintf("  public_url: https://check.example.test\nstore: %q\n", dbPath))
	}
	opts := Options{WebNet: web.l.Net(), WebRoots: web.l.CA.Pool(), MonitorPoll: 50 * time.Millisecond}
	opts.Roles = []string{"web", "admin"}
	web.start(opts)
	opts.Roles = []string{"worker", "admin"}
	worker.start(opts)
	if len(worker.addrs["web"]) != 0 || len(web.addrs["web"]) != 1 {
		t.Fatalf("web listeners: web instance %v, worker instance %v", web.addrs["web"], worker.addrs["web"])
	}

	api := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+web.addrs["web"][0]+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, out)
		}
		return out
	}
	dom := api("POST", "/api/v1/domains", `{"domain":"`+d+`"}`, 201)
	path := fmt.Sprintf("/api/v1/domains/%v/scans", dom["id"])
	deadline := time.Now().Add(60 * time.Second)
	for {
		scans := api("GET", path, "", 200)["scans"].([]any)
		if len(scans) == 1 && scans[0].(map[string]any)["state"] == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker instance did not scan the saved domain: %v\nweb:\n%s\nworker:\n%s", scans, web.logs, worker.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h := get(t, "http://"+web.addrs["admin"][0]+"/healthz"); strings.Contains(h, "monitor:") || !strings.Contains(h, "web: ") {
		t.Errorf("web instance's /healthz:\n%s", h)
	}
	if h := get(t, "http://"+worker.addrs["admin"][0]+"/healthz"); !strings.Contains(h, "monitor: 1 scans stored") || strings.Contains(h, "web: ") ||
		!strings.Contains(h, "monitor: queue: 0 rescan(s) due, the oldest 0s late; 0 alert(s) due, the oldest 0s late") {
		t.Errorf("worker instance's /healthz:\n%s", h)
	}
	// The worker's figures (docs/scaling.md), on the worker instance only.
	m := get(t, "http://"+worker.addrs["admin"][0]+"/metrics")
	for _, series := range []string{`mailtls_worker_scans_total{result="stored"} 1`, `mailtls_worker_lease_takeovers_total{lease="domain"} 0`,
		`mailtls_worker_queue_due{queue="rescans"} 0`, `mailtls_worker_queue_lag_seconds{queue="deliveries"} 0`} {
		if !strings.Contains(m, series+"\n") {
			t.Errorf("worker instance's /metrics has no %s", series)
		}
	}
	if m := get(t, "http://"+web.addrs["admin"][0]+"/metrics"); strings.Contains(m, "mailtls_worker_") {
		t.Error("the web instance's /metrics has worker series")
	}
	for _, e := range []*env{worker, web} {
		if err := e.stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}
}

// TestRolesRefused: --roles naming an unknown role, or a role the
// configuration does not set up, is a configuration error at start; an
// instance never starts quietly without the role it was started for.
func TestRolesRefused(t *testing.T) {
	e := newEnv(t)
	e.writeWebConfig(fmt.Sprintf("store: %q\n", filepath.Join(e.dir, "mailtls.db")))
	for _, tt := range []struct {
		roles []string
		want  string
	}{
		{[]string{}, "name at least one"},
		{[]string{"web", "scheduler"}, `unknown role "scheduler"`},
		{[]string{"host"}, "no host: section"},
		{[]string{"reports"}, "no reports: section"},
	} {
		// A Run that starts serves until its deadline, then returns nil.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := Run(ctx, Options{ConfigPath: e.cfgPath, Stderr: e.logs, Roles: tt.roles, WatchInterval: -1})
		cancel()
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("--roles %v: %v, want a configuration error with %q", tt.roles, err, tt.want)
		}
	}
}
