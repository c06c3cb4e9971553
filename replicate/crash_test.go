package replicate_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/postgres"
	"github.com/eventstore-go/eventstore/replicate"
)

// The child process of TestCopy_Killed: it appends to the source and
// follows it into the destination until it is killed.
const (
	envChild  = "REPLICATE_TEST_CHILD"
	envSrc    = "REPLICATE_TEST_SRC"
	envDst    = "REPLICATE_TEST_DST"    // a bolt file, or "postgres:<schema>"
	envOrigin = "REPLICATE_TEST_ORIGIN" // the origin metadata
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		child()
		return
	}
	os.Exit(m.Run())
}

func testDSN() string {
	if dsn := os.Getenv("EVENTSTORE_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// openDst opens the destination that spec names.
func openDst(ctx context.Context, spec string) (replicate.Destination, error) {
	if schema, ok := strings.CutPrefix(spec, "postgres:"); ok {
		return postgres.Open(ctx, testDSN(), &postgres.Options{Schema: schema})
	}
	return bolt.Open(spec, nil)
}

func child() {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	src, err := bolt.Open(os.Getenv(envSrc), nil)
	if err != nil {
		fail(err)
	}
	dst, err := openDst(ctx, os.Getenv(envDst))
	if err != nil {
		fail(err)
	}
	// The source keeps growing while the copy runs.
	go func() {
		for i := 0; ; i++ {
			agg := fmt.Sprintf("agg-%d", mrand.IntN(20))
			e := eventstore.Event{AggregateID: agg, Type: "Grew", Payload: json.RawMessage(fmt.Sprintf(`{"i": %d,  "pad": %q}`, i, strings.Repeat("x", mrand.IntN(300))))}
			if i%3 == 0 {
				e.Metadata = map[string]string{"n": fmt.Sprint(i)}
			}
			if _, err := src.Append(ctx, e, e2(agg, i)); err != nil {
				fail(err)
			}
		}
	}()
	fmt.Println("ready")
	_, err = replicate.Follow(ctx, src, dst, &replicate.Options{
		Checkpoint: "from:src",
		BatchSize:  1 + mrand.IntN(300),
		Linger:     time.Millisecond,
		Metadata:   map[string]string{"origin": os.Getenv(envOrigin)},
	})
	fail(err)
}

func e2(agg string, i int) eventstore.Event {
	return eventstore.Event{AggregateID: agg, Type: "GrewMore", Payload: json.RawMessage(fmt.Sprintf(`[%d]`, i))}
}

// TestCopy_Killed kills a process that copies a growing bolt file into
// another bolt file or into PostgreSQL with SIGKILL at random points, 22
// times, reruns it each time, and then checks that the destination equals
// the source event by event, without duplicates, at gapless positions.
func TestCopy_Killed(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	t.Run("bolt", func(t *testing.T) {
		killLoop(t, filepath.Join(t.TempDir(), "dst.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		schema := freshSchema(t)
		killLoop(t, "postgres:"+schema)
	})
}

func killLoop(t *testing.T, dstSpec string) {
	ctx := context.Background()
	srcPath := filepath.Join(t.TempDir(), "src.db")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const kills = 22
	for i := range kills {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=1", envSrc+"="+srcPath, envDst+"="+dstSpec, envOrigin+"=device-17")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			_ = cmd.Wait()
			t.Fatalf("run %d: child did not start: %q %s", i, line, stderr.String())
		}
		time.Sleep(time.Duration(mrand.IntN(400)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("run %d: child ended on its own: %v\n%s", i, err, stderr.String())
		}
	}

	// The last run, in this process, with the source at rest.
	src, err := bolt.Open(srcPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := openDst(ctx, dstSpec)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	stats, err := replicate.Copy(ctx, src, dst, &replicate.Options{Checkpoint: "from:src", Metadata: map[string]string{"origin": "device-17"}})
	if err != nil {
		t.Fatal(err)
	}
	n := len(readAll(t, src))
	t.Logf("%d kills; %d source events; the last run copied %d and skipped %d", kills, n, stats.Copied, stats.Skipped)
	if n < 100 {
		t.Fatalf("the source grew to %d events only", n)
	}
	requireCopied(t, src, dst, nil, map[string]string{"origin": "device-17"})
}

// freshSchema returns a schema name no test uses, dropped at the end, or
// skips the test without a server (fails under CI=true).
func freshSchema(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, testDSN())
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL at %s is unreachable (%v); set EVENTSTORE_POSTGRES_DSN to a server", testDSN(), err)
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: %s", msg)
		}
		t.Skipf("SKIPPING POSTGRES TESTS: %s", msg)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "estest_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		pool.Close()
	})
	return schema
}
