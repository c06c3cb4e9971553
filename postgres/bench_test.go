package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/postgres"
)

// BenchmarkAppend measures what the single serialization point costs:
// appends of one event each, from 1 and from 16 concurrent writers, each
// writer on its own aggregate. With stores=1 the writers share one Store,
// whose appends share commits (group commit); with stores=16 each writer
// has its own Store and pool, as separate processes would, and every
// append is its own commit. Compare appends/s across the cases.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct{ writers, stores int }{{1, 1}, {16, 1}, {16, 16}} {
		b.Run(fmt.Sprintf("writers=%d/stores=%d", c.writers, c.stores), func(b *testing.B) {
			first := mustNew(b, int32(c.writers)+2)
			stores := []*postgres.Store{first}
			for len(stores) < c.stores {
				s, err := postgres.Open(context.Background(), pgtest.DSN(), &postgres.Options{Schema: first.Schema()})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				stores = append(stores, s)
			}
			ctx := context.Background()
			payload := []byte(`{"name":"Ada Lovelace","email":"ada@example.com","n":1}`)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range c.writers {
				wg.Go(func() {
					s := stores[w%len(stores)]
					agg := fmt.Sprint("bench-", w)
					for next.Add(1) <= int64(b.N) {
						if _, err := s.Append(ctx, eventstore.Event{AggregateID: agg, Type: "Benchmarked", Payload: payload}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkInsertBaseline is what BenchmarkAppend is measured against: the
// same rows inserted with no serialization point, positions from a
// sequence (which skips, see TestFollowersNeverSkip) and no version check,
// one autocommitted INSERT per append.
func BenchmarkInsertBaseline(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			ctx := context.Background()
			schema := pgx.Identifier{pgtest.FreshSchema(b)}.Sanitize()
			cfg, err := pgxpool.ParseConfig(pgtest.DSN())
			if err != nil {
				b.Fatal(err)
			}
			cfg.MaxConns = int32(writers) + 2
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(pool.Close)
			if _, err := pool.Exec(ctx, `CREATE SCHEMA `+schema+`;
				CREATE TABLE `+schema+`.events (
					id uuid PRIMARY KEY, position bigserial UNIQUE, aggregate_id text NOT NULL, event_type text NOT NULL,
					version bigint NOT NULL, timestamp timestamptz NOT NULL, payload json NOT NULL, metadata jsonb,
					UNIQUE (aggregate_id, version));
				CREATE INDEX ON `+schema+`.events (event_type, position);
				CREATE INDEX ON `+schema+`.events (timestamp, position);
				CREATE INDEX ON `+schema+`.events (aggregate_id, timestamp, position);`); err != nil {
				b.Fatal(err)
			}
			insert := `INSERT INTO ` + schema + `.events (id, aggregate_id, event_type, version, timestamp, payload)
				VALUES ($1, $2, 'Benchmarked', $3, now(), $4::json)`
			payload := `{"name":"Ada Lovelace","email":"ada@example.com","n":1}`
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					agg := fmt.Sprint("bench-", w)
					for v := 1; next.Add(1) <= int64(b.N); v++ {
						if _, err := pool.Exec(ctx, insert, uuid.NewString(), agg, v, payload); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkProject measures exactly-once projection: b.N events, appended
// before the timer starts, each inserted into a read-model table by the
// handler, in the transactions of Project (ProjectBatchSize events and
// their checkpoint per commit). The timer stops when the checkpoint
// reaches the head.
func BenchmarkProject(b *testing.B) {
	s := mustNew(b, 4)
	ctx := context.Background()
	tbl := pgx.Identifier{s.Schema(), "readmodel"}.Sanitize()
	if _, err := pgtest.Admin(b).Exec(ctx, `CREATE TABLE `+tbl+` (id uuid PRIMARY KEY, position bigint NOT NULL, type text NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"name":"Ada Lovelace","email":"ada@example.com","n":1}`)
	for left := b.N; left > 0; {
		batch := make([]eventstore.Event, min(left, 1000))
		agg := uuid.NewString()
		for i := range batch {
			batch[i] = eventstore.Event{AggregateID: agg, Type: "Benchmarked", Payload: payload}
		}
		if _, err := s.Append(ctx, batch...); err != nil {
			b.Fatal(err)
		}
		left -= len(batch)
	}
	head, err := s.Head(ctx)
	if err != nil {
		b.Fatal(err)
	}
	insert := `INSERT INTO ` + tbl + ` (id, position, type) VALUES ($1, $2, $3)`
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		done <- s.Project(pctx, "bench", eventstore.Filter{}, func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			_, err := tx.Exec(ctx, insert, e.ID, int64(e.Position), e.Type)
			return err
		})
	}()
	for {
		cp, err := s.LoadCheckpoint(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		if cp >= head {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
