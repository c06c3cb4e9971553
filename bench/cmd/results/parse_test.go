package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/eventstore-go/eventstore/bench
cpu: AMD EPYC
BenchmarkAppend/memory/batch=1-2 	  138918	      8544 ns/op	        10.14 allocs/event	    117043 events/s	      8544 ns/event	    2163 B/op	      10 allocs/op
BenchmarkAppend/bolt/batch=1-2            	     680	   1531114 ns/op	       183.5 allocs/event	      1199 disk-B/event	       653.1 events/s	   1531114 ns/event	   67913 B/op	     183 allocs/op
BenchmarkAppend/bolt/parallel=64-2        	   10000	    133985 ns/op	        54.19 allocs/event	      1038 disk-B/event	      7464 events/s	    133985 ns/event	   13843 B/op	      54 allocs/op
BenchmarkAppend/rawbolt/batch=1-2         	    2221	    755214 ns/op	       174.2 allocs/event	       837.3 disk-B/event	      1324 events/s	    755214 ns/event	   74362 B/op	     174 allocs/op
BenchmarkAppend/rawbolt/batch=1-2         	    2221	    755214 ns/op	       174.2 allocs/event	       837.3 disk-B/event	      1000 events/s	    755214 ns/event	   74362 B/op	     174 allocs/op
BenchmarkAppend/rawbolt/batch=1-2         	    2221	    755214 ns/op	       174.2 allocs/event	       837.3 disk-B/event	      1400 events/s	    755214 ns/event	   74362 B/op	     174 allocs/op
BenchmarkAppend/postgres/batch=1
    append_test.go:47: no PostgreSQL at postgres://x: dial error
--- SKIP: BenchmarkAppend/postgres/batch=1
BenchmarkReplay/bolt/all
    replay_test.go:131: bolt fixture: 1000000 events loaded in 18.3s
BenchmarkReplay/bolt/all-2                     	       1	3093304634 ns/op	         6.043 allocs/event	      1151 disk-B/event	    323279 events/s	      3093 ns/event	594066240 B/op	 6043243 allocs/op
PASS
`

func TestParse(t *testing.T) {
	res := parse(strings.NewReader(sample))
	if res.cpu != "AMD EPYC" {
		t.Errorf("cpu %q", res.cpu)
	}
	if v, ok := res.get("BenchmarkAppend/rawbolt/batch=1", "events/s"); !ok || v != 1324 {
		t.Errorf("median events/s = %v, %v; want 1324", v, ok)
	}
	if v, ok := res.get("BenchmarkReplay/bolt/all", "allocs/event"); !ok || v != 6.043 {
		t.Errorf("allocs/event = %v, %v", v, ok)
	}
	if len(res.skips) != 1 || res.skips[0] != "BenchmarkAppend/postgres/batch=1: no PostgreSQL at postgres://x: dial error" {
		t.Errorf("skips = %q", res.skips)
	}
	if len(res.fixtures) != 1 || res.fixtures[0] != "bolt fixture: 1000000 events loaded in 18.3s" {
		t.Errorf("fixtures = %q", res.fixtures)
	}
	tables := renderTables(res)
	for _, want := range []string{
		"| Append, 1 event per call (durable) <br>`Append/batch=1` | 117.0k (88.40x) | 653 (0.49x) | 1.32k (1.00x) |",
		"| 0.49x; medians 653 vs 1.32k events/s | missed |",
		"| 11.43x; medians 7.46k vs 653 events/s | met |",
	} {
		if !strings.Contains(tables, want) {
			t.Errorf("tables lack %q:\n%s", want, tables)
		}
	}
}

// Ratios pair the runs of two benchmarks in order: a disk that is fast in
// one run and slow in the next moves both figures of a run together.
func TestRatios(t *testing.T) {
	res := &results{runs: map[string]map[string][]float64{
		"A": {"events/s": {1000, 2000, 1500}},
		"B": {"events/s": {1000, 2100, 1400, 9999}}, // an extra run of B has no pair
	}}
	med, all, ok := res.ratios("A", "B", "events/s")
	if !ok || len(all) != 3 || med != 1 {
		t.Errorf("ratios = %v, %v, %v; want the median of 1, 0.95, 1.07: 1", med, all, ok)
	}
	if _, _, ok := res.ratios("A", "C", "events/s"); ok {
		t.Error("a ratio to a benchmark that did not run")
	}
}
