package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/postgres"
	"github.com/eventstore-go/eventstore/replicate"
)

// replicateEvents is the size of the source of BenchmarkReplicate:
// 1,000,000, or $EVENTSTORE_BENCH_REPLICATE_EVENTS (a multiple of 10,000)
// for a quicker run while iterating.
var replicateEvents = func() int {
	if n, err := strconv.Atoi(os.Getenv("EVENTSTORE_BENCH_REPLICATE_EVENTS")); err == nil && n > 0 && n%10_000 == 0 {
		return n
	}
	return 1_000_000
}()

var (
	replicateOnce sync.Once
	replicatePath string
	replicateErr  error
)

// replicateSource returns the path of a bolt file holding replicateEvents
// events of about 200-byte payloads (10,000 aggregates of 100), made once
// per run through Import with fsync off, then closed.
func replicateSource(b *testing.B) string {
	replicateOnce.Do(func() {
		replicatePath = filepath.Join(workdir, fmt.Sprintf("replicate-src-%d.db", replicateEvents))
		s, err := bolt.Open(replicatePath, &bolt.Options{UnsafeNoSync: true})
		if err != nil {
			replicateErr = err
			return
		}
		defer s.Close()
		pad := strings.Repeat("x", 60)
		ts := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		const aggs, call = 10_000, eventstore.MaxImportEvents
		perAgg := replicateEvents / aggs
		batch := make([]eventstore.Event, 0, call)
		n := 0
		for v := 1; v <= perAgg; v++ {
			for a := range aggs {
				e := event(fmt.Sprintf("device-%05d", a), uint64(v), n, n/call)
				e.ID = uuid.Must(uuid.NewV7()).String()
				e.Timestamp = ts.Add(time.Duration(n) * time.Millisecond)
				e.Payload = fmt.Appendf(nil, `{"pad":%q,%s`, pad, e.Payload[1:]) // ~200 bytes
				batch = append(batch, e)
				n++
				if len(batch) == call {
					if _, err := s.Import(context.Background(), batch); err != nil {
						replicateErr = err
						return
					}
					batch = batch[:0]
				}
			}
		}
		atExit(func() { os.Remove(replicatePath) })
	})
	if replicateErr != nil {
		b.Fatal(replicateErr)
	}
	return replicatePath
}

// BenchmarkReplicate copies a bolt file of 1,000,000 events into an empty
// bolt file (durable) and into an empty PostgreSQL schema with
// replicate.Copy, in batches of 1,000 (the old default) and of
// replicate.DefaultBatchSize, side by side, and its baseline,
// rawbolt-to-rawbolt (benchReplicateRaw). The source is built once,
// outside the timer; each iteration copies everything into a fresh
// destination.
// It runs only under -bench, as every benchmark: at this size it takes
// about a minute a case.
func BenchmarkReplicate(b *testing.B) {
	for _, tc := range []struct {
		name string
		open func(b *testing.B) (replicate.Destination, func())
	}{
		{"bolt-to-bolt", func(b *testing.B) (replicate.Destination, func()) {
			path := filepath.Join(workdir, fmt.Sprintf("replicate-dst-%d.db", time.Now().UnixNano()))
			s, err := bolt.Open(path, nil)
			if err != nil {
				b.Fatal(err)
			}
			return s, func() { s.Close(); os.Remove(path) }
		}},
		{"bolt-to-postgres", func(b *testing.B) (replicate.Destination, func()) {
			if err := pgReachable(); err != nil {
				b.Skipf("no PostgreSQL at %s: %v", postgresDSN(), err)
			}
			h := openPostgres(b, false, false)
			return h.target.(*postgres.Store), func() { h.Close(); h.cleanup() }
		}},
	} {
		for _, batch := range []int{1000, replicate.DefaultBatchSize} {
			benchReplicate(b, tc.name, batch, tc.open)
		}
	}
	benchReplicateRaw(b, replicate.DefaultBatchSize)
}

// benchReplicateRaw is bolt-to-bolt's baseline, what bbolt alone does with
// the same work: it reads the same source the same way (ReadAll, a batch
// at a time) and writes the same records and index entries into an empty
// raw bbolt file, one durable Update per batch and rawAppend per
// aggregate within it, with none of Import's checks and no checkpoint.
func benchReplicateRaw(b *testing.B, batch int) {
	benchCopies(b, "rawbolt-to-rawbolt", batch, func(b *testing.B, src *bolt.Store) (int, time.Duration) {
		b.StopTimer()
		path := filepath.Join(workdir, fmt.Sprintf("replicate-raw-%d.db", time.Now().UnixNano()))
		dst, err := openRaw(path, false, false)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		n, err := rawCopy(src, dst, batch)
		took := time.Since(start)
		b.StopTimer()
		dst.Close()
		os.Remove(path)
		b.StartTimer()
		if err != nil {
			b.Fatal(err)
		}
		return n, took
	})
}

// rawCopy copies every event of src into dst in transactions of batch
// events and returns how many it copied.
func rawCopy(src *bolt.Store, dst *rawStore, batch int) (int, error) {
	events := make([]eventstore.Event, 0, batch)
	copied := 0
	flush := func() error {
		// rawAppend takes one aggregate's events: group the batch by
		// aggregate, in the order they first appear.
		groups := make(map[string][]eventstore.Event)
		var order []string
		for _, e := range events {
			if _, ok := groups[e.AggregateID]; !ok {
				order = append(order, e.AggregateID)
			}
			groups[e.AggregateID] = append(groups[e.AggregateID], e)
		}
		err := dst.db.Update(func(tx *bbolt.Tx) error {
			for _, a := range order {
				if err := rawAppend(tx, groups[a]); err != nil {
					return err
				}
			}
			return nil
		})
		copied += len(events)
		events = events[:0]
		return err
	}
	for e, err := range src.ReadAll(context.Background(), 0) {
		if err != nil {
			return copied, err
		}
		if events = append(events, e); len(events) == batch {
			if err := flush(); err != nil {
				return copied, err
			}
		}
	}
	if len(events) > 0 {
		if err := flush(); err != nil {
			return copied, err
		}
	}
	return copied, nil
}

// benchReplicate runs one case of BenchmarkReplicate: a copy into
// destinations that open makes, in batches of batch events.
func benchReplicate(b *testing.B, name string, batch int, open func(b *testing.B) (replicate.Destination, func())) {
	benchCopies(b, name, batch, func(b *testing.B, src *bolt.Store) (int, time.Duration) {
		b.StopTimer()
		dst, done := open(b)
		b.StartTimer()
		stats, err := replicate.Copy(context.Background(), src, dst, &replicate.Options{Checkpoint: "from:bench", BatchSize: batch})
		b.StopTimer()
		done()
		b.StartTimer()
		if err != nil {
			b.Fatal(err)
		}
		return int(stats.Copied), stats.Duration
	})
}

// benchCopies runs the benchmark name/events=N/batch=batch: one copy of
// the replicate source an iteration, which copyOnce makes into a fresh
// destination, returning the events copied and how long the copy took
// (without its destination's setup and removal, which it keeps off the
// timer).
func benchCopies(b *testing.B, name string, batch int, copyOnce func(b *testing.B, src *bolt.Store) (int, time.Duration)) {
	b.Run(fmt.Sprintf("%s/events=%d/batch=%d", name, replicateEvents, batch), func(b *testing.B) {
		src, err := bolt.Open(replicateSource(b), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		copied := 0
		var elapsed time.Duration
		for b.Loop() {
			n, took := copyOnce(b, src)
			if n != replicateEvents {
				b.Fatalf("copied %d events, want %d", n, replicateEvents)
			}
			copied += n
			elapsed += took
		}
		b.ReportMetric(float64(copied)/elapsed.Seconds(), "events/s")
		b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/copy")
	})
}
