package web

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/scanjob"
	"github.com/mailtls/mailtls/internal/store"
)

// downStore is a shared store whose database does not answer.
type downStore struct{ store.AnonScans }

var errDown = errors.New("connection refused")

func (downStore) GetAnonScan(context.Context, string) (*store.AnonScan, error) { return nil, errDown }
func (downStore) ListenAnonScans(context.Context, func(), func(store.AnonNotice)) error {
	return store.ErrNoListen
}
func (downStore) HeartbeatAnonScans(context.Context, string, []string, time.Time) error {
	return errDown
}

// TestSharedStoreDown: with instances sharing a store that does not
// answer, a scan's page and API answer 503 with Retry-After ("retry"),
// never 404 ("unknown or expired"): temporary is not absent.
func TestSharedStoreDown(t *testing.T) {
	jobs := scanjob.New(scanjob.Config{}, nil, scanjob.NewShared(downStore{}), nil, nil)
	defer jobs.Close(context.Background())
	srv := httptest.NewServer((&Server{Jobs: jobs}).Handler())
	defer srv.Close()
	for _, path := range []string{"/api/v1/scans/aaaaaaaaaaaaaaaaaaaaaaaaaa", "/scan/aaaaaaaaaaaaaaaaaaaaaaaaaa"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(body, []byte("not found")) || bytes.Contains(body, []byte("expired")) {
			t.Errorf("%s says the scan is gone: %s", path, body)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: %d (Retry-After %q), want 503 with Retry-After", path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}
