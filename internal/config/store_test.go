package config

import (
	"errors"
	"strings"
	"testing"
)

// TestStoreForms: store: is a mapping (path: or url:) or one string, a
// postgres:// URL or a SQLite file's path (docs/config.md).
func TestStoreForms(t *testing.T) {
	for _, tt := range []struct{ yaml, path, url string }{
		{"store: postgres://mailtls@db.example/mailtls?sslmode=verify-full\n", "", "postgres://mailtls@db.example/mailtls?sslmode=verify-full"},
		{"store: postgresql://db.example/mailtls\n", "", "postgresql://db.example/mailtls"},
		{"store: /srv/mailtls/store.db\n", "/srv/mailtls/store.db", ""},
		{"store: {url: \"postgres://db.example/mailtls\"}\n", "", "postgres://db.example/mailtls"},
		{"store:\n  path: /srv/mailtls/store.db\n", "/srv/mailtls/store.db", ""},
		{"store:\n", "", ""},
		// A URL given as the path is the PostgreSQL store too.
		{"store:\n  path: postgres://db.example/m\n", "postgres://db.example/m", ""},
	} {
		c, err := Parse("c.yaml", []byte(tt.yaml))
		if err != nil {
			t.Errorf("%q: %v", tt.yaml, err)
			continue
		}
		if c.Store.Path != tt.path || c.Store.URL != tt.url {
			t.Errorf("%q: store = %+v, want path %q, url %q", tt.yaml, c.Store, tt.path, tt.url)
		}
		if want := tt.url + strings.TrimPrefix(tt.path, "/srv/mailtls/store.db"); c.Store.Postgres() != want {
			t.Errorf("%q: Postgres() = %q, want %q", tt.yaml, c.Store.Postgres(), want)
		}
	}
	for _, tt := range []struct {
		yaml string
		kind ErrorKind
		line int
		want string
	}{
		{"store:\n  path: /x.db\n  url: postgres://db.example/m\n", ErrInvalid, 1, "not both"},
		{"store:\n  url: mysql://db.example/m\n", ErrInvalid, 2, "store.url: want a postgres://"},
		{"store: [postgres://db.example/m]\n", ErrType, 1, "store: want a mapping of settings, not a list"},
		{"store:\n  uri: postgres://db.example/m\n", ErrUnknownKey, 2, `unknown key "uri"`},
	} {
		_, err := Parse("c.yaml", []byte(tt.yaml))
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Errorf("%q: error %v, want Errors", tt.yaml, err)
			continue
		}
		if e := errs[0]; e.Kind != tt.kind || e.Line != tt.line || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %q (kind %d, line %d), want kind %d, line %d, containing %q", tt.yaml, err, e.Kind, e.Line, tt.kind, tt.line, tt.want)
		}
	}
}
