package config

import (
	"errors"
	"strings"
	"testing"
)

// TestStoreForms: store is a SQLite file's path or a PostgreSQL URL
// (docs/config.md, docs/scaling.md); another URL is a mistake.
func TestStoreForms(t *testing.T) {
	for _, tt := range []struct {
		store    string
		postgres bool
	}{
		{"postgres://mailtls@db.example/mailtls?sslmode=verify-full", true},
		{"postgresql://db.example/mailtls", true},
		{"/srv/mailtls/store.db", false},
		{"store.db", false},
	} {
		c, err := Parse("c.yaml", []byte("store: "+tt.store+"\n"))
		if err != nil {
			t.Errorf("%q: %v", tt.store, err)
			continue
		}
		if c.Store != tt.store || IsPostgresURL(c.Store) != tt.postgres {
			t.Errorf("%q: store %q, PostgreSQL %v", tt.store, c.Store, IsPostgresURL(c.Store))
		}
	}
	// Every role keeps its data in a PostgreSQL store.
	if _, err := Parse("c.yaml", []byte("store: postgres://db.example/m\nweb: {}\nreports: {}\n")); err != nil {
		t.Errorf("web and reports on PostgreSQL: %v", err)
	}
	_, err := Parse("c.yaml", []byte("store: mysql://u:s3cret@db.example/m\n"))
	var errs Errors
	if !errors.As(err, &errs) || errs[0].Line != 1 || !strings.Contains(err.Error(), "a SQLite file or a postgres:// URL") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("store: mysql://…: %v", err)
	}
}
