// Command results runs the benchmarks of package bench and writes a
// Markdown report: the machine, the Go version, the date, the command, and
// tables of workloads by backends with each figure's ratio to the raw bbolt
// baseline measured in the same run. It prints the tables too.
//
// `make bench` runs it as
//
//	cd bench && go run ./cmd/results -o RESULTS.md
//
// and writes the charts (throughput.png, latency.png) beside the report.
// Flags select the benchmarks (-bench), their duration (-benchtime) and
// repetitions (-count, whose median it reports); -in reads the output of an
// earlier `go test -bench` run instead of running one.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func main() {
	out := flag.String("o", "", "write the report to this file (default: only print it)")
	bench := flag.String("bench", ".", "the -bench regexp")
	benchtime := flag.String("benchtime", "1s", "the -benchtime of each benchmark")
	count := flag.Int("count", 1, "runs of each benchmark; the report shows the median")
	pkg := flag.String("pkg", ".", "the package holding the benchmarks")
	charts := flag.Bool("charts", true, "write PNG charts beside the -o report")
	timeout := flag.String("timeout", "60m", "the -timeout of the go test run")
	in := flag.String("in", "", "read benchmark output from this file instead of running go test")
	repeat := flag.Int("repeat", 4, "extra runs of the benchmarks the aims compare, which a busy machine makes noisy")
	repeatBench := flag.String("repeat-bench", `Append/^(bolt|rawbolt|sqlite)(-nosync|-grouped|-nowal)?$/(batch=1|parallel=64)$`,
		"appends to run -repeat more times, each in its own go test (the disk's state carries over within one)")
	repeatReplay := flag.String("repeat-replay", `Replay/^(bolt|rawbolt|sqlite)$/(all|aggregate=100k)$`,
		"replays to run -repeat more times, in one go test with -count (which loads the fixtures once)")
	flag.Parse()

	args := []string{"test", "-v", "-run", "^$", "-bench", *bench, "-benchmem",
		"-benchtime", *benchtime, "-count", fmt.Sprint(*count), "-timeout", *timeout, *pkg}
	command := "go " + strings.Join(quoteArgs(args), " ")
	var raw []byte
	var err error
	if *in != "" {
		raw, err = os.ReadFile(*in)
		command = "(read from " + *in + ")"
	} else {
		raw, err = runGoTest(args)
		more := func(pattern string, count int) {
			if err != nil || pattern == "" {
				return
			}
			var out []byte
			out, err = runGoTest([]string{"test", "-v", "-run", "^$", "-bench", pattern, "-benchmem",
				"-benchtime", *benchtime, "-count", fmt.Sprint(count), "-timeout", *timeout, *pkg})
			raw = append(raw, out...)
		}
		for range *repeat {
			more(*repeatBench, 1)
		}
		if *repeat > 0 {
			more(*repeatReplay, *repeat)
			command += fmt.Sprintf(", then %d more runs of -bench '%s' (each its own go test) and of -bench '%s' (one go test)", *repeat, *repeatBench, *repeatReplay)
		}
	}
	if err != nil {
		fatal(err)
	}
	res := parse(bytes.NewReader(raw))
	if len(res.runs) == 0 {
		fatal(fmt.Errorf("no benchmark results in the output"))
	}
	env := describe(command, res)
	var written []string
	if *out != "" && *charts {
		written, err = writeCharts(filepath.Dir(*out), res)
		if err != nil {
			fatal(fmt.Errorf("charts: %w", err))
		}
	}
	report := render(env, res, raw, written)
	fmt.Print("\n" + renderTables(res))
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
			fatal(err)
		}
		fmt.Fprintln(os.Stderr, "results: wrote", *out)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "results:", err)
	os.Exit(1)
}

// runGoTest runs go test with args, echoing its output to stderr as it
// comes, and returns the output. A failing run is an error.
func runGoTest(args []string) ([]byte, error) {
	fmt.Fprintln(os.Stderr, "results: go "+strings.Join(quoteArgs(args), " "))
	cmd := exec.Command("go", args...)
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(&buf, os.Stderr)
	cmd.Stderr = io.MultiWriter(&buf, os.Stderr)
	if err := cmd.Run(); err != nil {
		return buf.Bytes(), fmt.Errorf("go test: %w", err)
	}
	return buf.Bytes(), nil
}

func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " ^$*|()[]{}?\\'\"") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return q
}

// env describes where and how the benchmarks ran.
type env struct {
	date, machine, goVersion, commit, command string
}

func describe(command string, res *results) env {
	e := env{
		date:    time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		command: command,
	}
	cpu := res.cpu
	if cpu == "" {
		cpu = cpuModel()
	}
	e.machine = fmt.Sprintf("%s, %d cores, %s/%s", cpu, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	if mem := memTotal(); mem != "" {
		e.machine += ", " + mem + " RAM"
	}
	gogc := os.Getenv("GOGC")
	if gogc == "" {
		gogc = "100 (default)"
	}
	e.machine += ", GOGC=" + gogc
	if v, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		e.goVersion = strings.TrimSpace(string(v))
	} else {
		e.goVersion = runtime.Version()
	}
	if c, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		e.commit = strings.TrimSpace(string(c))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
			e.commit += " (with uncommitted changes)"
		}
	}
	return e
}

// cpuModel returns the CPU's model name from /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// memTotal returns the machine's memory from /proc/meminfo, as "24 GiB".
func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
			return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return ""
}
