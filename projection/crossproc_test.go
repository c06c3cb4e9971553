//go:build unix

package projection_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/postgres"
	"github.com/eventstore-go/eventstore/projection"
)

// The child processes of TestRun_KilledRunner: each runs one projection
// over a PostgreSQL schema under a flock, and logs what it does to a file
// shared with the parent.
const (
	envChild  = "PROJECTION_TEST_CHILD" // the child's ID, "A" or "B"
	envSchema = "PROJECTION_TEST_SCHEMA"
	envLock   = "PROJECTION_TEST_LOCK" // the flock file
	envLog    = "PROJECTION_TEST_LOG"  // the shared log: "<ID> locked|handled <pos>|saved <pos>"
)

func TestMain(m *testing.M) {
	if id := os.Getenv(envChild); id != "" {
		child(id)
		return
	}
	os.Exit(m.Run())
}

// flockLocker is a Locker over flock(2) on a file per name: a real lock
// between processes, which the kernel releases when its holder dies.
type flockLocker struct {
	path    string
	onLock  func()
	pollGap time.Duration
}

func (l flockLocker) LockProjection(ctx context.Context, name string) (context.Context, func(), error) {
	f, err := os.OpenFile(l.path+"."+name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK {
			f.Close()
			return nil, nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, nil, ctx.Err()
		case <-time.After(l.pollGap):
		}
	}
	if l.onLock != nil {
		l.onLock()
	}
	held, cancel := context.WithCancel(context.Background()) // a flock is lost only with its process
	var once sync.Once
	return held, func() {
		once.Do(func() {
			cancel()
			f.Close() // releases the flock
		})
	}, nil
}

// storeLocker is the store's own Locker (what Run uses when
// Options.Locker is nil), reporting when it holds the lock.
type storeLocker struct {
	s      *postgres.Store
	onLock func()
}

func (l storeLocker) LockProjection(ctx context.Context, name string) (context.Context, func(), error) {
	held, release, err := l.s.LockProjection(ctx, name)
	if err == nil {
		l.onLock()
	}
	return held, release, err
}

func child(id string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child", id+":", err)
		os.Exit(2)
	}
	logf, err := os.OpenFile(os.Getenv(envLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fail(err)
	}
	say := func(format string, args ...any) {
		// One write per line: O_APPEND keeps lines of several processes whole.
		if _, err := logf.WriteString(id + " " + fmt.Sprintf(format, args...) + "\n"); err != nil {
			fail(err)
		}
	}
	s, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: os.Getenv(envSchema), RequireSchema: true})
	if err != nil {
		fail(err)
	}
	fmt.Println("ready")
	p := projection.Projection{Name: "killed", Handle: func(ctx context.Context, e eventstore.Event) error {
		say("handled %d", e.Position)
		time.Sleep(5 * time.Millisecond) // a read model that takes a while
		return nil
	}}
	// With no flock file the lock is the store's own: PostgreSQL's advisory
	// lock, the one Run takes when Options.Locker is nil.
	var locker projection.Locker = storeLocker{s: s, onLock: func() { say("locked") }}
	if path := os.Getenv(envLock); path != "" {
		locker = flockLocker{path: path, onLock: func() { say("locked") }, pollGap: 10 * time.Millisecond}
	}
	err = projection.Run(ctx, s, s, p, &projection.Options{
		BatchSize:    10,
		IdleInterval: 50 * time.Millisecond,
		Locker:       locker,
		Progress:     func(pr projection.Progress) { say("saved %d", pr.Checkpoint) },
	})
	fail(fmt.Errorf("Run returned: %v", err))
}

// childLog is the shared log, parsed.
type childLog struct {
	lines []string
}

func readLog(t *testing.T, path string) childLog {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	text := string(b)
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[:i] // a line still being written is not a line yet
	} else {
		text = ""
	}
	var l childLog
	if text != "" {
		l.lines = strings.Split(text, "\n")
	}
	return l
}

// positions returns the positions that id logged with verb ("handled" or
// "saved"), in order, from the lines in [from, to).
func (l childLog) positions(id, verb string, from, to int) []uint64 {
	var ps []uint64
	for _, line := range l.lines[from:to] {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id && f[1] == verb {
			p, _ := strconv.ParseUint(f[2], 10, 64)
			ps = append(ps, p)
		}
	}
	return ps
}

func (l childLog) index(line string) int {
	for i, x := range l.lines {
		if x == line {
			return i
		}
	}
	return -1
}

// startChild starts the test binary as child id and waits until it has
// opened the store.
func startChild(t *testing.T, id, schema, lock, logPath string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+id, envSchema+"="+schema, envLock+"="+lock, envLog+"="+logPath)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child %s did not start: %q %s", id, line, stderr.String())
	}
	return cmd
}

// TestRun_KilledRunner runs one projection in two processes that share a
// PostgreSQL store and a lock: A holds the lock, B waits as a standby. A
// is killed with SIGKILL mid-stream; B takes over from A's checkpoint, and
// in the end every event was handled at least once, the read model is
// complete, and B handled nothing while A held the lock. It runs with a
// flock, and with the store's own lock (PostgreSQL's advisory lock, which
// the server releases when A's session dies).
func TestRun_KilledRunner(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	t.Run("flock", func(t *testing.T) { testKilledRunner(t, true) })
	t.Run("advisory", func(t *testing.T) { testKilledRunner(t, false) })
}

func testKilledRunner(t *testing.T, flock bool) {
	schema := pgtest.FreshSchema(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	lock, logPath := filepath.Join(dir, "lock"), filepath.Join(dir, "log")
	if !flock {
		lock = ""
	}
	appendN(t, s, 150, "Happened")

	a := startChild(t, "A", schema, lock, logPath)
	eventually(t, "A holds the lock", func() bool { return readLog(t, logPath).index("A locked") >= 0 })
	startChild(t, "B", schema, lock, logPath)
	appendN(t, s, 50, "Happened") // live, while A runs
	eventually(t, "A handled 65 events and saved a checkpoint", func() bool {
		l := readLog(t, logPath)
		return len(l.positions("A", "handled", 0, len(l.lines))) >= 65 && len(l.positions("A", "saved", 0, len(l.lines))) > 0
	})

	// Two marks in the log: KILLING before the signal (B must log nothing
	// before it), KILLED once A is gone (A logs nothing after it). B may
	// take the lock between the two: the kernel or the server frees it as
	// A dies, before this process learns of it.
	mark := func(line string) {
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(line + "\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	mark("KILLING A")
	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait() // A has written its last line
	mark("KILLED A")

	appendN(t, s, 50, "Happened")
	eventually(t, "B handled the last event, 250", func() bool {
		l := readLog(t, logPath)
		ps := l.positions("B", "handled", 0, len(l.lines))
		return len(ps) > 0 && ps[len(ps)-1] == 250
	})
	eventually(t, "the checkpoint reaches 250", func() bool { return checkpoint(t, s, "killed") == 250 })

	l := readLog(t, logPath)
	killing, killed := l.index("KILLING A"), l.index("KILLED A")
	for _, line := range l.lines[:killing] {
		if strings.HasPrefix(line, "B ") {
			t.Fatalf("B logged %q before A was killed", line)
		}
	}
	if n := len(l.positions("A", "handled", killed, len(l.lines))); n > 0 {
		t.Fatalf("A handled %d events after it was killed", n)
	}
	if l.index("B locked") < killing {
		t.Fatal("B did not take the lock after A was killed")
	}
	handledA := l.positions("A", "handled", 0, killed)
	savedA := l.positions("A", "saved", 0, killed)
	handledB := l.positions("B", "handled", killing, len(l.lines))
	lastA, lastSavedA, firstB := handledA[len(handledA)-1], savedA[len(savedA)-1], handledB[0]
	t.Logf("A handled 1-%d and saved %d; B resumed at %d", lastA, lastSavedA, firstB)

	// B resumed from A's checkpoint: at the last one A logged or a later
	// one (A may have saved and died before logging it), never past what A
	// handled. Only the events between are handled twice.
	requireExactly(t, handledA, seq(1, lastA))
	if firstB < lastSavedA+1 || firstB > lastA+1 {
		t.Fatalf("B started at %d, want between A's checkpoint %d + 1 and A's last event %d + 1", firstB, lastSavedA, lastA)
	}
	requireExactly(t, handledB, seq(firstB, 250))
	// The read model is complete: every event handled at least once.
	seen := map[uint64]bool{}
	for _, p := range append(handledA, handledB...) {
		seen[p] = true
	}
	if len(seen) != 250 {
		t.Fatalf("%d distinct events handled, want 250", len(seen))
	}
}
