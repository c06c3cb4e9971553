package bolt_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
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
	"github.com/eventstore-go/eventstore/bolt"
)

var crashIterations = flag.Int("crash.iterations", 100, "how many times TestCrash kills a writer")

// crashEnv names the file the child process of TestCrash appends to;
// crashWALEnv, when set, has the child use the write-ahead log.
const (
	crashEnv    = "EVENTSTORE_BOLT_CRASH_CHILD"
	crashWALEnv = "EVENTSTORE_BOLT_CRASH_WAL"
)

// TestCrash kills a process that appends durably with SIGKILL at random
// moments, then checks the file: every acknowledged event is there, no
// append is partly stored, positions are 1..N, and every index agrees with
// the events (Store.Check). The child is this test binary, run again.
//
// With the write-ahead log, the child checkpoints every 32 KiB of log, so
// that kills land before, during and after checkpoints too; the file is
// opened after each kill with the log off, which replays the log all the
// same.
func TestCrash(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path, os.Getenv(crashWALEnv) != "")
		return
	}
	for _, wal := range []bool{false, true} {
		t.Run(fmt.Sprintf("WAL=%v", wal), func(t *testing.T) {
			if wal {
				bolt.RequireWAL(t)
			}
			iterations := *crashIterations
			if testing.Short() {
				iterations = min(iterations, 10)
			}
			path := filepath.Join(t.TempDir(), "events.db")
			acked := make(map[string]ack) // batch ID -> what the child was told
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
			for i := range iterations {
				runCrashChild(t, path, wal, time.Duration(rng.IntN(80_000))*time.Microsecond, acked)
				verifyCrash(t, path, acked)
				if t.Failed() {
					t.Fatalf("iteration %d (%d acknowledged appends so far)", i, len(acked))
				}
			}
			t.Logf("%d kills, %d acknowledged appends", iterations, len(acked))
		})
	}
}

// ack is an acknowledged append.
type ack struct {
	first uint64 // position of its first event
	n     int
}

// startCrashChild starts this test binary as a crash child appending to
// path, and returns it with a scanner on its standard output.
func startCrashChild(t *testing.T, path string, wal bool) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	if wal {
		cmd.Env = append(cmd.Env, crashWALEnv+"=1")
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

// runCrashChild starts a child appending to path, kills it delay after it
// is ready, and records the appends it acknowledged.
func runCrashChild(t *testing.T, path string, wal bool, delay time.Duration, acked map[string]ack) {
	t.Helper()
	cmd, lines := startCrashChild(t, path, wal)
	ready := false
	for !ready && lines.Scan() {
		ready = lines.Text() == "ready"
	}
	if !ready {
		cmd.Wait()
		t.Fatalf("child did not start: %v", lines.Err())
	}
	timer := time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
	defer timer.Stop()
	for lines.Scan() {
		// "ack <batch> <first position> <events>". A line cut short by
		// the kill lacks fields (Sscanf counts them) or is the last one;
		// either way its append is merely not counted as acknowledged.
		var batch string
		var a ack
		if n, _ := fmt.Sscanf(lines.Text(), "ack %s %d %d", &batch, &a.first, &a.n); n == 3 {
			acked[batch] = a
		}
	}
	err := cmd.Wait()
	status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !status.Signaled() {
		t.Fatalf("child was not killed: %v", err)
	}
}

// crashChild appends until killed, printing each acknowledged append.
func crashChild(path string, wal bool) {
	if wal {
		bolt.SetWALLimit(32 << 10)
	}
	s, err := bolt.Open(path, &bolt.Options{Timeout: 10 * time.Second, NoWAL: !wal})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	pid := strconv.Itoa(os.Getpid())
	var mu sync.Mutex
	fmt.Fprintln(os.Stdout, "ready") // os.Stdout is unbuffered: one write per line
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(g)))
			for k := 0; ; k++ {
				batch := fmt.Sprintf("%s-%d-%d", pid, g, k)
				n := 1 + rng.IntN(5)
				agg := fmt.Sprintf("agg-%d", rng.IntN(20))
				events := make([]eventstore.Event, n)
				for i := range events {
					events[i] = eventstore.Event{
						AggregateID: agg,
						Type:        fmt.Sprintf("Type%d", rng.IntN(3)),
						Payload:     []byte(fmt.Sprintf(`{"batch":%q,"i":%d,"pad":%q}`, batch, i, strings.Repeat("x", rng.IntN(300)))),
						Metadata:    map[string]string{"batch": batch, "size": strconv.Itoa(n)},
					}
				}
				stored, err := s.Append(context.Background(), events...)
				if err != nil {
					fmt.Fprintln(os.Stderr, "crash child: append:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ack %s %d %d\n", batch, stored[0].Position, len(stored))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// verifyCrash opens the file the child left and checks it.
func verifyCrash(t *testing.T, path string, acked map[string]ack) {
	t.Helper()
	ctx := context.Background()
	s, err := bolt.Open(path, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check after kill: %v", err)
	}

	// Positions are 1..N, and each stored append is whole.
	type seen struct {
		first uint64
		n     int
		size  int
	}
	batches := make(map[string]*seen)
	var last uint64
	for e, err := range s.ReadAll(ctx, 0) {
		if err != nil {
			t.Fatalf("read after kill: %v", err)
		}
		if e.Position != last+1 {
			t.Fatalf("position %d follows %d", e.Position, last)
		}
		last = e.Position
		id := e.Metadata["batch"]
		b := batches[id]
		if b == nil {
			size, _ := strconv.Atoi(e.Metadata["size"])
			b = &seen{first: e.Position, size: size}
			batches[id] = b
		}
		if e.Position != b.first+uint64(b.n) {
			t.Fatalf("append %s is not contiguous at position %d", id, e.Position)
		}
		b.n++
	}
	for id, b := range batches {
		if b.n != b.size {
			t.Errorf("append %s is partial: %d of %d events", id, b.n, b.size)
		}
	}
	// Every acknowledged append is there, where the child was told.
	for id, a := range acked {
		b := batches[id]
		if b == nil {
			t.Errorf("acknowledged append %s lost", id)
			continue
		}
		if b.first != a.first || b.n != a.n {
			t.Errorf("acknowledged append %s at %d (%d events), stored at %d (%d)", id, a.first, a.n, b.first, b.n)
		}
	}
}

// TestOpen_ErrLockedOtherProcess opens a file that another process holds.
func TestOpen_ErrLockedOtherProcess(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("in the crash child")
	}
	path := filepath.Join(t.TempDir(), "events.db")
	cmd, lines := startCrashChild(t, path, false)
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}()
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("child did not start: %v", lines.Err())
	}
	go func() {
		for lines.Scan() { // keep the child's pipe flowing
		}
	}()

	start := time.Now()
	s, err := bolt.Open(path, &bolt.Options{Timeout: 300 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("opened a file another process holds")
	}
	if !errors.Is(err, eventstore.ErrLocked) {
		t.Fatalf("got %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v to fail", d)
	}
}
