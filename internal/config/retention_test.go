package config

import (
	"testing"
	"time"
)

// TestWebRetention: the history's retention is read from web.retention;
// unset keys stay zero, which the store fills with its defaults.
func TestWebRetention(t *testing.T) {
	c, err := Parse("r.yaml", []byte("web:\n  retention:\n    full_reports: 168h\n    keep_full_reports: 3\n    scans: 8760h\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Web.Retention; r.FullReports.D() != 7*24*time.Hour || r.KeepFullReports != 3 || r.Scans.D() != 365*24*time.Hour {
		t.Errorf("retention %+v", r)
	}
	c, err = Parse("r.yaml", []byte("web: {}\n"))
	if err != nil || c.Web.Retention != (WebRetention{}) {
		t.Errorf("default retention %+v, %v", c.Web.Retention, err)
	}
}

// TestWebWorker: the worker's knobs are read from web.worker; unset keys
// stay zero, which the worker fills with its defaults.
func TestWebWorker(t *testing.T) {
	c, err := Parse("w.yaml", []byte("web:\n  worker:\n    scans: 16\n    poll: 2s\n    lease: 30s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Web.Worker; w.Scans != 16 || w.Poll.D() != 2*time.Second || w.Lease.D() != 30*time.Second {
		t.Errorf("worker %+v", w)
	}
	c, err = Parse("w.yaml", []byte("web: {}\n"))
	if err != nil || c.Web.Worker != (WebWorker{}) {
		t.Errorf("default worker %+v, %v", c.Web.Worker, err)
	}
}
