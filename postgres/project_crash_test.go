package postgres_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/postgres"
)

// projectChildEnv names the schema a projecting child process runs in.
const projectChildEnv = "EVENTSTORE_POSTGRES_PROJECT_CHILD"

// crashProjection is the projection the child processes run.
const crashProjection = "crash"

// TestProjectChild is the child process of the tests below: this test
// binary run again, with projectChildEnv set. It runs the projection
// crashProjection into the schema's read model until it is killed. Run
// alone, it does nothing.
func TestProjectChild(t *testing.T) {
	schema := os.Getenv(projectChildEnv)
	if schema == "" {
		t.Skip("the child process of TestProject_Takeover and TestProject_Killed")
	}
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: schema})
	if err != nil {
		fmt.Fprintln(os.Stderr, "project child:", err)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stdout, "ready") // os.Stdout is unbuffered: one write per line
	err = s.Project(ctx, crashProjection, selected, apply(table(s, "readmodel")))
	fmt.Fprintln(os.Stderr, "project child: Project returned:", err)
	os.Exit(3)
}

// child is a projecting child process.
type child struct {
	cmd  *exec.Cmd
	app  string // its application_name
	done chan struct{}
}

// startChild starts a child projecting in s's schema, with application
// name app, and waits until it has opened its store. It is killed when
// the test ends.
func startChild(t *testing.T, s *postgres.Store, app string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProjectChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), projectChildEnv+"="+s.Schema(), "PGAPPNAME="+app)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd, app: app, done: make(chan struct{})}
	lines := bufio.NewScanner(out)
	ready := false
	for !ready && lines.Scan() {
		ready = lines.Text() == "ready"
	}
	go func() {
		for lines.Scan() {
		}
		cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.kill(t) })
	if !ready {
		t.Fatalf("child %s did not start", app)
	}
	return c
}

// kill kills the child with SIGKILL and waits for it to exit.
func (c *child) kill(t *testing.T) {
	c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		t.Errorf("child %s did not exit after SIGKILL", c.app)
	}
}

// exited reports whether the child has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// holderApp returns the application_name of the session that holds the
// lock of projection name in schema, or "" when none does.
func holderApp(t *testing.T, schema, name string) string {
	t.Helper()
	key := uint64(postgres.ProjectionLockKey(schema, name))
	var app string
	err := pgtest.Admin(t).QueryRow(context.Background(), `SELECT coalesce(max(a.application_name), '') FROM pg_locks l
		JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1 AND l.granted`,
		int64(key>>32), int64(key&0xffffffff)).Scan(&app)
	require.NoError(t, err)
	return app
}

// appendUntil appends mixed batches from a goroutine until the returned
// stop is called, which returns the head.
func appendUntil(t *testing.T, s *postgres.Store, pause time.Duration) (stop func() uint64) {
	t.Helper()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-quit:
				return
			case <-time.After(pause):
			}
			if _, err := tryAppendMixed(s, 10); err != nil {
				t.Errorf("append: %v", err)
				return
			}
		}
	})
	var once sync.Once
	stop = func() uint64 {
		once.Do(func() { close(quit); wg.Wait() })
		head, err := s.Head(context.Background())
		require.NoError(t, err)
		return head
	}
	t.Cleanup(func() { stop() })
	return stop
}

// Two processes run the same projection: one runs, the other waits. When
// the runner is SIGKILLed mid-stream, the standby takes over from the
// checkpoint within a few seconds, and in the end every selected event is
// in the read model once.
func TestProject_Takeover(t *testing.T) {
	s := mustOpen(t, nil)
	tbl := readModel(t, s)
	appendMixed(t, s, 300)
	stopAppends := appendUntil(t, s, 10*time.Millisecond)
	children := map[string]*child{}
	for _, app := range []string{"projchild-1", "projchild-2"} {
		children[app] = startChild(t, s, app)
	}
	waitFor(t, "a runner to hold the lock", func() bool { return holderApp(t, s.Schema(), crashProjection) != "" })
	waitCheckpoint(t, s, crashProjection, 1)
	runner := children[holderApp(t, s.Schema(), crashProjection)]
	var standby *child
	for app, c := range children {
		if app != runner.app {
			standby = c
		}
	}

	runner.kill(t)
	killed := time.Now()
	atKill, err := s.LoadCheckpoint(context.Background(), crashProjection)
	require.NoError(t, err)
	waitFor(t, "the standby to take the lock", func() bool { return holderApp(t, s.Schema(), crashProjection) == standby.app })
	tookLock := time.Since(killed)
	waitCheckpoint(t, s, crashProjection, atKill+1)
	tookBatch := time.Since(killed)
	t.Logf("the standby held the lock %v after the SIGKILL, and committed a batch after %v", tookLock, tookBatch)
	require.Less(t, tookLock, 30*time.Second, "takeover within a few seconds (generous bound for a loaded machine)")
	checkReadModel(t, s, tbl, crashProjection)

	head := stopAppends()
	require.Equal(t, head, waitCheckpoint(t, s, crashProjection, head))
	require.Equal(t, head, checkReadModel(t, s, tbl, crashProjection))
	require.False(t, standby.exited(), "the standby still runs")
}

// A projecting process SIGKILLed at random moments, while events are
// appended, never leaves the read model and its checkpoint apart: after
// each kill the read model holds exactly the selected events up to the
// checkpoint, each once, and the next process resumes from there.
func TestProject_Killed(t *testing.T) {
	const kills = 12
	s := mustOpen(t, nil)
	tbl := readModel(t, s)
	appendMixed(t, s, 2000)
	stopAppends := appendUntil(t, s, 5*time.Millisecond)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	var cp uint64
	moved := 0
	for i := range kills {
		c := startChild(t, s, fmt.Sprint("projchild-", i))
		time.Sleep(time.Duration(rng.IntN(600_000)) * time.Microsecond)
		c.kill(t)
		next := checkReadModel(t, s, tbl, crashProjection)
		require.GreaterOrEqual(t, next, cp, "the checkpoint never goes back")
		if next > cp {
			moved++
		}
		cp = next
	}
	t.Logf("%d kills, %d of them after the checkpoint moved; checkpoint %d", kills, moved, cp)

	head := stopAppends()
	startChild(t, s, "projchild-last")
	require.Equal(t, head, waitCheckpoint(t, s, crashProjection, head))
	require.Equal(t, head, checkReadModel(t, s, tbl, crashProjection))
}
