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
