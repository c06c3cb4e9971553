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
var backendOrder = []string{"memory", "bolt", "bolt-nowal", "bolt-nosync", "postgres", "sqlite", "rawbolt", "rawbolt-nosync", "rawbolt-grouped"}

// stores are the backends an application would pick between: durable
// stores, with the layer. The "where each store wins" summary compares
// them.
var stores = []string{"bolt", "sqlite", "postgres"}

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
	"Append/batch=1":               "Append, 1 event per call (durable)",
	"Append/batch=10":              "Append, 10 events per call",
	"Append/batch=100":             "Append, 100 events per call",
	"Append/parallel=8":            "Append, 8 goroutines, 1 event per call",
	"Append/parallel=64":           "Append, 64 goroutines, 1 event per call",
	"Replay/aggregate=100":         "ReadAggregate, 100 events",
	"Replay/aggregate=100k":        "ReadAggregate, 100,000 events",
	"Replay/aggregate=100k-legacy": "ReadAggregate, 100,000 events, the old fixture (calls of 100 sharing metadata)",
	"Replay/all":                   "ReadAll, every event",
	"Replay/type":                  "ReadType, a tenth of the events",
	"Replay/time":                  "ReadTime, a tenth of the events",
	"Subscribe/latency":            "Append, 1 event per call, each yielded by a live Subscribe (latency table)",
	"Subscribe/catchup":            "Subscribe from position 0, every event (compare ReadAll)",
	"Project/exactly-once":         "exactly-once Project of 100,000 events, one record per event in the read model",
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
	sb.WriteString("\n" + renderLatency(res, t))
	sb.WriteString("\n" + renderWins(res, t))
	sb.WriteString("\n" + renderAims(res, t))
	return sb.String()
}

// renderLatency returns the table of latency percentiles per store.
func renderLatency(res *results, t *table) string {
	var sb strings.Builder
	sb.WriteString("### Latency\n\nPercentiles of the time of each operation in the run (nearest rank; a p99.9 is only as good as the thousand operations behind it).\n\n")
	sb.WriteString("| store |")
	for range latencyWorkloads {
		for _, pu := range percentileUnits {
			sb.WriteString(" " + pu.name + " |")
		}
	}
	sb.WriteString("\n|---|")
	for range latencyWorkloads {
		for range percentileUnits {
			sb.WriteString("---:|")
		}
	}
	sb.WriteString("\n| |")
	for _, lw := range latencyWorkloads {
		sb.WriteString(" **" + lw.title + "** <br>`" + lw.w + "` |")
		for range percentileUnits[1:] {
			sb.WriteString(" |")
		}
	}
	sb.WriteString("\n")
	for _, b := range t.backends {
		cells, any := "", false
		for _, lw := range latencyWorkloads {
			for _, pu := range percentileUnits {
				v, ok := t.value(res, lw.w, b, pu.unit)
				if ok {
					any = true
					cells += " " + humanDuration(v) + " |"
				} else {
					cells += " — |"
				}
			}
		}
		if any {
			sb.WriteString("| " + b + " |" + cells + "\n")
		}
	}
	return sb.String()
}

// renderWins returns the summary of where each store wins: per workload,
// the fastest of the stores an application would pick, and by how much
// over the next; then size and latency.
func renderWins(res *results, t *table) string {
	var sb strings.Builder
	sb.WriteString("### Where each store wins\n\nAmong the stores an application would pick (" + strings.Join(stores, ", ") + "; memory keeps nothing, the raw and nosync rows are references).\n\n")
	sb.WriteString("| workload | fastest | ahead of the next by | the others |\n|---|---|---:|---|\n")
	type fig struct {
		b string
		v float64
	}
	best := func(w, unit string, higher bool) []fig {
		var fs []fig
		for _, b := range stores {
			if v, ok := t.value(res, w, b, unit); ok && v > 0 {
				fs = append(fs, fig{b, v})
			}
		}
		slices.SortFunc(fs, func(a, b fig) int {
			if higher {
				a, b = b, a
			}
			switch {
			case a.v < b.v:
				return -1
			case a.v > b.v:
				return 1
			}
			return 0
		})
		return fs
	}
	row := func(label string, fs []fig, format func(float64) string, higher bool) {
		if len(fs) == 0 {
			return
		}
		by := "—"
		if len(fs) > 1 {
			r := fs[0].v / fs[1].v
			if !higher {
				r = fs[1].v / fs[0].v
			}
			by = fmt.Sprintf("%.2fx", r)
		}
		var others []string
		for _, f := range fs[1:] {
			others = append(others, f.b+" "+format(f.v))
		}
		sb.WriteString("| " + label + " | **" + fs[0].b + "** " + format(fs[0].v) + " | " + by + " | " + strings.Join(others, ", ") + " |\n")
	}
	for _, w := range t.workloads {
		row(labelOf(w)+" <br>`"+w+"`", best(w, "events/s", true), func(v float64) string { return human(v) + "/s" }, true)
	}
	for _, lw := range latencyWorkloads {
		row("p99 latency, "+lw.title+" <br>`"+lw.w+"`", best(lw.w, "p99-ns", false), humanDuration, false)
	}
	if w := "Replay/all"; true {
		row("bytes on disk per event, the replay fixture", best(w, "disk-B/event", false), func(v float64) string { return fmt.Sprintf("%.0f B", v) }, false)
	}
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

// renderAims checks the aims of the bench issues (appends, the
// write-ahead log, the read side, replay, size, import and replication)
// against the figures.
func renderAims(res *results, t *table) string {
	var sb strings.Builder
	sb.WriteString("### Aims\n\nThe append aims take the median of the ratios run by run (each run measured both figures close together), as the disk's latency drifts from run to run; replay figures are medians, on the realistic fixture. Each command runs in bench/ and measures the aim's figures alone.\n\n| aim | measured | command | |\n|---|---|---|---|\n")
	command := ""
	row := func(aim, measured string, met, ok bool) {
		verdict := "not measured"
		if ok {
			verdict = "missed"
			if met {
				verdict = "met"
			}
		}
		sb.WriteString("| " + aim + " | " + measured + " | `" + strings.ReplaceAll(command, "|", `\|`) + "` | " + verdict + " |\n")
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
	command = `go test -run '^$' -bench 'Append/^(bolt|rawbolt)$/batch=1$' -count 5 .`
	if r, desc, ok := ratio("Append/batch=1", "bolt", "Append/batch=1", baseline); ok {
		row(aim1, desc, r >= 0.9, true)
	} else {
		row(aim1, "—", false, false)
	}
	command = `go test -run '^$' -bench 'Append/^(bolt|rawbolt)(-grouped)?$/(batch=1|parallel=64)$' -count 5 .`
	if r, desc, ok := ratio("Append/parallel=64", "bolt", "Append/batch=1", "bolt"); ok {
		if _, cdesc, ok := ratio("Append/parallel=64", "rawbolt-grouped", "Append/batch=1", baseline); ok {
			desc += "; bbolt's ceiling here, rawbolt-grouped's 64 appends per commit against rawbolt's single: " + cdesc
		}
		row(aim64, desc, r >= 10, true)
	} else {
		row(aim64, "—", false, false)
	}
	// The write-ahead log's aims: bolt (the log on) against SQLite, raw
	// bbolt and bolt-nowal (today's bolt: plain bbolt commits).
	for _, a := range []struct {
		aim, w, b, wb, bb string
		min               float64
	}{
		{"bolt with its log, single durable append: at least 1.3x SQLite FULL", "Append/batch=1", "bolt", "Append/batch=1", "sqlite", 1.3},
		{"bolt with its log, single durable append: at least 1.6x raw bbolt", "Append/batch=1", "bolt", "Append/batch=1", baseline, 1.6},
		{"bolt with its log, 64 concurrent appenders: at least 2x bolt without it", "Append/parallel=64", "bolt", "Append/parallel=64", "bolt-nowal", 2},
		{"bolt with its log, 100-event calls: no worse than without it (at least 0.95x)", "Append/batch=100", "bolt", "Append/batch=100", "bolt-nowal", 0.95},
	} {
		command = "go test -run '^$' -bench 'Append/^(" + a.b + "|" + a.bb + ")$/" + strings.TrimPrefix(a.w, "Append/") + "$' -count 5 ."
		if r, desc, ok := ratio(a.w, a.b, a.wb, a.bb); ok {
			row(a.aim, desc, r >= a.min, true)
		} else {
			row(a.aim, "—", false, false)
		}
	}
	// The read side's aim: a live subscriber wakes soon after a commit.
	for _, a := range []struct {
		b     string
		maxNs float64
	}{{"memory", 1e6}, {"bolt", 1e6}, {"postgres", 20e6}} {
		command = "go test -run '^$' -bench 'Subscribe/^" + a.b + "$/latency$' ."
		v, ok := get("Subscribe/latency", a.b, "p50-ns")
		measured := "—"
		if ok {
			measured = humanDuration(v) + " p50"
		}
		row(fmt.Sprintf("%s, Append's return to a live subscriber's yield: p50 at most %s", a.b, humanDuration(a.maxNs)), measured, v <= a.maxNs, ok)
	}
	var replays []string
	for _, w := range t.workloads {
		if strings.HasPrefix(w, "Replay/") && !strings.HasSuffix(w, "-legacy") {
			replays = append(replays, w)
		}
	}
	for _, w := range []string{"Replay/all", "Replay/aggregate=100k"} {
		v, ok := get(w, "bolt", "events/s")
		measured := "—"
		if ok {
			measured = human(v) + " events/s"
		}
		command = "go test -run '^$' -bench 'Replay/^bolt$/" + strings.TrimPrefix(w, "Replay/") + "$' -benchmem ."
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
	command = "go test -run '^$' -bench 'Replay/^bolt$/' -benchmem ."
	row("at most 3 allocations per replayed event (bolt, worst replay of the realistic fixture)", measured, worst <= 3, any)

	// The size aim: bolt's file against SQLite's, on the same realistic
	// fixture.
	command = "go test -run '^$' -bench 'Replay/^(bolt|sqlite)$/all$' ."
	bb, okb := get("Replay/all", "bolt", "disk-B/event")
	sq, oks := get("Replay/all", "sqlite", "disk-B/event")
	measured = "—"
	if okb && oks && sq > 0 {
		measured = fmt.Sprintf("%.2fx; %.0f vs %.0f bytes an event", bb/sq, bb, sq)
	}
	row("bolt file size on the realistic fixture: at most 1.2x SQLite's", measured, okb && oks && bb <= 1.2*sq, okb && oks && sq > 0)

	// Bulk import and replication.
	command = "go test -run '^$' -bench 'Import/' ."
	const aimImport = "bolt Import in calls of 1,000: at least 0.8x raw bbolt writing the same records in transactions of the same size"
	if r, desc, ok := ratio("Import/batch=1000", "bolt", "Import/batch=1000", baseline); ok {
		row(aimImport, desc, r >= 0.8, true)
	} else {
		row(aimImport, "—", false, false)
	}
	v, ok := get("Import/batch=1000", "postgres", "events/s")
	measured = "—"
	if ok {
		measured = human(v) + " events/s"
	}
	row("postgres Import in calls of 1,000: at least 30k events/s", measured, v >= 30e3, ok)
	replicate := ""
	for _, w := range t.workloads {
		// The default batch size's row, or else the first.
		if strings.HasPrefix(w, "Replicate/") && (replicate == "" || strings.HasSuffix(w, "/batch=10000")) {
			replicate = w
		}
	}
	command = "go test -run '^$' -bench 'Replicate/' -benchtime 1x ."
	secs, ok := get(replicate, "bolt-to-postgres", "s/copy")
	measured = "—"
	if ok {
		measured = fmt.Sprintf("%.1f s (`%s`)", secs, replicate)
	}
	row("1,000,000 events bolt to postgres: under 60 s", measured, secs < 60, ok)
	v, ok = get(replicate, "bolt-to-bolt", "events/s")
	measured = "—"
	if ok {
		measured = fmt.Sprintf("%s events/s (`%s`)", human(v), replicate)
		if raw, ok := get(replicate, "rawbolt-to-rawbolt", "events/s"); ok && raw > 0 {
			measured += fmt.Sprintf("; bbolt's ceiling here, raw bbolt writing the same records in the same transactions: %s events/s (%.2fx)", human(raw), v/raw)
		}
	}
	row("1,000,000 events bolt to bolt: at least 100k events/s", measured, v >= 100e3, ok)
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
func render(e env, res *results, raw []byte, charts []string) string {
	var sb strings.Builder
	sb.WriteString("# Benchmark results\n\n")
	sb.WriteString("Written by `make bench` (`cd bench && go run ./cmd/results -o RESULTS.md`); see `bench/doc.go` for the workloads ")
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
	sb.WriteString("(ID, payload, and a metadata map of its own per event, with its keys and values), where `bolt` shares allocations across a page and one map across the events of a call. ")
	sb.WriteString("A machine shared with other work makes the figures noisy: compare ratios from one run, not figures across runs.\n\n")
	sb.WriteString("`sqlite` is the store a desktop developer would write instead: SQLite (modernc.org/sqlite, pure Go) in WAL mode with `synchronous=FULL`, ")
	sb.WriteString("one table keyed by (aggregate, version) (`WITHOUT ROWID`), a unique position and event ID, indexes on (type, position) and (time, position), ")
	sb.WriteString("the version and retry checks inside a `BEGIN IMMEDIATE` transaction, prepared statements, metadata as JSON text (bench/sqlite_test.go).\n\n")
	sb.WriteString("Events are what an application's commands append: calls of 1 to 3 events, each call with its own correlation, causation and user IDs, ")
	sb.WriteString("JSON payloads of 100 B to 2 KiB (log-normal, median 250 B). The replay fixture holds 1,000,000 such events on every store ")
	sb.WriteString("(9,000 aggregates of 100 events, 64 written at a time, and one of 100,000 taking a tenth of the calls); PostgreSQL's is loaded with COPY. ")
	sb.WriteString("Fixtures are cached across runs (bench/cache_test.go). The row `Replay/aggregate=100k-legacy` reads the old fixture, ")
	sb.WriteString("100,000 events appended 100 per call with one shared metadata map and 130-byte payloads, which flatters bolt's shared-map decoding.\n\n")
	if len(charts) > 0 {
		sb.WriteString("### Charts\n\n")
		for _, c := range charts {
			sb.WriteString("![" + strings.TrimSuffix(c, ".png") + "](" + c + ")\n\n")
		}
	}
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
