package lab

import "testing"

// TestMetricValue: a series is found by its whole name and labels, never
// by a prefix of another's.
func TestMetricValue(t *testing.T) {
	page := `# HELP a_total A.
# TYPE a_total counter
a_total{lease="domain"} 7
a_total{lease="message"} 0
a_total_more 9
b 1.5e+06
c NaN-ish
`
	for _, tt := range []struct {
		series string
		want   float64
		ok     bool
	}{
		{`a_total{lease="domain"}`, 7, true},
		{`a_total{lease="message"}`, 0, true},
		{`a_total`, 0, false},
		{`a_total_more`, 9, true},
		{`b`, 1.5e6, true},
		{`c`, 0, false},
		{`d`, 0, false},
	} {
		if v, ok := MetricValue(page, tt.series); v != tt.want || ok != tt.ok {
			t.Errorf("MetricValue(%s) = %v, %v; want %v, %v", tt.series, v, ok, tt.want, tt.ok)
		}
	}
}
