package bolt_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// projectKillEnv names the file the child process of TestProject_Kill
// appends to and projects; projectKillsEnv raises the number of kills.
const (
	projectKillEnv  = "EVENTSTORE_BOLT_PROJECT_CHILD"
	projectKillsEnv = "EVENTSTORE_BOLT_PROJECT_KILLS"
)

// The projection of the kill test's child.
var killFilter = eventstore.Filter{Types: []string{"Deposited", "Withdrawn"}, AggregatePrefix: "acct-"}

// TestProject_Kill kills, with SIGKILL, a process that appends events and
// projects them (countHandler: each event's ID and a count per aggregate),
// at random moments: after a random sleep, or right after its handler
// reported handling some event, that is inside a batch's transaction.
// After each kill it opens the file and checks that the read model holds
// exactly the selected events up to the checkpoint, each handled once,
// and that Check passes. The child is this test binary, run again.
//
// It kills 50 times, or $EVENTSTORE_BOLT_PROJECT_KILLS.
func TestProject_Kill(t *testing.T) {
	if path := os.Getenv(projectKillEnv); path != "" {
		projectKillChild(path)
		return
	}
	kills := 50
	if v := os.Getenv(projectKillsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a number of kills", projectKillsEnv, v)
		}
		kills = n
	} else if testing.Short() {
		kills = 10
	}
	path := filepath.Join(t.TempDir(), "events.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var prevCP uint64
	moved, inTx := 0, 0
	for i := range kills {
		var killAfter int // kill after this many handled events; 0: after a sleep
		var sleep time.Duration
		if rng.IntN(2) == 0 {
			killAfter = 1 + rng.IntN(400)
		} else {
			sleep = time.Duration(rng.IntN(60_000)) * time.Microsecond
		}
		maxHandled := runProjectKillChild(t, path, killAfter, sleep)

		s, err := bolt.Open(path, &bolt.Options{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("kill %d: reopen: %v", i, err)
		}
		if err := s.Check(context.Background()); err != nil {
			s.Close()
			t.Fatalf("kill %d: check: %v", i, err)
		}
		_, cp := verifyReadModel(t, s, "counter", killFilter)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.Fatalf("kill %d (checkpoint %d)", i, cp)
		}
		if cp < prevCP {
			t.Fatalf("kill %d: checkpoint went back from %d to %d", i, prevCP, cp)
		}
		if cp > prevCP {
			moved++
		}
		// The child handled an event past the checkpoint it left: the kill
		// landed inside the transaction of that event's batch, which was
		// rolled back.
		if maxHandled > cp {
			inTx++
		}
		prevCP = cp
	}
	t.Logf("%d kills: the checkpoint moved during %d lives (up to %d); %d kills landed inside a batch's transaction, after its handler ran", kills, moved, prevCP, inTx)
	if kills >= 20 && (moved == 0 || inTx == 0) {
		t.Fatalf("the kills did not exercise the projection: checkpoint moved %d times, %d kills inside a transaction", moved, inTx)
	}
}

// runProjectKillChild starts a child on path and kills it after it handled
// killAfter events, or when killAfter is 0, sleep after it is ready. It
// returns the highest position the child reported handling.
func runProjectKillChild(t *testing.T, path string, killAfter int, sleep time.Duration) uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProject_Kill$", "-test.count=1")
	cmd.Env = append(os.Environ(), projectKillEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	ready := false
	for !ready && lines.Scan() {
		ready = lines.Text() == "ready"
	}
	if !ready {
		cmd.Wait()
		t.Fatalf("child did not start: %v", lines.Err())
	}
	kill := func() { cmd.Process.Signal(syscall.SIGKILL) }
	// A kill after a sleep, or at the latest after 10s.
	if killAfter == 0 {
		defer time.AfterFunc(sleep, kill).Stop()
	} else {
		defer time.AfterFunc(10*time.Second, kill).Stop()
	}
	var maxHandled uint64
	handled := 0
	for lines.Scan() {
		// "h <position>", for each event handled. A line cut short by the
		// kill may be the last one: it only lowers maxHandled.
		var p uint64
		if n, _ := fmt.Sscanf(lines.Text(), "h %d", &p); n == 1 {
			maxHandled = max(maxHandled, p)
			if handled++; handled == killAfter {
				kill()
			}
		}
	}
	err = cmd.Wait()
	status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !status.Signaled() {
		t.Fatalf("child was not killed: %v", err)
	}
	return maxHandled
}

// projectKillChild appends and projects until killed, printing each event
// its handler handled.
func projectKillChild(path string) {
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "project kill child: "+format+"\n", args...)
		os.Exit(2)
	}
	s, err := bolt.Open(path, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		fail("%v", err)
	}
	ctx := context.Background()
	fmt.Fprintln(os.Stdout, "ready") // os.Stdout is unbuffered: one write per line
	for g := range 2 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(g)))
			for {
				agg := fmt.Sprintf("acct-%d", rng.IntN(10))
				if rng.IntN(4) == 0 {
					agg = fmt.Sprintf("other-%d", rng.IntN(3))
				}
				events := make([]eventstore.Event, 1+rng.IntN(4))
				for i := range events {
					events[i] = eventstore.Event{
						AggregateID: agg,
						Type:        []string{"Deposited", "Withdrawn", "Noted"}[rng.IntN(3)],
						Payload:     []byte(fmt.Sprintf(`{"amount":%d}`, rng.IntN(1000))),
					}
				}
				if _, err := s.Append(ctx, events...); err != nil {
					fail("append: %v", err)
				}
			}
		}()
	}
	err = s.Project(ctx, "counter", killFilter, func(tx *bolt.ProjectTx, e eventstore.Event) error {
		if err := countHandler(tx, e); err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, "h %d\n", e.Position)
		return nil
	})
	fail("project: %v", err)
}
