package certstorage

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/certmagic"
)

// TestImportDir: the files certmagic's FileStorage wrote are copied under
// the same keys, its lock files are not, and a second run copies nothing
// and leaves what the database holds.
func TestImportDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fsStore := &certmagic.FileStorage{Path: dir}
	files := map[string]string{
		"certificates/acme.test-directory/mta-sts.a.test/mta-sts.a.test.crt":  "chain a",
		"certificates/acme.test-directory/mta-sts.a.test/mta-sts.a.test.key":  "key a",
		"certificates/acme.test-directory/mta-sts.a.test/mta-sts.a.test.json": `{"sans":["mta-sts.a.test"]}`,
		"acme/acme.test-directory/users/hostmaster@a.test/hostmaster.json":    "account",
		"acme/acme.test-directory/users/hostmaster@a.test/hostmaster.key":     "account key",
		"ocsp/mta-sts.a.test-abc": "staple",
	}
	for k, v := range files {
		if err := fsStore.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	// A lock certmagic left behind (a process that died holding it).
	if err := fsStore.Lock(ctx, "issue_cert_mta-sts.a.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "locks")); err != nil {
		t.Fatalf("FileStorage keeps no locks folder here: %v", err)
	}

	s := newPostgres(t, Options{})
	st, err := s.ImportDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st != (ImportStats{Copied: len(files)}) {
		t.Fatalf("first import: %+v, want %d copied", st, len(files))
	}
	for k, v := range files {
		got, err := s.Load(ctx, k)
		if err != nil || string(got) != v {
			t.Fatalf("%s: %q %v, want %q", k, got, err, v)
		}
	}
	keys, err := s.List(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "locks") {
			t.Errorf("a lock file was copied: %s", k)
		}
	}

	// Again: nothing copied. One certificate renewed meanwhile by an
	// instance on the database stays as the database has it.
	renewed := "chain a, renewed"
	crt := "certificates/acme.test-directory/mta-sts.a.test/mta-sts.a.test.crt"
	if err := s.Store(ctx, crt, []byte(renewed)); err != nil {
		t.Fatal(err)
	}
	st, err = s.ImportDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st != (ImportStats{Same: len(files) - 1, Kept: 1}) {
		t.Fatalf("second import: %+v", st)
	}
	if got, _ := s.Load(ctx, crt); string(got) != renewed {
		t.Fatalf("the import replaced the database's certificate: %q", got)
	}

	// A file certmagic would not write is refused with its name.
	big := filepath.Join(dir, "certificates", "huge.crt")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), MaxImportFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportDir(ctx, dir); err == nil || !strings.Contains(err.Error(), "huge.crt") {
		t.Fatalf("a file over the cap: %v", err)
	}
	os.Remove(big)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "certificates", "link.crt")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportDir(ctx, dir); err == nil || !strings.Contains(err.Error(), "link.crt") {
		t.Fatalf("a symbolic link: %v", err)
	}
	if _, err := s.ImportDir(ctx, filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing folder imported")
	}
}
