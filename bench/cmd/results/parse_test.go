package main

import (
	"bytes"
	"os"
	"path/filepath"
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
	requireContains(t, tables,
		"| Append, 1 event per call (durable) <br>`Append/batch=1` | 117.0k (88.40x) | 653 (0.49x) | 1.32k (1.00x) |",
		"| 0.49x; medians 653 vs 1.32k events/s | `go test -run '^$' -bench 'Append/^(bolt\\|rawbolt)$/batch=1$' -count 5 .` | missed |",
		"| 11.43x; medians 7.46k vs 653 events/s | `go test",
	)
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

const sampleStores = `cpu: AMD EPYC
BenchmarkAppend/bolt/batch=1-2      1000  600000 ns/op  1667 events/s  700 disk-B/event  500000 p50-ns  900000 p90-ns  2000000 p99-ns  5000000 p99.9-ns
BenchmarkAppend/sqlite/batch=1-2    1000  400000 ns/op  2500 events/s  350 disk-B/event  350000 p50-ns  600000 p90-ns  1500000 p99-ns  7000000 p99.9-ns
BenchmarkAppend/postgres/batch=1-2  1000 1000000 ns/op  1000 events/s  600 disk-B/event  900000 p50-ns 1100000 p90-ns  3000000 p99-ns  4000000 p99.9-ns
BenchmarkAppend/rawbolt/batch=1-2   1000  550000 ns/op  1818 events/s  690 disk-B/event  480000 p50-ns  850000 p90-ns  1900000 p99-ns  4500000 p99.9-ns
BenchmarkReplay/bolt/aggregate=100-2    10000  40000 ns/op  2500000 events/s  600 disk-B/event  38000 p50-ns  45000 p90-ns  90000 p99-ns  150000 p99.9-ns
BenchmarkReplay/sqlite/aggregate=100-2  10000 100000 ns/op  1000000 events/s  340 disk-B/event  95000 p50-ns 120000 p90-ns 200000 p99-ns  300000 p99.9-ns
BenchmarkReplay/bolt/all-2     1  400000000 ns/op  2500000 events/s  600 disk-B/event
BenchmarkReplay/sqlite/all-2   1  800000000 ns/op  1250000 events/s  340 disk-B/event
BenchmarkReplay/bolt/aggregate=100k-legacy-2  10  30000000 ns/op  3300000 events/s  590 disk-B/event
`

const sampleImport = `cpu: AMD EPYC
BenchmarkImport/bolt/batch=1000-2       100  12000000 ns/op  83333 events/s
BenchmarkImport/rawbolt/batch=1000-2    100  10000000 ns/op  100000 events/s
BenchmarkImport/postgres/batch=1000-2     4  40000000 ns/op  25000 events/s
BenchmarkReplicate/bolt-to-bolt/events=1000000/batch=1000-2      1  40000000000 ns/op  25000 events/s  40.00 s/copy
BenchmarkReplicate/bolt-to-bolt/events=1000000/batch=10000-2     1  34000000000 ns/op  29400 events/s  34.00 s/copy
BenchmarkReplicate/bolt-to-postgres/events=1000000/batch=1000-2  1  70000000000 ns/op  14300 events/s  70.00 s/copy
BenchmarkReplicate/bolt-to-postgres/events=1000000/batch=10000-2 1  50000000000 ns/op  20000 events/s  50.00 s/copy
BenchmarkReplicate/rawbolt-to-rawbolt/events=1000000/batch=10000-2 1  25000000000 ns/op  40000 events/s  25.00 s/copy
BenchmarkReplay/bolt/all-2     1  400000000 ns/op  2500000 events/s  1100 disk-B/event
BenchmarkReplay/sqlite/all-2   1  800000000 ns/op  1250000 events/s  1000 disk-B/event
`

// The import and replication aims take the default batch size's row, and
// the size aim compares bolt's bytes with SQLite's.
func TestImportAims(t *testing.T) {
	requireContains(t, renderTables(parse(strings.NewReader(sampleImport))),
		"| bolt Import in calls of 1,000: at least 0.8x raw bbolt writing the same records in transactions of the same size | 0.83x; medians 83.3k vs 100.0k events/s | `go test -run '^$' -bench 'Import/' .` | met |",
		"| postgres Import in calls of 1,000: at least 30k events/s | 25.0k events/s | `go test -run '^$' -bench 'Import/' .` | missed |",
		"| 1,000,000 events bolt to postgres: under 60 s | 50.0 s (`Replicate/events=1000000/batch=10000`) | `go test -run '^$' -bench 'Replicate/' -benchtime 1x .` | met |",
		"| 1,000,000 events bolt to bolt: at least 100k events/s | 29.4k events/s (`Replicate/events=1000000/batch=10000`); bbolt's ceiling here, raw bbolt writing the same records in the same transactions: 40.0k events/s (0.73x) | `go test -run '^$' -bench 'Replicate/' -benchtime 1x .` | missed |",
		"| bolt file size on the realistic fixture: at most 1.2x SQLite's | 1.10x; 1100 vs 1000 bytes an event | `go test -run '^$' -bench 'Replay/^(bolt\\|sqlite)$/all$' .` | met |",
	)
}

// requireContains fails t for each of wants that tables lacks.
func requireContains(t *testing.T, tables string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(tables, want) {
			t.Errorf("tables lack %q:\n%s", want, tables)
		}
	}
}

// The sqlite column, the latency table, the "where each store wins"
// summary and the charts.
func TestStoresLatencyCharts(t *testing.T) {
	res := parse(strings.NewReader(sampleStores))
	tables := renderTables(res)
	requireContains(t, tables,
		"| workload | bolt | postgres | sqlite | rawbolt |",
		"| bolt | 500.0 µs | 900.0 µs | 2.00 ms | 5.00 ms | 38.0 µs | 45.0 µs | 90.0 µs | 150.0 µs |",
		"| sqlite | 350.0 µs | 600.0 µs | 1.50 ms | 7.00 ms | 95.0 µs | 120.0 µs | 200.0 µs | 300.0 µs |",
		"| Append, 1 event per call (durable) <br>`Append/batch=1` | **sqlite** 2.50k/s | 1.50x | bolt 1.67k/s, postgres 1.00k/s |",
		"| ReadAll, every event <br>`Replay/all` | **bolt** 2.50M/s | 2.00x | sqlite 1.25M/s |",
		"| p99 latency, single durable Append <br>`Append/batch=1` | **sqlite** 1.50 ms | 1.33x | bolt 2.00 ms, postgres 3.00 ms |",
		"| bytes on disk per event, the replay fixture | **sqlite** 340 B | 1.76x | bolt 600 B |",
		// The legacy row is shown, and not counted in the aims.
		"the old fixture (calls of 100 sharing metadata) <br>`Replay/aggregate=100k-legacy` |",
		"| — | `go test -run '^$' -bench 'Replay/^bolt$/aggregate=100k$' -benchmem .` | not measured |",
		"| bolt file size on the realistic fixture: at most 1.2x SQLite's | 1.76x; 600 vs 340 bytes an event |",
	)

	dir := t.TempDir()
	written, err := writeCharts(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 || written[0] != chartThroughput || written[1] != chartLatency {
		t.Fatalf("charts %q", written)
	}
	for _, c := range written {
		b, err := os.ReadFile(filepath.Join(dir, c))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 5000 {
			t.Errorf("%s: %d bytes, not a PNG chart", c, len(b))
		}
	}
	report := render(env{}, res, []byte(sampleStores), written)
	for _, want := range []string{"![throughput](throughput.png)", "![latency](latency.png)"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}
