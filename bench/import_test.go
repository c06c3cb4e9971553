package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/postgres"
)

// importBatch returns call number call of an import: size events of
// size/perAgg fresh aggregates, interleaved, as an export of many
// aggregates lists them, with IDs, versions and timestamps set.
func importBatch(call, size, perAgg int) []eventstore.Event {
	out := make([]eventstore.Event, 0, size)
	aggs := size / perAgg
	ts := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(call) * time.Second)
	for v := 1; v <= perAgg; v++ {
		for a := range aggs {
			e := event(fmt.Sprintf("import-%d-%d", call, a), uint64(v), len(out), call)
			e.ID = uuid.Must(uuid.NewV7()).String()
			e.Timestamp = ts.Add(time.Duration(len(out)) * time.Microsecond)
			out = append(out, e)
		}
	}
	return out
}

// BenchmarkImport imports calls of 1,000 events (100 aggregates of 10
// events, interleaved) into a fresh store: bolt (with its log and without)
// and PostgreSQL through Import, and the raw bbolt baseline writing the
// same records in transactions of the same size (rawAppend per aggregate,
// one Update per call), all durable.
func BenchmarkImport(b *testing.B) {
	const size, perAgg = 1000, 10
	for _, name := range []string{"bolt", "bolt-nowal"} {
		b.Run(name+"/batch=1000", func(b *testing.B) {
			opts := &bolt.Options{NoWAL: name == "bolt-nowal"}
			s, err := bolt.Open(filepath.Join(workdir, fmt.Sprintf("import-%d.db", time.Now().UnixNano())), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { s.Close(); os.Remove(s.Path()) }()
			benchImport(b, size, perAgg, func(events []eventstore.Event) error {
				_, err := s.Import(context.Background(), events)
				return err
			})
		})
	}
	b.Run("rawbolt/batch=1000", func(b *testing.B) {
		path := filepath.Join(workdir, fmt.Sprintf("import-raw-%d.db", time.Now().UnixNano()))
		s, err := openRaw(path, false, false)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { s.Close(); os.Remove(path) }()
		benchImport(b, size, perAgg, func(events []eventstore.Event) error {
			return s.db.Update(func(tx *bbolt.Tx) error {
				for a := 0; a < size/perAgg; a++ {
					group := make([]eventstore.Event, 0, perAgg)
					for v := range perAgg {
						group = append(group, events[v*(size/perAgg)+a])
					}
					if err := rawAppend(tx, group); err != nil {
						return err
					}
				}
				return nil
			})
		})
	})
	b.Run("postgres/batch=1000", func(b *testing.B) {
		if err := pgReachable(); err != nil {
			b.Skipf("no PostgreSQL at %s: %v", postgresDSN(), err)
		}
		h := openPostgres(b, false, false)
		defer func() { h.Close(); h.cleanup() }()
		s := h.target.(*postgres.Store)
		benchImport(b, size, perAgg, func(events []eventstore.Event) error {
			_, err := s.Import(context.Background(), events)
			return err
		})
	})
}

func benchImport(b *testing.B, size, perAgg int, run func([]eventstore.Event) error) {
	calls := 0
	m := startMeter(b)
	for b.Loop() {
		b.StopTimer()
		events := importBatch(calls, size, perAgg)
		calls++
		b.StartTimer()
		if err := run(events); err != nil {
			b.Fatal(err)
		}
	}
	m.stop(calls * size)
}
