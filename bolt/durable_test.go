//go:build linux

package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// The durability tests run a child process (this test binary, running
// TestDurableChild) under strace, which records the child's file syscalls
// and injects faults into them (-e inject=fdatasync:error=EIO:when=N). The
// child locks its goroutine to one thread, because strace counts syscalls
// for when=N per thread, and marks the steps of its scenario with
// access("/eventstore-mark/<step>"), which strace records in order with
// the rest. It reports each outcome on its standard output.

// durableEnv holds "<scenario> <path>" in the child.
const durableEnv = "EVENTSTORE_BOLT_DURABLE_CHILD"

const markPrefix = "/eventstore-mark/"

// requireStrace skips the test, loudly, when strace is missing or cannot
// trace here; with CI=true it fails instead (.ci/run installs strace).
func requireStrace(t *testing.T) {
	t.Helper()
	path, err := exec.LookPath("strace")
	if err == nil {
		var out []byte
		out, err = exec.Command(path, "-f", "-o", "/dev/null", "--", "/bin/true").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("strace cannot trace here: %w: %s", err, out)
		}
	}
	if err == nil {
		return
	}
	msg := fmt.Sprintf("durability tests need strace (apt-get install strace): %v", err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "!!! SKIPPED, fsync behaviour NOT tested:", msg)
	t.Skip(msg)
}

// call is one syscall strace recorded.
type call struct {
	name string
	args string
	ret  string
	file string // the path of the first fd among the arguments (strace -y), if any
}

func (c call) failed() bool   { return strings.HasPrefix(c.ret, "-1") }
func (c call) injected() bool { return strings.Contains(c.ret, "(INJECTED)") }
func (c call) isSync() bool   { return c.name == "fdatasync" || c.name == "fsync" }

// mark returns the step c marks, if it is a marker.
func (c call) mark() (string, bool) {
	if c.name != "faccessat" && c.name != "faccessat2" {
		return "", false
	}
	i := strings.Index(c.args, `"`+markPrefix)
	if i < 0 {
		return "", false
	}
	rest := c.args[i+1+len(markPrefix):]
	return rest[:strings.IndexByte(rest, '"')], true
}

var (
	callLine   = regexp.MustCompile(`^(\d+) +(.*)$`)
	callSplit  = regexp.MustCompile(`^([a-z0-9_]+)\((.*)\) += (.*)$`)
	resumed    = regexp.MustCompile(`^<\.\.\. [a-z0-9_]+ resumed>(.*)$`)
	fdWithPath = regexp.MustCompile(`\b\d+<([^>]*)>`)
)

// parseTrace reads the output of strace -f -y -o file, joining calls that
// another thread's call interrupted.
func parseTrace(t *testing.T, file string) []call {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	pending := make(map[string]string) // pid -> start of an unfinished call
	var calls []call
	for _, line := range strings.Split(string(data), "\n") {
		m := callLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pid, text := m[1], m[2]
		if strings.HasSuffix(text, " <unfinished ...>") {
			pending[pid] = strings.TrimSuffix(text, " <unfinished ...>")
			continue
		}
		if r := resumed.FindStringSubmatch(text); r != nil {
			text = pending[pid] + r[1]
			delete(pending, pid)
		}
		c := callSplit.FindStringSubmatch(text)
		if c == nil {
			continue // a signal, an exit
		}
		k := call{name: c[1], args: c[2], ret: c[3]}
		if f := fdWithPath.FindStringSubmatch(k.args); f != nil {
			k.file = f[1]
		}
		calls = append(calls, k)
	}
	return calls
}

// traced is what a child run under strace did.
type traced struct {
	calls []call
	out   []string // the lines of its standard output
}

// index returns the index in calls of the marker of step, or -1.
func (tr traced) index(step string) int {
	for i, c := range tr.calls {
		if s, ok := c.mark(); ok && s == step {
			return i
		}
	}
	return -1
}

// between returns the calls after the marker of from, up to the marker of
// to (or the end when to is not marked).
func (tr traced) between(t *testing.T, from, to string) []call {
	t.Helper()
	i, j := tr.index(from), tr.index(to)
	require.GreaterOrEqual(t, i, 0, "step %q not traced", from)
	if j < 0 {
		j = len(tr.calls)
	}
	return tr.calls[i+1 : j]
}

// dump logs the trace, for a failing test.
func (tr traced) dump(t *testing.T) {
	t.Helper()
	var b strings.Builder
	for _, c := range tr.calls {
		if c.name == "mmap" && c.file == "" {
			continue // the Go runtime's
		}
		fmt.Fprintf(&b, "  %s(%s) = %s\n", c.name, c.args, c.ret)
	}
	t.Logf("child output %q; trace:\n%s", tr.out, b.String())
}

const traceSet = "trace=fdatasync,fsync,pwrite64,pread64,flock,fadvise64,mmap,faccessat,faccessat2"

// runTraced runs scenario on path in a child under strace with the extra
// strace arguments.
func runTraced(t *testing.T, scenario, path string, straceArgs ...string) traced {
	t.Helper()
	log := filepath.Join(t.TempDir(), "strace.log")
	args := append([]string{"-f", "-y", "-qq", "-o", log, "-e", traceSet}, straceArgs...)
	args = append(args, "--", os.Args[0], "-test.run=^TestDurableChild$", "-test.count=1")
	cmd := exec.Command("strace", args...)
	cmd.Env = append(os.Environ(), durableEnv+"="+scenario+" "+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v\n%s", scenario, err, stderr.String())
	}
	tr := traced{calls: parseTrace(t, log)}
	for _, line := range strings.Split(string(out), "\n") {
		if said, ok := strings.CutPrefix(line, "child: "); ok {
			tr.out = append(tr.out, said)
		}
	}
	return tr
}

// lines returns the lines the child printed.
func (tr traced) lines() []string { return tr.out }

// TestDurableChild is the child process of the durability tests; it does
// nothing in a normal run.
func TestDurableChild(t *testing.T) {
	env := os.Getenv(durableEnv)
	if env == "" {
		t.Skip("only runs as the child of the durability tests")
	}
	scenario, path, _ := strings.Cut(env, " ")
	scenario, childWAL = strings.CutSuffix(scenario, "+wal")
	// strace counts the syscalls of when=N per thread: keep every
	// syscall of the store on this one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	switch scenario {
	case "appends":
		childAppends(path)
	case "reopen":
		childReopen(path)
	case "retry":
		childRetry(path)
	case "recover-nosync":
		childRecoverNoSync(path)
	case "subscribed":
		childSubscribed(path)
	default:
		fmt.Fprintln(os.Stderr, "unknown scenario", scenario)
		os.Exit(2)
	}
}

// childWAL is set in a child whose scenario ends in "+wal": it opens its
// stores with the write-ahead log.
var childWAL bool

func childOpts() *bolt.Options { return &bolt.Options{NoWAL: !childWAL} }

// walMode is a mode of the durability tests: the scenario suffix of its
// child.
type walMode struct{ name, suffix string }

// require skips the log's mode in the run without the log (it ran in the
// default run).
func (m walMode) require(t *testing.T) {
	if m.suffix != "" {
		bolt.RequireWAL(t)
	}
}

// walModes are the two modes.
var walModes = []walMode{{"WAL=false", ""}, {"WAL=true", "+wal"}}

// say prints a line of the child's report (the test framework prints its
// own lines too).
func say(format string, args ...any) { fmt.Printf("child: "+format+"\n", args...) }

func mark(step string) { _ = syscall.Access(markPrefix+step, 0) }

// childEvents returns n events whose IDs depend on seed only, so that a
// retry in another process appends the same events.
func childEvents(seed string, n int) []eventstore.Event {
	events := make([]eventstore.Event, n)
	for i := range events {
		events[i] = eventstore.Event{
			ID:          uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprintf("%s-%d", seed, i))).String(),
			AggregateID: "agg-" + seed,
			Type:        "Happened",
			Payload:     []byte(fmt.Sprintf(`{"seed":%q,"i":%d}`, seed, i)),
		}
	}
	return events
}

// childAppendCount is how many appends the "appends" scenario makes.
const childAppendCount = 3

// childAppends opens path and appends childAppendCount times, printing
// "ok <i>" or "err <i> unknown=<bool>" for each append.
func childAppends(path string) {
	s := childOpen(path)
	if s == nil {
		return
	}
	defer s.Close()
	appendAndSay(s, func() {})
}

// childOpen opens path as the children do, or prints "openerr" and
// returns nil.
func childOpen(path string) *bolt.Store {
	mark("open")
	s, err := bolt.Open(path, childOpts())
	if err != nil {
		say("openerr")
		return nil
	}
	return s
}

// appendAndSay is the loop of childAppends: it calls acked after each
// acknowledged append, and returns how many there were.
func appendAndSay(s *bolt.Store, acked func()) int {
	n := 0
	for i := range childAppendCount {
		mark(fmt.Sprintf("append-%d", i))
		_, err := s.Append(context.Background(), childEvents(fmt.Sprint(i), 2)...)
		mark(fmt.Sprintf("answered-%d", i))
		if err != nil {
			say("err %d unknown=%t", i, errors.Is(err, eventstore.ErrUnknownOutcome))
			continue
		}
		say("ok %d", i)
		n++
		acked()
	}
	return n
}

// childSubscribed is childAppends with a live subscription running: after
// each acknowledged append it waits (up to 5s) for the subscription to
// yield its events, and at the end it prints "seen <n> acked <m>": the
// events the subscription yielded and those of acknowledged appends.
func childSubscribed(path string) {
	s := childOpen(path)
	if s == nil {
		return
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var seen atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, err := range s.Subscribe(ctx, 0, eventstore.Filter{}) {
			if err != nil {
				return
			}
			seen.Add(1)
		}
	}()
	acked := int64(0)
	appendAndSay(s, func() {
		acked += 2
		for deadline := time.Now().Add(5 * time.Second); seen.Load() < acked && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	})
	time.Sleep(100 * time.Millisecond) // time for what it must not yield
	cancel()
	<-done
	say("seen %d acked %d", seen.Load(), acked)
}

// childRecoverNoSync opens path, whose log holds commits, with
// UnsafeNoSync, and prints how many events it reads.
func childRecoverNoSync(path string) {
	mark("open")
	s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: true})
	mark("opened")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	defer s.Close()
	events, err := eventstore.Collect(s.ReadAll(context.Background(), 0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	say("events %d", len(events))
}

// TestOpen_ReplaySyncedWithUnsafeNoSync: the log's records were durable,
// so an Open that replays them syncs the file before it removes the log,
// even with UnsafeNoSync (which only gives up the syncs of new commits).
func TestOpen_ReplaySyncedWithUnsafeNoSync(t *testing.T) {
	requireStrace(t)
	bolt.RequireWAL(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "events.db")
	s, err := bolt.Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	for i := range 3 {
		_, err := s.Append(context.Background(), childEvents(fmt.Sprint(i), 2)...)
		require.NoError(t, err)
	}
	// What a process killed now leaves: the file and its log.
	crashed := filepath.Join(t.TempDir(), "events.db")
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(path + suffix)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(crashed+suffix, data, 0o600))
	}

	tr := runTraced(t, "recover-nosync", crashed)
	require.Equal(t, []string{"events 6"}, tr.lines())
	// Removing the log ends with an fsync of its directory: every write to
	// the file before it (the replay's) must be synced before it.
	lastWrite, syncAfter, removed := -1, false, false
	for i, c := range tr.between(t, "open", "opened") {
		if c.isSync() && c.file == filepath.Dir(crashed) {
			removed = true
			break
		}
		switch {
		case c.name == "pwrite64" && c.file == crashed:
			lastWrite, syncAfter = i, false
		case c.isSync() && c.file == crashed && lastWrite >= 0:
			syncAfter = true
		}
	}
	if !removed || lastWrite < 0 || !syncAfter {
		tr.dump(t)
		t.Fatalf("Open wrote the replay to %s (last write: call %d) and removed the log (%t) without syncing it", crashed, lastWrite, removed)
	}
}

// childReopen creates a store at path, appends once, closes it, and opens
// it again.
func childReopen(path string) {
	mark("open-new")
	s, err := bolt.Open(path, childOpts())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	mark("append")
	if _, err := s.Append(context.Background(), childEvents("a", 1)...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	mark("acked")
	s.Close()
	mark("open-existing")
	s, err = bolt.Open(path, childOpts())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	mark("opened")
	s.Close()
	say("done")
}

// childRetry appends to the existing store at path, and on ErrUnknownOutcome
// does what the package doc says: close, open again, retry the same
// append. It prints "unknown", "openerr" or "ok" for each attempt.
func childRetry(path string) {
	events := childEvents("retry", 3)
	var s *bolt.Store
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	for attempt := range 5 {
		mark(fmt.Sprintf("attempt-%d", attempt))
		if s == nil {
			var err error
			if s, err = bolt.Open(path, childOpts()); err != nil {
				say("openerr")
				continue
			}
		}
		_, err := s.Append(context.Background(), events...)
		switch {
		case err == nil:
			mark("acked")
			say("ok")
			return
		case errors.Is(err, eventstore.ErrUnknownOutcome):
			say("unknown")
			s.Close()
			s = nil
		default:
			fmt.Fprintln(os.Stderr, "retry child:", err)
			os.Exit(3)
		}
	}
}

// syncedAfterLastWrite reports whether calls, the calls of one append,
// write path and then sync it successfully after the last write, without a
// failed sync.
func syncedAfterLastWrite(calls []call, path string) (ok bool, why string) {
	lastWrite, lastSync := -1, -1
	for i, c := range calls {
		if c.file != path {
			continue
		}
		switch {
		case c.name == "pwrite64":
			lastWrite = i
		case c.isSync() && c.failed():
			return false, "a sync of the file failed"
		case c.isSync():
			lastSync = i
		}
	}
	switch {
	case lastWrite < 0:
		return false, "nothing written"
	case lastSync < lastWrite:
		return false, "no successful sync after the last write"
	}
	return true, ""
}

// TestStore_AppendSyncsEachCommit counts the syncs of acknowledged
// appends: every one of them writes the file and then syncs it (bbolt
// fdatasyncs twice per commit) before Append returns. With the log, each
// writes a record to the log and fdatasyncs the log, once, and does not
// sync the store's file (the first append also creates the log).
func TestStore_AppendSyncsEachCommit(t *testing.T) {
	requireStrace(t)
	for _, mode := range walModes {
		t.Run(mode.name, func(t *testing.T) {
			mode.require(t)
			path := filepath.Join(t.TempDir(), "events.db")
			tr := runTraced(t, "appends"+mode.suffix, path)
			durable := path
			if mode.suffix != "" {
				durable = path + "-wal"
			}
			for i := range childAppendCount {
				require.Contains(t, tr.lines(), fmt.Sprintf("ok %d", i))
				calls := tr.between(t, fmt.Sprintf("append-%d", i), fmt.Sprintf("answered-%d", i))
				if ok, why := syncedAfterLastWrite(calls, durable); !ok {
					tr.dump(t)
					t.Fatalf("append %d acknowledged, but %s", i, why)
				}
				if mode.suffix == "" || i == 0 {
					continue
				}
				syncs := map[string]int{}
				for _, c := range calls {
					if c.isSync() {
						syncs[c.file]++
					}
				}
				if syncs[durable] != 1 || len(syncs) != 1 {
					tr.dump(t)
					t.Fatalf("append %d made the syncs %v, want one of the log", i, syncs)
				}
			}
		})
	}
}

// TestStore_AppendFailedSyncNotAcknowledged fails each sync of a child's
// run in turn (fdatasync answers EIO, injected by strace): the append whose
// commit it belongs to reports ErrUnknownOutcome, no later append
// succeeds, and every acknowledged append wrote and synced the file (the
// log, in log mode) with no failure.
func TestStore_AppendFailedSyncNotAcknowledged(t *testing.T) {
	requireStrace(t)
	for _, mode := range walModes {
		t.Run(mode.name, func(t *testing.T) {
			mode.require(t)
			testAppendFailedSync(t, mode.suffix)
		})
	}
}

func testAppendFailedSync(t *testing.T, suffix string) {
	dir := t.TempDir()
	clean := runTraced(t, "appends"+suffix, filepath.Join(dir, "clean.db"))
	syncs := 0
	for _, c := range clean.calls {
		if c.name == "fdatasync" {
			syncs++
		}
	}
	require.GreaterOrEqual(t, syncs, childAppendCount, "the appends never fdatasync")
	for n := 1; n <= syncs; n++ {
		t.Run(fmt.Sprintf("fail=%d", n), func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("events-%d.db", n))
			durable := path
			if suffix != "" {
				durable = path + "-wal"
			}
			tr := runTraced(t, "appends"+suffix, path, "-e", fmt.Sprintf("inject=fdatasync:error=EIO:when=%d", n))
			fault := -1
			for i, c := range tr.calls {
				if c.injected() {
					fault = i
					break
				}
			}
			if fault < 0 {
				tr.dump(t)
				t.Fatalf("fdatasync %d of %d was never called: the fault was not reached", n, syncs)
			}
			lines := tr.lines()
			if len(lines) == 1 && lines[0] == "openerr" {
				require.Equal(t, -1, tr.index("append-0"))
				require.Greater(t, fault, tr.index("open"), "Open failed without a fault")
				return
			}
			require.Len(t, lines, childAppendCount, "child output %q", lines)
			for i, line := range lines {
				start, end := tr.index(fmt.Sprintf("append-%d", i)), tr.index(fmt.Sprintf("answered-%d", i))
				require.True(t, start >= 0 && end > start, "append %d not marked", i)
				switch {
				case line == fmt.Sprintf("ok %d", i):
					if fault < end {
						tr.dump(t)
						t.Fatalf("append %d acknowledged at or after the failed fdatasync %d", i, n)
					}
					if ok, why := syncedAfterLastWrite(tr.calls[start+1:end], durable); !ok {
						tr.dump(t)
						t.Fatalf("append %d acknowledged, but %s", i, why)
					}
				case fault > start && fault < end:
					require.Equal(t, fmt.Sprintf("err %d unknown=true", i), line, "the append whose sync failed")
				case fault < start:
					require.Equal(t, fmt.Sprintf("err %d unknown=false", i), line, "an append after the failed one (ErrNeedsReopen)")
				default:
					t.Fatalf("append %d failed before the fault: %s", i, line)
				}
			}
		})
	}
}

// TestSubscribe_FailedSyncNeverYielded fails each sync of a child's run in
// turn (fdatasync answers EIO, injected by strace) while a live
// subscription runs, which in log mode reads the group commits from the
// live tail: it yields the events of every acknowledged append, and never
// those of the append whose sync failed.
func TestSubscribe_FailedSyncNeverYielded(t *testing.T) {
	requireStrace(t)
	for _, mode := range walModes {
		t.Run(mode.name, func(t *testing.T) {
			mode.require(t)
			dir := t.TempDir()
			clean := runTraced(t, "subscribed"+mode.suffix, filepath.Join(dir, "clean.db"))
			require.Equal(t, fmt.Sprintf("seen %d acked %d", 2*childAppendCount, 2*childAppendCount), clean.lines()[len(clean.lines())-1])
			syncs := 0
			for _, c := range clean.calls {
				if c.name == "fdatasync" {
					syncs++
				}
			}
			require.GreaterOrEqual(t, syncs, childAppendCount, "the appends never fdatasync")
			failed := 0 // the runs whose fault failed an append
			defer func() { require.NotZero(t, failed, "no fault failed an append") }()
			for n := 1; n <= syncs; n++ {
				t.Run(fmt.Sprintf("fail=%d", n), func(t *testing.T) {
					tr := runTraced(t, "subscribed"+mode.suffix, filepath.Join(dir, fmt.Sprintf("events-%d.db", n)),
						"-e", fmt.Sprintf("inject=fdatasync:error=EIO:when=%d", n))
					fault := slices.IndexFunc(tr.calls, call.injected)
					if fault < 0 {
						tr.dump(t)
						t.Fatalf("fdatasync %d of %d was never called: the fault was not reached", n, syncs)
					}
					lines := tr.lines()
					if len(lines) == 1 && lines[0] == "openerr" {
						return
					}
					require.Len(t, lines, childAppendCount+1, "child output %q", lines)
					oks := 0
					for _, line := range lines[:childAppendCount] {
						if strings.HasPrefix(line, "ok ") {
							oks++
						}
					}
					if fault < tr.index(fmt.Sprintf("answered-%d", childAppendCount-1)) {
						require.Less(t, oks, childAppendCount, "the fault came during the appends, yet none failed: %q", lines)
						failed++
					} // else: a sync of Close's checkpoint
					require.Equal(t, fmt.Sprintf("seen %d acked %d", 2*oks, 2*oks), lines[childAppendCount])
				})
			}
		})
	}
}

// TestOpen_SyncsDirectoryOfNewFile requires an fsync of the directory
// after Open created the file and before the first append is
// acknowledged, and none when Open finds the file there.
func TestOpen_SyncsDirectoryOfNewFile(t *testing.T) {
	requireStrace(t)
	for _, mode := range walModes {
		t.Run(mode.name, func(t *testing.T) {
			mode.require(t)
			testSyncsDirectory(t, mode.suffix)
		})
	}
}

func testSyncsDirectory(t *testing.T, suffix string) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.db")
	tr := runTraced(t, "reopen"+suffix, path)
	require.Equal(t, []string{"done"}, tr.lines())
	dirSyncs := func(calls []call) (n int) {
		for _, c := range calls {
			if c.isSync() && c.file == dir && !c.failed() {
				n++
			}
		}
		return n
	}
	if dirSyncs(tr.between(t, "open-new", "acked")) == 0 {
		tr.dump(t)
		t.Fatalf("no fsync of %s between creating the file and acknowledging the first append", dir)
	}
	if n := dirSyncs(tr.between(t, "open-existing", "opened")); n != 0 {
		tr.dump(t)
		t.Fatalf("%d fsyncs of the directory when opening an existing file", n)
	}
}

// TestOpen_ExistingFileReadFromDisk checks the order of Open's syscalls on
// an existing file: lock it, fdatasync it, drop the cached copy of its meta
// pages (fadvise DONTNEED), and only then read it (pread, mmap).
func TestOpen_ExistingFileReadFromDisk(t *testing.T) {
	requireStrace(t)
	for _, mode := range walModes {
		t.Run(mode.name, func(t *testing.T) {
			mode.require(t)
			testReadFromDisk(t, mode.suffix)
		})
	}
}

func testReadFromDisk(t *testing.T, suffix string) {
	path := filepath.Join(t.TempDir(), "events.db")
	tr := runTraced(t, "reopen"+suffix, path)
	require.Equal(t, []string{"done"}, tr.lines())
	var steps []string
	for _, c := range tr.between(t, "open-existing", "opened") {
		if c.file != path || c.failed() {
			continue
		}
		switch {
		case c.name == "flock" && strings.Contains(c.args, "LOCK_EX"):
			if !slices.Contains(steps, "lock") { // bbolt locks again: a no-op
				steps = append(steps, "lock")
			}
		case c.name == "fdatasync":
			steps = append(steps, "sync")
		case c.name == "fadvise64" && strings.Contains(c.args, "POSIX_FADV_DONTNEED"):
			// fadvise64(fd, offset, len, advice): the range must
			// hold both meta pages (len 0 means to the end).
			var off, n int64
			_, err := fmt.Sscanf(c.args[strings.Index(c.args, ">, ")+3:], "%d, %d,", &off, &n)
			require.NoError(t, err, "fadvise64(%s)", c.args)
			if off == 0 && (n == 0 || n >= 2*int64(os.Getpagesize())) {
				steps = append(steps, "drop")
			}
		case c.name == "pread64" || c.name == "mmap":
			steps = append(steps, "read")
		}
	}
	// Before bbolt reads a byte, the file is locked, synced and dropped
	// from the cache, in that order.
	want := []string{"lock", "sync", "drop", "read"}
	if len(steps) < len(want) || !slices.Equal(steps[:len(want)], want) {
		tr.dump(t)
		t.Fatalf("Open of an existing file did %v, want %v first", steps, want)
	}
}

// TestStore_RetryAfterFailedSyncIsSynced follows the documented recovery
// from a failed fdatasync (strace injects EIO into each sync of the first
// attempt in turn): close, open again, retry the same append. The retry
// may find the events stored, but it must not acknowledge them before a
// successful sync of the file after the failure and after its own writes:
// what the failed commit wrote may never have reached the disk.
func TestStore_RetryAfterFailedSyncIsSynced(t *testing.T) {
	requireStrace(t)
	for _, mode := range walModes {
		t.Run(mode.name, func(t *testing.T) {
			mode.require(t)
			testRetryAfterFailedSync(t, mode.suffix)
		})
	}
}

// syncedAfter reports whether, in calls, the file was synced successfully
// after its last write, or after the start when it was not written.
func syncedAfter(calls []call, file string) bool {
	synced := false
	for _, c := range calls {
		switch {
		case c.file != file:
		case c.name == "pwrite64":
			synced = false
		case c.isSync() && !c.failed():
			synced = true
		}
	}
	return synced
}

func testRetryAfterFailedSync(t *testing.T, suffix string) {
	ctx := context.Background()
	dir := t.TempDir()
	newStore := func(t *testing.T, path string) {
		t.Helper()
		s, err := bolt.Open(path, &bolt.Options{NoWAL: suffix == ""})
		require.NoError(t, err)
		_, err = s.Append(ctx, childEvents("before", 2)...)
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
	// The syncs of an attempt that succeeds: fail each in turn.
	path := filepath.Join(dir, "clean.db")
	newStore(t, path)
	clean := runTraced(t, "retry"+suffix, path)
	require.Equal(t, []string{"ok"}, clean.lines())
	syncs := 0
	for _, c := range clean.calls[:clean.index("acked")] { // Close syncs too, with the log
		if c.name == "fdatasync" {
			syncs++
		}
	}
	require.NotZero(t, syncs, "the append never fdatasyncs")
	for n := 1; n <= syncs; n++ {
		t.Run(fmt.Sprintf("fail=%d", n), func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("events-%d.db", n))
			newStore(t, path)
			tr := runTraced(t, "retry"+suffix, path, "-e", fmt.Sprintf("inject=fdatasync:error=EIO:when=%d", n))
			lines := tr.lines()
			require.NotEmpty(t, lines)
			require.Equal(t, "ok", lines[len(lines)-1], "the retry never succeeded: %q", lines)
			lastFault, acked := -1, tr.index("acked")
			for i, c := range tr.calls[:acked] {
				if c.injected() {
					lastFault = i
				}
			}
			if lastFault < 0 {
				tr.dump(t)
				t.Fatalf("fdatasync %d was never called: the fault was not reached", n)
			}
			require.Greater(t, len(lines), 1, "a sync failed, yet the first attempt succeeded: %q", lines)
			if suffix != "" {
				// With the log: a retry that wrote a record synced
				// the log after it; one that found its events (put
				// back by the replay of Open) synced the store's file
				// after the last write.
				after := tr.calls[lastFault+1 : acked]
				durable := path
				for _, c := range after {
					if c.file == path+"-wal" && c.name == "pwrite64" {
						durable = path + "-wal"
					}
				}
				if !syncedAfter(after, durable) {
					tr.dump(t)
					t.Fatalf("the retry was acknowledged (%q) without a successful sync after the failed one", lines)
				}
			} else if !syncedAfter(tr.calls[lastFault+1:acked], path) {
				// After the failure: the last write before the
				// acknowledgement (if any), then a successful sync.
				tr.dump(t)
				t.Fatalf("the retry was acknowledged (%q) without a successful sync of the file after the failed one", lines)
			}

			// And the file holds the events once.
			s, err := bolt.Open(path, nil)
			require.NoError(t, err)
			defer s.Close()
			require.NoError(t, s.Check(ctx))
			got, err := eventstore.Collect(s.ReadAll(ctx, 0))
			require.NoError(t, err)
			require.Len(t, got, 5)
		})
	}
}
