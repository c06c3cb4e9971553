package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/postgres"
)

// TestImport_WriteBetweenLookupAndInsert holds the log_head lock while an
// Import waits for it, having looked up its IDs and versions and staged its
// events, and commits a conflicting write under that lock. Import must
// then start over and end as if it had run after that write: a skip of the
// ID now stored with the same content, or a *ConflictError for the
// aggregate another writer advanced; never a write over it, never a bare
// unique violation.
func TestImport_WriteBetweenLookupAndInsert(t *testing.T) {
	ts := time.Date(2025, 1, 1, 12, 0, 0, 123456000, time.UTC)
	mine := eventstore.Event{ID: "0190a000-0000-7000-8000-000000000002", AggregateID: "a", Type: "T",
		Payload: json.RawMessage(`{ "v" : 2 }`), Version: 2, Timestamp: ts}
	other := eventstore.Event{ID: "0190a000-0000-7000-8000-000000000003", AggregateID: "b", Type: "T",
		Payload: json.RawMessage(`{}`), Version: 1, Timestamp: ts}

	for _, tc := range []struct {
		name  string
		id    string // of the event the concurrent writer stores as a's version 2
		check func(t *testing.T, out []eventstore.Event, err error)
	}{
		{"SameIDSameContent", mine.ID, func(t *testing.T, out []eventstore.Event, err error) {
			if err != nil {
				t.Fatalf("Import: %v, want the stored event skipped", err)
			}
			if len(out) != 1 || out[0].ID != other.ID || out[0].Position != 3 {
				t.Fatalf("Import wrote %+v, want only %s at position 3", out, other.ID)
			}
		}},
		{"OtherWriter", "0190a000-0000-7000-8000-0000000000ff", func(t *testing.T, out []eventstore.Event, err error) {
			var conflict *eventstore.ConflictError
			if !errors.As(err, &conflict) || conflict.AggregateID != "a" || conflict.Expected != 1 || conflict.Actual != 2 {
				t.Fatalf("Import: %v (%+v), want a *ConflictError for a, expected 1, actual 2", err, conflict)
			}
			if out != nil {
				t.Fatalf("Import returned %+v with its error", out)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pool := pgtest.Admin(t)
			schema := pgtest.FreshSchema(t)
			s, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: json.RawMessage(`{}`)}); err != nil {
				t.Fatal(err)
			}
			q := pgx.Identifier{schema}.Sanitize()

			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background()) //nolint:errcheck // committed below
			if _, err := tx.Exec(ctx, `SELECT position FROM `+q+`.log_head WHERE id FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
			type result struct {
				out []eventstore.Event
				err error
			}
			done := make(chan result, 1)
			go func() {
				out, err := s.Import(ctx, []eventstore.Event{mine, other})
				done <- result{out, err}
			}()
			// Wait until Import waits for the lock: its lookups and its
			// staging are behind it, it decided to write both events.
			for {
				var n int
				if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
					WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '.log_head%FOR UPDATE%'`, q).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n > 0 {
					break
				}
				select {
				case r := <-done:
					t.Fatalf("Import ended before it took the lock: %+v, %v", r.out, r.err)
				case <-time.After(10 * time.Millisecond):
				}
			}
			// The concurrent writer: a's version 2, at position 2.
			if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.events (id, position, aggregate_id, event_type, version, timestamp, payload, metadata)
				VALUES ($1, 2, 'a', $2, 2, $3, $4::json, NULL)`, tc.id, mine.Type, ts, string(mine.Payload)); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `UPDATE `+q+`.log_head SET position = 2 WHERE id`); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			r := <-done
			tc.check(t, r.out, r.err)

			// Nothing else was written: a keeps the writer's version 2.
			all, err := eventstore.Collect(s.ReadAll(ctx, 0))
			if err != nil {
				t.Fatal(err)
			}
			want := 2 + len(r.out)
			if len(all) != want || all[1].ID != tc.id {
				t.Fatalf("store holds %d events (second %s), want %d with %s second", len(all), all[1].ID, want, tc.id)
			}
		})
	}
}

// TestImport_VersionLookupProbesOnce checks, through the server's table
// and index statistics, that Import looks up an aggregate's version with
// one probe of the (aggregate_id, version) index, not by reading every
// version the aggregate has (or the table): an import into long
// aggregates would read the whole history of each, every call.
func TestImport_VersionLookupProbesOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool := pgtest.Admin(t)
	schema := pgtest.FreshSchema(t)
	// The store's connections carry a name of their own, so that the test
	// can wait for them to end: a backend publishes its statistics, at
	// the latest, as it exits.
	dsn := pgtest.DSN()
	if strings.Contains(dsn, "://") {
		if strings.Contains(dsn, "?") {
			dsn += "&"
		} else {
			dsn += "?"
		}
		dsn += "application_name=" + schema
	} else {
		dsn += " application_name=" + schema
	}
	run := func(f func(s *postgres.Store)) {
		t.Helper()
		s, err := postgres.Open(ctx, dsn, &postgres.Options{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		f(s)
		s.Close()
		for {
			var n int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, schema).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	read := func() (tuples int64) {
		t.Helper()
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		if _, err := conn.Exec(ctx, `SET stats_fetch_consistency = none`); err != nil {
			t.Fatal(err)
		}
		// Rows of events read: by sequential scans, and as entries of
		// any of its indexes.
		if err := conn.QueryRow(ctx, `SELECT coalesce(t.seq_tup_read, 0) + coalesce(sum(i.idx_tup_read), 0)
			FROM pg_stat_user_tables t JOIN pg_stat_user_indexes i USING (relid)
			WHERE t.schemaname = $1 AND t.relname = 'events' GROUP BY t.seq_tup_read`, schema).Scan(&tuples); err != nil {
			t.Fatal(err)
		}
		return tuples
	}

	const history = 2000
	run(func(s *postgres.Store) {
		events := make([]eventstore.Event, history)
		for i := range events {
			events[i] = eventstore.Event{AggregateID: "long", Type: "T", Payload: json.RawMessage(`{}`)}
		}
		if _, err := s.Append(ctx, events...); err != nil {
			t.Fatal(err)
		}
	})
	before := read()
	ts := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	run(func(s *postgres.Store) {
		if _, err := s.Import(ctx, []eventstore.Event{{ID: "0190a000-0000-7000-8000-0000000000aa", AggregateID: "long", Type: "T",
			Payload: json.RawMessage(`{}`), Version: history + 1, Timestamp: ts}}); err != nil {
			t.Fatal(err)
		}
	})
	if got := read() - before; got > 10 {
		t.Fatalf("Import read %d rows of events (scanned or as index entries) to import into one aggregate of %d events, want a few", got, history)
	}
}
