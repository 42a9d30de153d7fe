package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/mailtls/mailtls/internal/store"
)

func openTemp(t *testing.T, now store.Clock) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "dir", "mailtls.db")
	db, err := Open(t.Context(), path, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// The file is created with its directory, private, in WAL mode with
// foreign keys on.
func TestOpenCreatesPrivateWALFile(t *testing.T) {
	db, path := openTemp(t, nil)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("database mode %v, want 0600 (it holds password hashes)", st.Mode().Perm())
	}
	var mode string
	var fk int
	if err := db.SQL().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q, %v; want wal", mode, err)
	}
	if err := db.SQL().QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys %d, %v; want 1", fk, err)
	}
	// Reads go to query-only connections.
	if _, err := db.r.Exec("DELETE FROM users"); err == nil {
		t.Fatal("the read pool accepted a write")
	}
	// Reopening an existing database migrates nothing and keeps the data.
	if _, err := db.CreateUser(t.Context(), "keep@example.test", "x"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db2, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if _, err := db2.GetUserByEmail(t.Context(), "keep@example.test"); err != nil {
		t.Fatal(err)
	}
}

// A path with URI metacharacters is a file name, not DSN parameters.
func TestOpenPathWithURICharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a?b#c%d.db")
	db, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not created under its literal name: %v", err)
	}
}

func TestDefaultPath(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, tc := range []struct {
		name string
		env  func(string) string
		uid  int
		want string
	}{
		{"systemd StateDirectory", env("STATE_DIRECTORY", "/var/lib/mailtls:/var/lib/other", "HOME", "/root"), 0, "/var/lib/mailtls/mailtls.db"},
		{"root", env("HOME", "/root"), 0, "/var/lib/mailtls/mailtls.db"},
		{"XDG_DATA_HOME", env("HOME", "/home/u", "XDG_DATA_HOME", "/data"), 1000, "/data/mailtls/mailtls.db"},
		{"relative XDG_DATA_HOME is ignored", env("HOME", "/home/u", "XDG_DATA_HOME", "rel"), 1000, "/home/u/.local/share/mailtls/mailtls.db"},
		{"home", env("HOME", "/home/u"), 1000, "/home/u/.local/share/mailtls/mailtls.db"},
	} {
		if got := DefaultPath(tc.env, tc.uid); got != tc.want {
			t.Errorf("%s: DefaultPath = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// A backup taken while scans are being written is consistent: every scan
// in it is whole (its findings with it), and it opens as a store.
func TestBackupWhileWriting(t *testing.T) {
	db, _ := openTemp(t, nil)
	ctx := t.Context()
	u, err := db.CreateUser(ctx, "b@example.test", "x")
	if err != nil {
		t.Fatal(err)
	}
	d, err := db.AddDomain(ctx, store.NewDomain{UserID: u.ID, Name: "backup.example"})
	if err != nil {
		t.Fatal(err)
	}
	const findings = 20
	var written atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			sc, err := db.CreateScan(ctx, store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule})
			if err != nil {
				t.Error(err)
				return
			}
			var fs []store.Finding
			for i := range findings {
				fs = append(fs, store.Finding{ID: fmt.Sprint("f", i), Severity: "info", Subject: "s"})
			}
			if _, err := db.FinishScan(ctx, sc.ID, store.ScanResult{State: store.ScanDone, Grade: "A", Report: []byte(`{"x":1}`), Findings: fs}); err != nil {
				t.Error(err)
				return
			}
			written.Add(1)
		}
	})
	for written.Load() < 20 {
		time.Sleep(time.Millisecond)
	}
	out := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(ctx, out); err != nil {
		t.Fatal(err)
	}
	for n := written.Load(); written.Load() < n+20; {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err := db.Backup(ctx, out); err == nil {
		t.Fatal("Backup overwrote an existing file")
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Fatalf("backup mode %v, want 0600", st.Mode().Perm())
	}

	b, err := Open(ctx, out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var ok string
	if err := b.SQL().QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check %q, %v", ok, err)
	}
	var scans, partial int
	b.SQL().QueryRow("SELECT COUNT(*) FROM scans WHERE state = 'done'").Scan(&scans)
	b.SQL().QueryRow(`SELECT COUNT(*) FROM scans s WHERE state = 'done'
		AND (SELECT COUNT(*) FROM scan_findings f WHERE f.scan_id = s.id) <> $1`, findings).Scan(&partial)
	if scans < 20 || int64(scans) >= written.Load() || partial != 0 {
		t.Fatalf("backup has %d finished scans (%d written in all), %d without all their findings", scans, written.Load(), partial)
	}
}

// SCSStore plugs the store into scs: the session is found across requests,
// renewing the token on login drops the old one, the row is tied to the
// account, and "log out everywhere" ends it.
func TestSCSStore(t *testing.T) {
	db, _ := openTemp(t, nil)
	u, err := db.CreateUser(t.Context(), "scs@example.test", "x")
	if err != nil {
		t.Fatal(err)
	}
	sm := scs.New()
	sm.Store = store.SCSStore{Sessions: db, UserOf: func(b []byte) store.UserID {
		_, values, err := sm.Codec.Decode(b)
		if err != nil {
			return 0
		}
		id, _ := values["user"].(int64)
		return store.UserID(id)
	}}
	var _ scs.CtxStore = sm.Store.(store.SCSStore)
	mux := http.NewServeMux()
	mux.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) { sm.Put(r.Context(), "seen", true) })
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.RenewToken(r.Context()); err != nil {
			t.Error(err)
		}
		sm.Put(r.Context(), "user", int64(u.ID))
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, sm.GetInt64(r.Context(), "user"))
	})
	srv := httptest.NewServer(sm.LoadAndSave(mux))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	get := func(p string) string {
		t.Helper()
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	token := func() string {
		for _, ck := range jar.Cookies(mustURL(t, srv.URL)) {
			if ck.Name == sm.Cookie.Name {
				return ck.Value
			}
		}
		return ""
	}
	get("/visit")
	before := token()
	if _, found, _ := db.FindSession(t.Context(), before); !found || before == "" {
		t.Fatal("anonymous session not stored")
	}
	get("/login")
	after := token()
	if after == before {
		t.Fatal("login did not renew the token")
	}
	if _, found, _ := db.FindSession(t.Context(), before); found {
		t.Fatal("the pre-login token still works")
	}
	if got := get("/whoami"); got != strconv.FormatInt(int64(u.ID), 10) {
		t.Fatalf("whoami = %q", got)
	}
	var owner sql.NullInt64
	if err := db.SQL().QueryRow("SELECT user_id FROM sessions").Scan(&owner); err != nil || owner.Int64 != int64(u.ID) {
		t.Fatalf("session row user_id = %v, %v; want %d", owner, err, u.ID)
	}
	if n, err := db.DeleteUserSessions(t.Context(), u.ID, ""); err != nil || n != 1 {
		t.Fatalf("DeleteUserSessions = %d, %v", n, err)
	}
	if got := get("/whoami"); got != "0" {
		t.Fatalf("after log out everywhere whoami = %q", got)
	}
	if err := db.DeleteUser(t.Context(), u.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
