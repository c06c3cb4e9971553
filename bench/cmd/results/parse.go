package main

import (
	"bufio"
	"io"
	"slices"
	"strconv"
	"strings"
)

// results are the parsed output of `go test -bench`.
type results struct {
	cpu   string
	runs  map[string]map[string][]float64 // benchmark name (no -procs) -> unit -> values
	order []string                        // names in the order first seen
	skips []string                        // "name: reason" of skipped benchmarks
}

// parse reads `go test -bench` output. A result line is
//
//	BenchmarkAppend/bolt/batch=1-2   680   1531114 ns/op   653.1 events/s ...
//
// and a skipped benchmark prints "--- SKIP: name" followed by its reason.
func parse(r io.Reader) *results {
	res := &results{runs: map[string]map[string][]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	skipped := ""
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if skipped != "" {
			// The reason is the indented line after "--- SKIP".
			if reason := strings.TrimSpace(line); reason != "" && line != strings.TrimLeft(line, " \t") && !strings.HasPrefix(reason, "---") {
				res.skips = append(res.skips, skipped+": "+reason)
				skipped = ""
				continue
			}
			res.skips = append(res.skips, skipped)
			skipped = ""
		}
		if name, ok := strings.CutPrefix(trimmed, "--- SKIP: "); ok {
			skipped = name
			continue
		}
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok {
			res.cpu = strings.TrimSpace(cpu)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
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
	if skipped != "" {
		res.skips = append(res.skips, skipped)
	}
	return res
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
	vs := r.runs[name][unit]
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
