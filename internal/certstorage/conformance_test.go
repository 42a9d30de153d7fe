package certstorage

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/mailtls/mailtls/internal/lab"
)

// The storage conformance suite: what certmagic (v0.25.6) relies on from
// a Storage (its interface documentation, and how it lists accounts and
// cleans up certificates), run unchanged against certmagic's own
// FileStorage, which proves the suite encodes certmagic's semantics, and
// against Postgres.
//
// One difference is left out on purpose: FileStorage keeps a directory
// after its last key is deleted (an empty folder), a key-value store
// cannot. certmagic copes with both: it lists a site's folder after
// cleaning it and deletes it when empty, ignoring a listing error.

// storages are the implementations under test: open prepares one, and
// the function it returns gives an empty storage for each case.
var storages = []struct {
	name string
	open func(t *testing.T) func(t *testing.T) certmagic.Storage
}{
	{"FileStorage", func(*testing.T) func(t *testing.T) certmagic.Storage {
		return func(t *testing.T) certmagic.Storage { return &certmagic.FileStorage{Path: t.TempDir()} }
	}},
	{"Postgres", func(t *testing.T) func(t *testing.T) certmagic.Storage {
		// One database for all cases (creating one takes a while), emptied
		// before each.
		s := newPostgres(t, Options{})
		return func(t *testing.T) certmagic.Storage {
			if _, err := s.pool.Exec(context.Background(), "DELETE FROM certmagic_data"); err != nil {
				t.Fatal(err)
			}
			return s
		}
	}},
}

// newPostgres opens a Postgres storage on a new database.
func newPostgres(t *testing.T, o Options) *Postgres {
	t.Helper()
	return openPostgres(t, lab.NewPostgresDB(t), o)
}

// openPostgres opens a Postgres storage on url, closed when t ends.
func openPostgres(t *testing.T, url string, o Options) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// fixture is the storage every case starts from: the layout certmagic
// writes (certificates per issuer and site, accounts, an OCSP staple),
// plus a sibling whose name starts with another key's name, which is not
// under it (prefixes are whole path elements).
var fixture = map[string]string{
	"certificates/acme-a/one.test/one.test.crt":             "crt1",
	"certificates/acme-a/one.test/one.test.key":             "key1",
	"certificates/acme-a/one.test/one.test.json":            "{}",
	"certificates/acme-a/two.test/two.test.crt":             "crt2",
	"certificates/acme-b/one.test/one.test.crt":             "crt1b",
	"certificates-old/x":                                    "x",
	"acme/ca/users/hostmaster@example.test/hostmaster.json": "acct",
	"ocsp/one.test-abc":                                     "", // an empty value is a value
}

func TestConformance(t *testing.T) {
	type want struct {
		err   error    // errors.Is, or any error for errAny
		value string   // Load
		keys  []string // List, sorted
		info  *certmagic.KeyInfo
		ok    bool // Exists
	}
	errAny := errors.New("any error")
	ki := func(key string, terminal bool, size int64) *certmagic.KeyInfo {
		return &certmagic.KeyInfo{Key: key, IsTerminal: terminal, Size: size}
	}
	cases := []struct {
		name string
		op   func(context.Context, certmagic.Storage) (any, error)
		want want
	}{
		// Load: the value at a key; fs.ErrNotExist for none (Storage doc).
		{"load a key", load("certificates/acme-a/one.test/one.test.crt"), want{value: "crt1"}},
		{"load an empty value", load("ocsp/one.test-abc"), want{value: ""}},
		{"load a missing key", load("certificates/acme-a/nine.test/nine.test.crt"), want{err: fs.ErrNotExist}},
		{"load a directory", load("certificates/acme-a"), want{err: errAny}},
		{"load a partial element", load("certificates/acme"), want{err: fs.ErrNotExist}},

		// Exists: a key or a directory (a prefix of keys).
		{"exists: key", exists("certificates/acme-a/one.test/one.test.key"), want{ok: true}},
		{"exists: directory", exists("certificates/acme-a"), want{ok: true}},
		{"exists: top directory", exists("certificates"), want{ok: true}},
		{"exists: missing", exists("certificates/acme-c"), want{ok: false}},
		{"exists: partial element", exists("certificates/acme"), want{ok: false}},

		// Stat: IsTerminal tells a key from a directory; Key is the key.
		{"stat: key", stat("certificates/acme-a/two.test/two.test.crt"), want{info: ki("certificates/acme-a/two.test/two.test.crt", true, 4)}},
		{"stat: directory", stat("acme/ca/users/hostmaster@example.test"), want{info: ki("acme/ca/users/hostmaster@example.test", false, -1)}},
		{"stat: missing", stat("acme/ca/users/nobody"), want{err: fs.ErrNotExist}},
		{"stat: partial element", stat("certificates/acme"), want{err: fs.ErrNotExist}},

		// List, not recursive: the immediate children, keys and
		// directories, each with the prefix (how certmagic walks
		// certificates/<issuer>/<site> and lists accounts).
		{"list top", list("certificates", false), want{keys: []string{"certificates/acme-a", "certificates/acme-b"}}},
		{"list issuer", list("certificates/acme-a", false), want{keys: []string{"certificates/acme-a/one.test", "certificates/acme-a/two.test"}}},
		{"list site", list("certificates/acme-a/one.test", false), want{keys: []string{
			"certificates/acme-a/one.test/one.test.crt", "certificates/acme-a/one.test/one.test.json", "certificates/acme-a/one.test/one.test.key"}}},
		{"list accounts", list("acme/ca/users", false), want{keys: []string{"acme/ca/users/hostmaster@example.test"}}},
		// List, recursive: every key and directory below.
		{"list recursive", list("certificates/acme-a", true), want{keys: []string{
			"certificates/acme-a/one.test",
			"certificates/acme-a/one.test/one.test.crt", "certificates/acme-a/one.test/one.test.json", "certificates/acme-a/one.test/one.test.key",
			"certificates/acme-a/two.test", "certificates/acme-a/two.test/two.test.crt"}}},
		{"list recursive top", list("acme", true), want{keys: []string{
			"acme/ca", "acme/ca/users", "acme/ca/users/hostmaster@example.test", "acme/ca/users/hostmaster@example.test/hostmaster.json"}}},
		{"list the root", list("", false), want{keys: []string{"acme", "certificates", "certificates-old", "ocsp"}}},
		{"list missing", list("certificates/acme-c", false), want{err: fs.ErrNotExist}},
		{"list missing recursive", list("nothing", true), want{err: fs.ErrNotExist}},
		{"list a key", list("certificates-old/x", false), want{keys: nil}},

		// Store replaces; Load returns the last value stored.
		{"store replaces", seq(store("certificates/acme-a/one.test/one.test.crt", "new"), load("certificates/acme-a/one.test/one.test.crt")), want{value: "new"}},
		{"store creates directories", seq(store("a/b/c/d", "v"), list("a", true)), want{keys: []string{"a/b", "a/b/c", "a/b/c/d"}}},

		// Delete: a key, or a directory with everything under it; a
		// missing key is not an error.
		{"delete a key", seq(del("certificates/acme-a/one.test/one.test.key"), list("certificates/acme-a/one.test", false)), want{keys: []string{
			"certificates/acme-a/one.test/one.test.crt", "certificates/acme-a/one.test/one.test.json"}}},
		{"delete a directory", seq(del("certificates/acme-a"), list("certificates", true)), want{keys: []string{
			"certificates/acme-b", "certificates/acme-b/one.test", "certificates/acme-b/one.test/one.test.crt"}}},
		{"delete a directory: its keys are gone", seq(del("certificates/acme-a"), load("certificates/acme-a/two.test/two.test.crt")), want{err: fs.ErrNotExist}},
		{"delete a missing key", del("certificates/acme-c/none"), want{}},
		{"delete twice", seq(del("certificates-old/x"), del("certificates-old/x")), want{}},
		{"delete keeps siblings with a longer name", seq(del("certificates"), load("certificates-old/x")), want{value: "x"}},
		{"delete a partial element deletes nothing", seq(del("certificates/acme"), exists("certificates/acme-a/two.test/two.test.crt")), want{ok: true}},
	}
	for _, impl := range storages {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			fresh := impl.open(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					s := fresh(t)
					for k, v := range fixture {
						if err := s.Store(ctx, k, []byte(v)); err != nil {
							t.Fatal(err)
						}
					}
					got, err := c.op(ctx, s)
					switch {
					case c.want.err == errAny:
						if err == nil {
							t.Fatalf("no error, got %v", got)
						}
						return
					case c.want.err != nil:
						if !errors.Is(err, c.want.err) {
							t.Fatalf("error %v, want %v (got %v)", err, c.want.err, got)
						}
						return
					case err != nil:
						t.Fatal(err)
					}
					switch g := got.(type) {
					case []byte:
						if string(g) != c.want.value {
							t.Errorf("value %q, want %q", g, c.want.value)
						}
					case []string:
						slices.Sort(g)
						if !slices.Equal(g, c.want.keys) {
							t.Errorf("keys\n%q\nwant\n%q", g, c.want.keys)
						}
					case bool:
						if g != c.want.ok {
							t.Errorf("exists %v, want %v", g, c.want.ok)
						}
					case certmagic.KeyInfo:
						w := c.want.info
						if g.Key != w.Key || g.IsTerminal != w.IsTerminal || (w.Size >= 0 && g.Size != w.Size) {
							t.Errorf("stat %+v, want %+v", g, *w)
						}
						// Modified orders accounts (certmagic picks the
						// newest): it must be set, and recent.
						if age := time.Since(g.Modified); age < -time.Minute || age > time.Hour {
							t.Errorf("modified %v", g.Modified)
						}
					case nil:
					default:
						t.Fatalf("unexpected result %T", got)
					}
				})
			}
		})
	}
}

type op = func(context.Context, certmagic.Storage) (any, error)

func load(k string) op {
	return func(ctx context.Context, s certmagic.Storage) (any, error) { return s.Load(ctx, k) }
}

func store(k, v string) op {
	return func(ctx context.Context, s certmagic.Storage) (any, error) { return nil, s.Store(ctx, k, []byte(v)) }
}

func del(k string) op {
	return func(ctx context.Context, s certmagic.Storage) (any, error) { return nil, s.Delete(ctx, k) }
}

func exists(k string) op {
	return func(ctx context.Context, s certmagic.Storage) (any, error) { return s.Exists(ctx, k), nil }
}

func stat(k string) op {
	return func(ctx context.Context, s certmagic.Storage) (any, error) { return s.Stat(ctx, k) }
}

func list(k string, recursive bool) op {
	return func(ctx context.Context, s certmagic.Storage) (any, error) {
		keys, err := s.List(ctx, k, recursive)
		if keys == nil {
			keys = []string{}
		}
		return keys, err
	}
}

// seq runs ops in turn and returns the last one's result; an error stops
// it.
func seq(ops ...op) op {
	return func(ctx context.Context, s certmagic.Storage) (any, error) {
		var (
			got any
			err error
		)
		for _, o := range ops {
			if got, err = o(ctx, s); err != nil {
				return got, err
			}
		}
		return got, nil
	}
}
