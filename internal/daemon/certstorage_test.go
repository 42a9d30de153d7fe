package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
)

// TestCertStorageUnreachable: a PostgreSQL store that does not answer
// stops serve at start with an error that names the store (opened first:
// the host role keeps its policy ids there, then its certificates) and the
// database without its password, within the open timeout.
func TestCertStorageUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mailtls.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`admin: {listen: "off"}
store: postgres://mailtls:s3cret-pw@%s/mailtls
host:
  listen_https: ["127.0.0.1:0"]
  listen_http: ["127.0.0.1:0"]
  storage: %s
  acme: {ca: "https://127.0.0.1:1/dir"}
  domains:
    example.test: {mode: testing, mx: [mx.example.test]}
`, addr, filepath.Join(dir, "storage"))), 0o600)
	logs := &lab.LogBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*certStorageOpenTimeout)
	defer cancel()
	start := time.Now()
	err = Run(ctx, Options{ConfigPath: cfg, Stderr: logs, Ready: func(map[string][]string) { t.Error("serve started without its certificate storage") }})
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v after %v\n%s", err, time.Since(start), logs)
	}
	msg := err.Error()
	if !strings.Contains(msg, "store postgres://mailtls:xxxxx@"+addr) || strings.Contains(msg, "s3cret-pw") {
		t.Errorf("error %q: want the store and its address named, without the password", msg)
	}
	if strings.Contains(logs.String(), "s3cret-pw") {
		t.Errorf("the log shows the password:\n%s", logs)
	}
}
