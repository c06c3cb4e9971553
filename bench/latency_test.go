package bench

import (
	"slices"
	"testing"
	"time"
)

// latencies records the time of each operation of a benchmark and reports
// its percentiles as the metrics p50-ns, p90-ns, p99-ns and p99.9-ns. A nil
// *latencies records nothing. A percentile is only as good as the number of
// operations behind it: p99.9 of a run of 1,000 operations is its
// second-slowest.
type latencies struct{ d []time.Duration }

func newLatencies(n int) *latencies { return &latencies{d: make([]time.Duration, 0, n)} }

// start returns the time an operation starts.
func (l *latencies) start() time.Time {
	if l == nil {
		return time.Time{}
	}
	return time.Now()
}

// stop records an operation that started at t0.
func (l *latencies) stop(t0 time.Time) {
	if l != nil {
		l.d = append(l.d, time.Since(t0))
	}
}

// percentiles are the ones reported, with their units.
var percentiles = []struct {
	p    float64
	unit string
}{{50, "p50-ns"}, {90, "p90-ns"}, {99, "p99-ns"}, {99.9, "p99.9-ns"}}

// report reports the percentiles of the recorded operations.
func (l *latencies) report(b *testing.B) {
	if l == nil || len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	for _, p := range percentiles {
		b.ReportMetric(float64(percentile(l.d, p.p)), p.unit)
	}
}

// percentile returns the p-th percentile of sorted, by the nearest-rank
// method: the smallest value that at least p% of the values do not exceed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(p/100*float64(len(sorted)) + 0.999999)
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func TestPercentile(t *testing.T) {
	d := make([]time.Duration, 1000)
	for i := range d {
		d[i] = time.Duration(i + 1)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 500}, {90, 900}, {99, 990}, {99.9, 999}, {100, 1000}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(d[:1], 99.9); got != 1 {
		t.Errorf("p99.9 of one value = %v", got)
	}
	// Nearest rank rounds up: p91 of ten values is the tenth.
	if got := percentile(d[:10], 91); got != 10 {
		t.Errorf("p91 of 1..10 = %v, want 10", got)
	}
}
