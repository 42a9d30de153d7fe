package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// mailtls backup copies the store while another process (standing in for
// the server) keeps writing to it: the copy opens, passes SQLite's
// integrity check and holds only whole transactions.
func TestBackupEndToEnd(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "data", "mailtls.db")
	ctx := t.Context()
	db, err := sqlstore.Open(ctx, dbPath, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.CreateUser(ctx, "admin@example.test", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
	if err != nil {
		t.Fatal(err)
	}
	d, err := db.AddDomain(ctx, store.NewDomain{UserID: u.ID, Name: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	const perScan = 12
	var written atomic.Int64
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for wctx.Err() == nil {
			sc, err := db.CreateScan(wctx, store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule})
			if err != nil {
				return
			}
			var fs []store.Finding
			for i := range perScan {
				fs = append(fs, store.Finding{ID: fmt.Sprint("f", i), Severity: "warning", Subject: "s"})
			}
			if _, err := db.FinishScan(wctx, sc.ID, store.ScanResult{State: store.ScanDone, Grade: "B",
				Report: []byte(`{"schema_version":1}`), Findings: fs}); err != nil {
				return
			}
			written.Add(1)
		}
	})
	defer func() { stop(); wg.Wait() }()
	for written.Load() < 10 {
		time.Sleep(time.Millisecond)
	}

	out := filepath.Join(dir, "copy.db")
	cmd := exec.Command(binary, "backup", "--store", dbPath, out)
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mailtls backup: %v\n%s", err, got)
	}
	if !strings.HasPrefix(string(got), "backed up "+dbPath+" to "+out) {
		t.Fatalf("output %q", got)
	}
	before := written.Load()
	for written.Load() < before+10 {
		time.Sleep(time.Millisecond)
	}
	stop()
	wg.Wait()

	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("copy: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	cp, err := sqlstore.Open(ctx, out, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	var ok string
	if err := cp.SQL().QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %q, %v", ok, err)
	}
	rows, err := cp.Dashboard(ctx, u.ID)
	if err != nil || len(rows) != 1 || rows[0].Last == nil {
		t.Fatalf("dashboard of the copy: %+v, %v", rows, err)
	}
	var scans, partial int
	cp.SQL().QueryRow("SELECT COUNT(*) FROM scans WHERE state = 'done'").Scan(&scans)
	cp.SQL().QueryRow(`SELECT COUNT(*) FROM scans s WHERE state = 'done'
		AND (SELECT COUNT(*) FROM scan_findings f WHERE f.scan_id = s.id) <> $1`, perScan).Scan(&partial)
	if scans < 10 || int64(scans) >= written.Load() || partial != 0 {
		t.Fatalf("copy holds %d finished scans (%d written in all), %d of them without all findings", scans, written.Load(), partial)
	}

	// The copy is never overwritten, a missing store is an error, and a
	// missing argument is a usage error.
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"backup", "--store", dbPath, out}, 1, "exists"},
		{[]string{"backup", "--store", filepath.Join(dir, "none.db"), filepath.Join(dir, "x.db")}, 1, "no such file"},
		{[]string{"backup"}, 2, "Usage: mailtls backup"},
	} {
		cmd := exec.Command(binary, tc.args...)
		got, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tc.code || !strings.Contains(string(got), tc.msg) {
			t.Errorf("mailtls %v: exit %d, output %q; want %d and %q", tc.args, code, got, tc.code, tc.msg)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.db")); err == nil {
		t.Error("a failed backup left a file behind")
	}
}
