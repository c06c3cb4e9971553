package main

import (
	"bufio"
	"io"
	"slices"
	"strconv"
	"strings"
)

// results are the parsed output of `go test -v -bench`.
type results struct {
	cpu      string
	runs     map[string]map[string][]float64 // benchmark name (no -procs) -> unit -> values
	order    []string                        // names in the order first seen
	skips    []string                        // "name: reason" of skipped benchmarks
	fixtures []string                        // the benchmarks' logs about their fixtures
}

// parse reads `go test -v -bench` output. A result line is
//
//	BenchmarkAppend/bolt/batch=1-2   680   1531114 ns/op   653.1 events/s ...
//
// A benchmark's log lines are indented and come before its result, or
// before the "--- SKIP: name" line of a skipped benchmark.
func parse(r io.Reader) *results {
	res := &results{runs: map[string]map[string][]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lastLog := ""
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed != "" && line != strings.TrimLeft(line, " \t") {
			// A log line: "file.go:12: message".
			msg := trimmed
			if _, rest, ok := strings.Cut(msg, ": "); ok && strings.Contains(msg[:len(msg)-len(rest)], ".go:") {
				msg = rest
			}
			lastLog = msg
			if strings.Contains(msg, " fixture: ") {
				res.fixtures = append(res.fixtures, msg)
			}
			continue
		}
		if name, ok := strings.CutPrefix(trimmed, "--- SKIP: "); ok {
			name, _, _ = strings.Cut(name, " (")
			if lastLog != "" {
				name += ": " + lastLog
			}
			if !slices.Contains(res.skips, name) {
				res.skips = append(res.skips, name)
			}
			lastLog = ""
			continue
		}
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok {
			res.cpu = strings.TrimSpace(cpu)
			continue
		}
		if strings.HasPrefix(line, "Benchmark") {
			lastLog = ""
		}
		if !isResult(line) {
			continue
		}
		f := strings.Fields(line)
		name := trimProcs(f[0])
		m := res.runs[name]
		if m == nil {
			m = map[string][]float64{}
			res.runs[name] = m
			res.order = append(res.order, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			m[f[i+1]] = append(m[f[i+1]], v)
		}
	}
	return res
}

// isResult reports whether line is a benchmark's result line.
func isResult(line string) bool {
	if !strings.HasPrefix(line, "Benchmark") {
		return false
	}
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 {
		return false
	}
	_, err := strconv.Atoi(f[1])
	return err == nil
}

// trimProcs drops the -GOMAXPROCS suffix of a benchmark name.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// get returns the median of the values of unit for the benchmark name.
func (r *results) get(name, unit string) (float64, bool) {
	return median(r.runs[name][unit])
}

// ratios returns the ratios of the values of unit for the benchmarks a and
// b run by run (the i-th value of a over the i-th of b: the same go test
// measured them close together), and their median.
func (r *results) ratios(a, b, unit string) (med float64, all []float64, ok bool) {
	va, vb := r.runs[a][unit], r.runs[b][unit]
	for i := range min(len(va), len(vb)) {
		if vb[i] > 0 {
			all = append(all, va[i]/vb[i])
		}
	}
	med, ok = median(all)
	return med, all, ok
}

// median returns the median of vs.
func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2, true
	}
	return s[len(s)/2], true
}
