package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// TestStoreOpenedAndClosed: with the web role on, serve creates the
// database named by store (directory 0700, file 0600), migrates it,
// reports it in /healthz, and closes it at stop (SQLite then folds the
// write-ahead log back into the file and removes it).
func TestStoreOpenedAndClosed(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, "data", "sub", "accounts.db")
	e.writeWebConfig("store: " + path + "\n")
	e.start(Options{})
	h := get(t, "http://"+e.addrs["admin"][0]+"/healthz")
	if !strings.HasPrefix(h, "ok\n") || !strings.Contains(h, "store: "+path+", schema version ") {
		t.Errorf("/healthz:\n%s", h)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("database file: %v %v", st, err)
	}
	if dst, err := os.Stat(filepath.Dir(path)); err != nil || dst.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v %v", dst, err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no write-ahead log while serving: %v", err)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !os.IsNotExist(err) {
		t.Errorf("the write-ahead log is still there after stop: the store was not closed (%v)", err)
	}
	db, err := sqlstore.Open(context.Background(), path, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.SchemaVersion(context.Background()); err != nil || v < 1 {
		t.Errorf("schema version %d, %v: not migrated", v, err)
	}
}

// TestStoreNotOpenedWithoutWeb: a policy host alone keeps no accounts, so
// no database is created.
func TestStoreNotOpenedWithoutWeb(t *testing.T) {
	e := newEnv(t)
	e.writeConfig("", e.domainYAML("a.test", "testing", "mx.a.test"))
	e.start(Options{})
	if h := get(t, "http://"+e.addrs["admin"][0]+"/healthz"); strings.Contains(h, "store:") {
		t.Errorf("/healthz names a store:\n%s", h)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "mailtls.db")); !os.IsNotExist(err) {
		t.Errorf("a database was created: %v", err)
	}
}

// TestStoreUnusable: a store path that cannot be created stops serve
// at start with the reason.
func TestStoreUnusable(t *testing.T) {
	e := newEnv(t)
	blocker := filepath.Join(e.dir, "file")
	os.WriteFile(blocker, []byte("x"), 0o600)
	e.writeWebConfig("store: " + filepath.Join(blocker, "mailtls.db") + "\n")
	err := Run(context.Background(), Options{ConfigPath: e.cfgPath, Stderr: e.logs})
	if err == nil || !strings.Contains(err.Error(), "store:") {
		t.Errorf("err %v", err)
	}
}
