package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/daemon"
	"github.com/mailtls/mailtls/internal/lab"
)

// TestServeAPIMatchesCheck: the web checker's API (`mailtls serve`, web
// role) returns the very document `mailtls check --json` prints for the
// same domain: same schema version, grade, findings, fixes, sender
// readings and evidence. Only what belongs to one run differs: the times,
// and the CLI's input and notes (a scan on the web may be shared by
// several visitors).
func TestServeAPIMatchesCheck(t *testing.T) {
	l, labArgs := newLab(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
store: %q
web:
  listen: ["127.0.0.1:0"]
  scanner:
    resolvers: [%q]
    ehlo: checker.example.test
    allow_networks: ["127.0.0.0/8", "::1/128"]
`, filepath.Join(dir, "mailtls.db"), l.DNS.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string][]string, 1)
	done := make(chan error, 1)
	logs := &lab.LogBuffer{}
	go func() {
		done <- daemon.Run(ctx, daemon.Options{ConfigPath: cfg, Stderr: logs, WatchInterval: -1,
			WebNet: l.Net(), WebRoots: l.CA.Pool(), Ready: func(a map[string][]string) { ready <- a }})
	}()
	var base string
	select {
	case a := <-ready:
		base = "http://" + a["web"][0]
	case err := <-done:
		cancel()
		t.Fatalf("serve stopped: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	for _, d := range []string{"good.test", "broken.test", "dane.test"} {
		t.Run(d, func(t *testing.T) {
			r := run(t, append(append([]string{"check", "--json", "--ehlo", "checker.example.test"}, labArgs...), d)...)
			if r.code != ExitOK && r.code != ExitFindings {
				t.Fatalf("check: exit %d\n%s", r.code, r.stderr)
			}
			var cli map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &cli); err != nil {
				t.Fatalf("check --json: %v", err)
			}
			resp, err := http.Post(base+"/api/v1/scans", "application/json", strings.NewReader(fmt.Sprintf(`{"domain": %q}`, d)))
			if err != nil {
				t.Fatal(err)
			}
			var created struct{ ID string }
			json.NewDecoder(resp.Body).Decode(&created)
			resp.Body.Close()
			resp, err = http.Get(base + "/api/v1/scans/" + created.ID + "?wait=60s")
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				State    string
				Document map[string]any
			}
			err = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if err != nil || got.State != "done" {
				t.Fatalf("API: %v, state %q", err, got.State)
			}
			for _, doc := range []map[string]any{cli, got.Document} {
				delete(doc, "input")
				delete(doc, "notes")
				dropRunFields(doc)
			}
			if !reflect.DeepEqual(cli, got.Document) {
				a, _ := json.MarshalIndent(cli, "", " ")
				b, _ := json.MarshalIndent(got.Document, "", " ")
				t.Errorf("the API's document differs from check --json:\n%s", firstDifference(string(a), string(b)))
			}
		})
	}
}

// dropRunFields removes, at any depth, what differs between two runs of
// the same scan: start times and durations, and where --connect-to sent a
// connection ("dialed"; the web role has no connect-to).
func dropRunFields(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			switch k {
			case "scanned_at", "started_at", "duration_ms", "timings_ms", "dialed":
				delete(v, k)
			default:
				dropRunFields(x)
			}
		}
	case []any:
		for _, x := range v {
			dropRunFields(x)
		}
	}
}

// firstDifference shows where two texts part, with some context.
func firstDifference(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			lo := max(0, i-5)
			return fmt.Sprintf("line %d\ncheck --json:\n%s\nAPI:\n%s", i+1, strings.Join(al[lo:min(len(al), i+5)], "\n"), strings.Join(bl[lo:min(len(bl), i+5)], "\n"))
		}
	}
	return fmt.Sprintf("one is a prefix of the other (%d and %d lines)", len(al), len(bl))
}
