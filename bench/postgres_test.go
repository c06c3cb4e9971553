package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/postgres"
)

// postgresBackend stores in PostgreSQL, in a schema of its own per store,
// dropped afterwards. Its replay fixture, the same million events as the
// others', is loaded with COPY (loadPostgresCopy) and kept across runs in a
// schema of its own (pgCache).
var postgresBackend = backend{name: "postgres", open: openPostgres, load: loadPostgresCopy, fixtureCache: pgCache,
	append: true, replay: true}

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
	h := pgHandle(tb, s, schema)
	quoted := pgx.Identifier{schema}.Sanitize()
	h.cleanup = func() {
		ctx := context.Background()
		rows, conn, err := pgExec(ctx, `DROP SCHEMA IF EXISTS `+quoted+` CASCADE`)
		if err != nil {
			tb.Logf("drop schema %s: %v", schema, err)
			return
		}
		rows.Close()
		conn.Close(ctx)
	}
	return h
}

// pgHandle is the handle of the store s in schema, with no cleanup.
func pgHandle(_ testing.TB, s *postgres.Store, schema string) *handle {
	return &handle{
		target: s,
		schema: schema,
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
	}
}

// loadPostgresCopy loads a fixture with COPY into the events table of the
// store's schema, positions 1, 2, 3, ... in the order of the calls, then
// advances log_head past them: what an Append per call would store, the
// way a bulk import writes it.
func loadPostgresCopy(_ testing.TB, h *handle, calls iter.Seq[[]eventstore.Event]) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, postgresDSN())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	next, stop := iter.Pull(calls)
	defer stop()
	var (
		pending []eventstore.Event
		pos     int64
		row     = make([]any, 8)
	)
	src := pgx.CopyFromFunc(func() ([]any, error) {
		for len(pending) == 0 {
			events, ok := next()
			if !ok {
				return nil, nil
			}
			pending = events
		}
		e := pending[0]
		pending = pending[1:]
		pos++
		id, err := uuid.NewV7() // the legacy fixture's events leave their IDs to the store
		if e.ID != "" {
			id, err = uuid.Parse(e.ID)
		}
		if err != nil {
			return nil, err
		}
		var meta any
		if e.Metadata != nil {
			m, err := json.Marshal(e.Metadata)
			if err != nil {
				return nil, err
			}
			meta = string(m)
		}
		row[0], row[1], row[2], row[3] = pgtype.UUID{Bytes: id, Valid: true}, pos, e.AggregateID, e.Type
		row[4], row[5], row[6], row[7] = int64(e.Version), e.Timestamp, string(e.Payload), meta
		return row, nil
	})
	cols := []string{"id", "position", "aggregate_id", "event_type", "version", "timestamp", "payload", "metadata"}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{h.schema, "events"}, cols, src); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	_, err = conn.Exec(ctx, `UPDATE `+pgx.Identifier{h.schema, "log_head"}.Sanitize()+` SET position = $1`, pos)
	if err == nil {
		_, err = conn.Exec(ctx, `ANALYZE `+pgx.Identifier{h.schema, "events"}.Sanitize())
	}
	return err
}

// pgCache keeps PostgreSQL's fixtures across runs: the fixture named key
// is the schema benchfix_key, renamed there once loaded.
var pgCache = &serverCache{
	get: func(tb testing.TB, key string) *handle {
		if pgReachable() != nil {
			return nil
		}
		schema := "benchfix_" + key
		ctx := context.Background()
		rows, conn, err := pgExec(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema)
		if err != nil {
			tb.Fatal(err)
		}
		n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int64])
		conn.Close(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		if n == 0 {
			return nil
		}
		s, err := postgres.Open(ctx, postgresDSN(), &postgres.Options{Schema: schema})
		if err != nil {
			tb.Fatal(err)
		}
		return pgHandle(tb, s, schema)
	},
	put: func(tb testing.TB, key string, h *handle) *handle {
		schema := "benchfix_" + key
		if err := h.Close(); err != nil {
			tb.Fatal(err)
		}
		ctx := context.Background()
		rows, conn, err := pgExec(ctx, `ALTER SCHEMA `+pgx.Identifier{h.schema}.Sanitize()+` RENAME TO `+pgx.Identifier{schema}.Sanitize())
		if err != nil {
			tb.Fatal(err)
		}
		rows.Close()
		conn.Close(ctx)
		s, err := postgres.Open(ctx, postgresDSN(), &postgres.Options{Schema: schema})
		if err != nil {
			tb.Fatal(err)
		}
		return pgHandle(tb, s, schema)
	},
	format: func() string {
		sum := sha256.New()
		files, _ := filepath.Glob("../postgres/migrations/*.sql")
		for _, f := range files {
			b, _ := os.ReadFile(f)
			fmt.Fprintf(sum, "%s %x\n", filepath.Base(f), b)
		}
		return hex.EncodeToString(sum.Sum(nil))
	},
}
