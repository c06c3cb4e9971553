package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventstore-go/eventstore/postgres"
)

// postgresBackend stores in PostgreSQL, in a schema of its own per store,
// dropped afterwards. Its replay fixture is smaller (see pgShape): loading
// a million events through Append takes minutes there.
var postgresBackend = backend{name: "postgres", open: openPostgres, append: true, replay: true, shape: pgShape}

// pgShape is the replay fixture on PostgreSQL: 900 aggregates of 100 events
// and one of 100,000, 190,000 events in all.
var pgShape = shape{smallAggs: 900, smallLen: 100, bigLen: 100_000}

// postgresDSN returns the server the benchmarks use.
func postgresDSN() string {
	if dsn := os.Getenv("EVENTSTORE_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

var (
	pgOnce sync.Once
	pgErr  error
	pgSeq  atomic.Int64
)

// pgReachable returns why the server cannot be used, or nil.
func pgReachable() error {
	pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, postgresDSN())
		if err != nil {
			pgErr = err
			return
		}
		pgErr = conn.Ping(ctx)
		conn.Close(ctx)
	})
	return pgErr
}

// pgExec runs one statement on a connection of its own.
func pgExec(ctx context.Context, sql string, args ...any) (pgx.Rows, *pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, postgresDSN())
	if err != nil {
		return nil, nil, err
	}
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		conn.Close(ctx)
		return nil, nil, err
	}
	return rows, conn, nil
}

func openPostgres(tb testing.TB, _, _ bool) *handle {
	tb.Helper()
	if err := pgReachable(); err != nil {
		tb.Skipf("no PostgreSQL at %s (set EVENTSTORE_POSTGRES_DSN, or run scripts/postgres-up.sh): %v", postgresDSN(), err)
	}
	schema := fmt.Sprintf("bench_%d_%d", os.Getpid(), pgSeq.Add(1))
	s, err := postgres.Open(context.Background(), postgresDSN(), &postgres.Options{Schema: schema})
	if err != nil {
		tb.Fatal(err)
	}
	quoted := pgx.Identifier{schema}.Sanitize()
	return &handle{
		target: s,
		size: func() (int64, error) {
			ctx := context.Background()
			rows, conn, err := pgExec(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
				FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = $1 AND c.relkind = 'r'`, schema)
			if err != nil {
				return 0, err
			}
			defer conn.Close(ctx)
			n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int64])
			return n, err
		},
		cleanup: func() {
			ctx := context.Background()
			rows, conn, err := pgExec(ctx, `DROP SCHEMA IF EXISTS `+quoted+` CASCADE`)
			if err != nil {
				tb.Logf("drop schema %s: %v", schema, err)
				return
			}
			rows.Close()
			conn.Close(ctx)
		},
	}
}
