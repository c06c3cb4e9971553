package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/postgres"
)

const defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func testDSN() string {
	if dsn := os.Getenv("EVENTSTORE_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return defaultDSN
}

var (
	adminOnce sync.Once
	adminPool *pgxpool.Pool
	adminErr  error
)

// admin returns a pool on the test server; without a server the test is
// skipped loudly, or fails with CI=true.
func admin(t *testing.T) *pgxpool.Pool {
	t.Helper()
	adminOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		adminPool, adminErr = pgxpool.New(ctx, testDSN())
		if adminErr == nil {
			adminErr = adminPool.Ping(ctx)
		}
	})
	if adminErr != nil {
		msg := "PostgreSQL at " + testDSN() + " is unreachable (" + adminErr.Error() + "); set EVENTSTORE_POSTGRES_DSN to a server"
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: %s", msg)
		}
		t.Skipf("SKIPPING POSTGRES TESTS: %s", msg)
	}
	return adminPool
}

// freshSchema returns a schema name no other test uses, dropped at the end.
func freshSchema(t *testing.T) string {
	t.Helper()
	pool := admin(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "escli_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// makePostgres fills a fresh schema with the fixture events.
func makePostgres(t *testing.T) (schema string, events []eventstore.Event) {
	t.Helper()
	schema = freshSchema(t)
	s, err := postgres.Open(context.Background(), testDSN(), &postgres.Options{Schema: schema})
	require.NoError(t, err)
	defer s.Close()
	return schema, appendFixture(t, s)
}

func TestPostgres(t *testing.T) {
	schema, events := makePostgres(t)
	dsn := testDSN()
	pg := func(args ...string) []string { return append(args, "--schema", schema) }

	t.Run("stats", func(t *testing.T) {
		st := jsonLines(t, ok(t, pg("stats", "--json", dsn)...))[0]
		require.EqualValues(t, 7, st["events"])
		require.EqualValues(t, 4, st["aggregates"])
		require.EqualValues(t, 7, st["head"])
		require.Equal(t, "postgres", st["backend"])
		require.Equal(t, "2024-05-01T12:01:00.123456Z", st["first_timestamp"])
		require.Equal(t, "2024-05-01T12:07:00.123456Z", st["last_timestamp"])
		require.Positive(t, st["size_bytes"])
		require.Len(t, st["types"], 5)
		require.Contains(t, ok(t, pg("stats", dsn)...), "aggregates:       4")
	})
	t.Run("aggregates", func(t *testing.T) {
		objs := jsonLines(t, ok(t, pg("aggregates", "--json", dsn)...))
		require.Equal(t, []string{"order-1", "user 3", "user-1", "user-2"}, ids(objs))
		require.Equal(t, "2024-05-01T12:07:00.123456Z", objs[2]["last_timestamp"])
		require.EqualValues(t, 3, objs[2]["version"])
		r := cli(t, pg("aggregates", "--json", "--prefix", "user", "--limit", "2", dsn)...)
		require.Equal(t, []string{"user 3", "user-1"}, ids(jsonLines(t, r.stdout)))
		require.Contains(t, r.stderr, `--after "user-1"`)
		require.Equal(t, []string{"user-2"}, ids(jsonLines(t, ok(t, pg("aggregates", "--json", "--prefix", "user", "--after", "user-1", dsn)...))))
	})
	t.Run("cat", func(t *testing.T) {
		require.Equal(t, []int{1, 2, 7}, positions(jsonLines(t, ok(t, pg("cat", "--json", dsn, "user-1")...))))
		require.Equal(t, []int{2}, positions(jsonLines(t, ok(t, pg("cat", "--json", "--after-version", "1", "--as-of", "2024-05-01T12:06:00Z", dsn, "user-1")...))))
	})
	t.Run("log", func(t *testing.T) {
		require.Equal(t, []int{3, 6}, positions(jsonLines(t, ok(t, pg("log", "--json", "--prefix", "order", dsn)...))))
		require.Equal(t, []int{4, 5}, positions(jsonLines(t, ok(t, pg("log", "--json", "--type", "UserCreated", "--after", "1", dsn)...))))
	})
	t.Run("tail", func(t *testing.T) {
		require.Equal(t, []int{6, 7}, positions(jsonLines(t, ok(t, pg("tail", "--json", "-n", "2", dsn)...))))
	})
	t.Run("export", func(t *testing.T) {
		out := ok(t, pg("export", dsn)...)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		require.Len(t, lines, 8)
		for i, e := range events {
			got, err := decodeEvent([]byte(lines[i+1]))
			require.NoError(t, err)
			require.Equal(t, e, got)
		}
		// Into bolt and back into another schema: every field kept.
		file := filepath.Join(t.TempDir(), "pg.ndjson")
		require.NoError(t, os.WriteFile(file, []byte(out), 0o600))
		other := freshSchema(t)
		ok(t, "import", "--schema", other, dsn, file)
		back := jsonLines(t, ok(t, "export", "--schema", other, "--json", dsn))
		require.Len(t, back, 8)
		require.Equal(t, "7 events read, 0 imported, 7 already stored\n", ok(t, "import", "--schema", other, dsn, file))
	})
	t.Run("copy", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "from-pg.db")
		require.Contains(t, ok(t, pg("copy", dsn, dst)...), "7 events copied")
		requireSameEvents(t, events, readAll(t, dst))
		other := freshSchema(t)
		require.Contains(t, ok(t, "copy", "--schema", other, dst, dsn), "7 events copied")
		require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7}, positions(jsonLines(t, ok(t, "log", "--json", "--schema", other, dsn))))
	})
	t.Run("verify", func(t *testing.T) {
		require.Contains(t, ok(t, pg("verify", dsn)...), ": ok\n")
	})
	t.Run("MissingSchema", func(t *testing.T) {
		missing := freshSchema(t)
		r := cli(t, "stats", "--schema", missing, dsn)
		require.Equal(t, 2, r.code)
		require.Contains(t, r.stderr, "does not exist")
		var n int
		require.NoError(t, admin(t).QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname = $1", missing).Scan(&n))
		require.Zero(t, n, "a read-only command created the schema")
	})
}

// TestVerify_PostgresDamage removes an event and breaks a version behind
// the store's back: verify lists both, exit status 1.
func TestVerify_PostgresDamage(t *testing.T) {
	schema, _ := makePostgres(t)
	q := pgx.Identifier{schema}.Sanitize()
	ctx := context.Background()
	_, err := admin(t).Exec(ctx, "DELETE FROM "+q+".events WHERE position = 4")
	require.NoError(t, err)
	_, err = admin(t).Exec(ctx, "UPDATE "+q+".events SET version = 5 WHERE position = 7")
	require.NoError(t, err)
	r := cli(t, "verify", "--schema", schema, testDSN())
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stdout, "positions: 4 missing")
	require.Contains(t, r.stdout, `aggregate "user-1": version 5 follows 2`)
	r = cli(t, "verify", "--json", "--schema", schema, testDSN())
	require.Equal(t, 1, r.code)
	obj := jsonLines(t, r.stdout)[0]
	require.Equal(t, false, obj["ok"])
	require.Len(t, obj["problems"], 3) // the count, the gap, the version
}

// TestTail_PostgresFollow starts tail -f and appends: the new event shows
// up, and SIGINT ends it.
func TestTail_PostgresFollow(t *testing.T) {
	schema, _ := makePostgres(t)
	cmd := exec.Command(binary, "tail", "-f", "--json", "-n", "1", "--schema", schema, testDSN())
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			require.True(t, ok, "tail ended: %s", stderr.String())
			return l
		case <-time.After(30 * time.Second):
			t.Fatalf("no line from tail -f; stderr: %s", stderr.String())
			return ""
		}
	}
	require.Contains(t, next(), `"position":7`)

	s, err := postgres.Open(context.Background(), testDSN(), &postgres.Options{Schema: schema})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Append(context.Background(), eventstore.Event{AggregateID: "live-1", Type: "Live", Payload: []byte(`{"n":1}`)})
	require.NoError(t, err)
	l := next()
	require.Contains(t, l, `"position":8`)
	require.Contains(t, l, `"aggregate_id":"live-1"`)

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err = cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 130, ee.ExitCode(), stderr.String())
}

// lockedBuffer is a strings.Builder safe to read while a command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
