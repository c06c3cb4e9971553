package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// baseline is the backend every figure is compared with.
const baseline = "rawbolt"

// backendOrder is the order of the table's columns; backends not listed
// follow in the order seen.
var backendOrder = []string{"memory", "bolt", "bolt-nosync", "postgres", "rawbolt", "rawbolt-nosync", "rawbolt-grouped"}

// baselineOf returns the backend that b is compared with in workload w:
// rawbolt-nosync for bolt-nosync where it ran, rawbolt otherwise.
func (t *table) baselineOf(res *results, w, b string) string {
	if b == "bolt-nosync" || b == "rawbolt-nosync" {
		if _, ok := t.value(res, w, "rawbolt-nosync", "events/s"); ok {
			return "rawbolt-nosync"
		}
	}
	return baseline
}

// labels describe the workloads in the table's first column.
var labels = map[string]string{
	"Append/batch=1":        "Append, 1 event per call (durable)",
	"Append/batch=10":       "Append, 10 events per call",
	"Append/batch=100":      "Append, 100 events per call",
	"Append/parallel=8":     "Append, 8 goroutines, 1 event per call",
	"Append/parallel=64":    "Append, 64 goroutines, 1 event per call",
	"Replay/aggregate=100":  "ReadAggregate, 100 events",
	"Replay/aggregate=100k": "ReadAggregate, 100,000 events",
	"Replay/all":            "ReadAll, every event",
	"Replay/type":           "ReadType, a tenth of the events",
	"Replay/time":           "ReadTime, a tenth of the events",
}

// table is the results arranged as workloads by backends.
type table struct {
	workloads []string // "Append/batch=1"
	backends  []string
	name      map[[2]string]string // (workload, backend) -> benchmark name
}

func arrange(res *results) *table {
	t := &table{name: map[[2]string]string{}}
	seen := map[string]bool{}
	var others []string
	for _, n := range res.order {
		parts := strings.SplitN(strings.TrimPrefix(n, "Benchmark"), "/", 3)
		if len(parts) != 3 {
			continue
		}
		w, b := parts[0]+"/"+parts[2], parts[1]
		if !slices.Contains(t.workloads, w) {
			t.workloads = append(t.workloads, w)
		}
		if !seen[b] {
			seen[b] = true
			if !slices.Contains(backendOrder, b) {
				others = append(others, b)
			}
		}
		t.name[[2]string{w, b}] = n
	}
	for _, b := range backendOrder {
		if seen[b] {
			t.backends = append(t.backends, b)
		}
	}
	t.backends = append(t.backends, others...)
	return t
}

// value returns the median of unit for workload w on backend b.
func (t *table) value(res *results, w, b, unit string) (float64, bool) {
	n, ok := t.name[[2]string{w, b}]
	if !ok {
		return 0, false
	}
	return res.get(n, unit)
}

// renderTables returns the Markdown tables of res.
func renderTables(res *results) string {
	t := arrange(res)
	var sb strings.Builder
	sb.WriteString("### Throughput: events/s (ratio to " + baseline + "; bolt-nosync's to rawbolt-nosync)\n\n")
	writeGrid(&sb, t, func(w, b string) string {
		v, ok := t.value(res, w, b, "events/s")
		if !ok {
			return "—"
		}
		cell := human(v)
		if base, ok := t.value(res, w, t.baselineOf(res, w, b), "events/s"); ok && base > 0 {
			cell += fmt.Sprintf(" (%.2fx)", v/base)
		}
		return cell
	})
	sb.WriteString("\n### Allocations per event\n\n")
	writeGrid(&sb, t, func(w, b string) string {
		v, ok := t.value(res, w, b, "allocs/event")
		if !ok {
			return "—"
		}
		return fmt.Sprintf("%.1f", v)
	})
	sb.WriteString("\n### Time per event\n\n")
	writeGrid(&sb, t, func(w, b string) string {
		v, ok := t.value(res, w, b, "ns/event")
		if !ok {
			return "—"
		}
		return humanDuration(v)
	})
	sb.WriteString("\n### Bytes on disk per event\n\n")
	sb.WriteString("Appends: the store's size after the run divided by the events it holds; replay: the fixture's.\n\n")
	writeGrid(&sb, t, func(w, b string) string {
		v, ok := t.value(res, w, b, "disk-B/event")
		if !ok {
			return "—"
		}
		return fmt.Sprintf("%.0f", v)
	})
	sb.WriteString("\n" + renderAims(res, t))
	return sb.String()
}

func writeGrid(sb *strings.Builder, t *table, cell func(w, b string) string) {
	sb.WriteString("| workload |")
	for _, b := range t.backends {
		sb.WriteString(" " + b + " |")
	}
	sb.WriteString("\n|---|")
	for range t.backends {
		sb.WriteString("---:|")
	}
	sb.WriteString("\n")
	for _, w := range t.workloads {
		label := labels[w]
		if label == "" {
			label = w
		}
		sb.WriteString("| " + label + " <br>`" + w + "` |")
		for _, b := range t.backends {
			sb.WriteString(" " + cell(w, b) + " |")
		}
		sb.WriteString("\n")
	}
}

// renderAims checks the aims of issue 5 against the figures.
func renderAims(res *results, t *table) string {
	var sb strings.Builder
	sb.WriteString("### Aims\n\nThe append aims take the median of the ratios run by run (each run measured both figures close together), as the disk's latency drifts from run to run; replay figures are medians.\n\n| aim | measured | |\n|---|---|---|\n")
	row := func(aim, measured string, met, ok bool) {
		verdict := "not measured"
		if ok {
			verdict = "missed"
			if met {
				verdict = "met"
			}
		}
		sb.WriteString("| " + aim + " | " + measured + " | " + verdict + " |\n")
	}
	get := func(w, b, unit string) (float64, bool) { return t.value(res, w, b, unit) }

	// The append aims compare figures run by run: the disk's latency
	// drifts between runs, so a ratio of two medians can pair a fast run
	// with a slow one.
	ratio := func(wa, ba, wb, bb string) (float64, string, bool) {
		na, oka := t.name[[2]string{wa, ba}]
		nb, okb := t.name[[2]string{wb, bb}]
		if !oka || !okb {
			return 0, "", false
		}
		med, all, ok := res.ratios(na, nb, "events/s")
		if !ok {
			return 0, "", false
		}
		va, _ := res.get(na, "events/s")
		vb, _ := res.get(nb, "events/s")
		desc := fmt.Sprintf("%.2fx", med)
		if len(all) > 1 {
			desc += fmt.Sprintf(", the median of %d runs' ratios (%.2fx to %.2fx)", len(all), slices.Min(all), slices.Max(all))
		}
		return med, desc + fmt.Sprintf("; medians %s vs %s events/s", human(va), human(vb)), true
	}
	const aim1, aim64 = "bolt, single durable append: at least 0.9x raw bbolt", "bolt, 64 concurrent appenders: at least 10x its single-appender rate"
	if r, desc, ok := ratio("Append/batch=1", "bolt", "Append/batch=1", baseline); ok {
		row(aim1, desc, r >= 0.9, true)
	} else {
		row(aim1, "—", false, false)
	}
	if r, desc, ok := ratio("Append/parallel=64", "bolt", "Append/batch=1", "bolt"); ok {
		if _, cdesc, ok := ratio("Append/parallel=64", "rawbolt-grouped", "Append/batch=1", baseline); ok {
			desc += "; bbolt's ceiling here, rawbolt-grouped's 64 appends per commit against rawbolt's single: " + cdesc
		}
		row(aim64, desc, r >= 10, true)
	} else {
		row(aim64, "—", false, false)
	}
	var replays []string
	for _, w := range t.workloads {
		if strings.HasPrefix(w, "Replay/") {
			replays = append(replays, w)
		}
	}
	for _, w := range []string{"Replay/all", "Replay/aggregate=100k"} {
		v, ok := get(w, "bolt", "events/s")
		measured := "—"
		if ok {
			measured = human(v) + " events/s"
		}
		row("bolt replay from a warm file, decode included: at least 2.5M events/s (`"+w+"`)", measured, v >= 2.5e6, ok)
	}
	worst, worstW, any := 0.0, "", false
	for _, w := range replays {
		if v, ok := get(w, "bolt", "allocs/event"); ok {
			any = true
			if v > worst {
				worst, worstW = v, w
			}
		}
	}
	measured := "—"
	if any {
		measured = fmt.Sprintf("%.1f (`%s`)", worst, worstW)
	}
	row("at most 3 allocations per replayed event (bolt, worst replay)", measured, worst <= 3, any)
	return sb.String()
}

// human formats a rate: 653, 41.3k, 2.51M.
func human(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a >= 1e3:
		return fmt.Sprintf("%.2fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// humanDuration formats nanoseconds: 812 ns, 24.2 µs, 1.53 ms.
func humanDuration(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

// render returns the whole report.
func render(e env, res *results, raw []byte) string {
	var sb strings.Builder
	sb.WriteString("# Benchmark results\n\n")
	sb.WriteString("Written by `make bench` (`go run ./bench/cmd/results -o bench/RESULTS.md`); see `bench/doc.go` for the workloads ")
	sb.WriteString("and `make bench-compare OLD=ref NEW=ref` to compare two commits with benchstat.\n\n")
	sb.WriteString("| | |\n|---|---|\n")
	sb.WriteString("| date | " + e.date + " |\n")
	sb.WriteString("| machine | " + e.machine + " |\n")
	sb.WriteString("| Go | " + e.goVersion + " |\n")
	if e.commit != "" {
		sb.WriteString("| commit | " + e.commit + " |\n")
	}
	// A | ends a table cell even inside a code span: escape it.
	sb.WriteString("| command | `" + strings.ReplaceAll(e.command, "|", `\|`) + "` |\n\n")
	sb.WriteString("Figures are medians of the runs (the benchmarks the aims compare ran several times, in turn; see the command). The ratios compare each figure with `rawbolt` in the same run: ")
	sb.WriteString("bbolt used directly, writing the same buckets, keys, index entries and msgpack records as `bolt`, one `Update` per append ")
	sb.WriteString("(`DB.Batch`, with bbolt's default 10 ms batch delay, in the parallel cases); `rawbolt-nosync` is the same without fsync, ")
	sb.WriteString("`bolt-nosync`'s counterpart, so that their ratio shows the layer's CPU cost without the disk's noise. `rawbolt-grouped` has only the parallel rows: one goroutine commits the same appends as the parallel writers, g per `Update`, which is what a perfect group commit with no waiting and no checks would do; its ratio to `rawbolt`'s single append is the most grouping can gain on the machine. `rawbolt` reads in one `View` and decodes each record into an `eventstore.Event` plainly ")
	sb.WriteString("(ID, payload, metadata map and value: 6 allocations per event), where `bolt` shares allocations across a page. ")
	sb.WriteString("A machine shared with other work makes the figures noisy: compare ratios from one run, not figures across runs.\n\n")
	sb.WriteString("Events carry a JSON payload of about 130 bytes and one metadata entry. The replay fixture holds 1,000,000 events ")
	sb.WriteString("(9,000 aggregates of 100 events, one of 100,000) on memory and bolt; on PostgreSQL 190,000 ")
	sb.WriteString("(900 aggregates of 100, one of 100,000), as loading a million events through Append there takes minutes.\n\n")
	sb.WriteString(renderTables(res))
	if len(res.fixtures) > 0 {
		sb.WriteString("\n### Replay fixtures\n\n")
		for _, f := range res.fixtures {
			sb.WriteString("- " + f + "\n")
		}
	}
	if len(res.skips) > 0 {
		// One line per reason: a missing server skips many benchmarks.
		sb.WriteString("\n### Skipped\n\n")
		var reasons []string
		names := map[string][]string{}
		for _, s := range res.skips {
			name, reason, _ := strings.Cut(s, ": ")
			if names[reason] == nil {
				reasons = append(reasons, reason)
			}
			names[reason] = append(names[reason], "`"+name+"`")
		}
		for _, r := range reasons {
			sb.WriteString("- " + strings.Join(names[r], ", ") + ": " + r + "\n")
		}
	}
	sb.WriteString("\n<details><summary>Raw output (benchstat reads it)</summary>\n\n```\n")
	for _, line := range strings.Split(string(raw), "\n") {
		if isResult(line) || strings.HasPrefix(line, "goos:") || strings.HasPrefix(line, "goarch:") ||
			strings.HasPrefix(line, "pkg:") || strings.HasPrefix(line, "cpu:") {
			sb.WriteString(line + "\n")
		}
	}
	sb.WriteString("```\n\n</details>\n")
	return sb.String()
}
