package bolt_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// BenchmarkProject projects a file of 100k events (1000 aggregates of
// 100, appended 10 at a time, interleaved) from the start, exactly once,
// in batches of the default size: the handler adds each event to its
// aggregate's count in a read-model bucket (a Get and a Put). Each
// iteration resets the projection first, outside the timer. With
// fsync=true every batch's commit is fsynced, as by default; fsync=false
// is Options.UnsafeNoSync.
func BenchmarkProject(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "events.db")
	s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	const aggs, per, batch = 1000, 100, 10
	for round := range per / batch {
		for a := range aggs {
			events := make([]eventstore.Event, batch)
			for i := range events {
				events[i] = eventstore.Event{
					AggregateID: fmt.Sprintf("account-%04d", a),
					Type:        fmt.Sprintf("Type%d", (round*batch+i)%10),
					Payload:     []byte(`{"amount":1234,"currency":"EUR","note":"a payload of about two hundred bytes, which is what events often weigh","tags":["x","y","z"],"ok":true}`),
				}
			}
			if _, err := s.Append(ctx, events...); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	const total = aggs * per
	counts := []byte("rm:counts")

	for _, fsync := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			s := MustOpenPath(b, path, &bolt.Options{UnsafeNoSync: !fsync})
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				if err := s.ResetProjection(ctx, "bench", func(tx *bolt.ProjectTx) error {
					if tx.Bucket(counts) == nil {
						return nil
					}
					return tx.DeleteBucket(counts)
				}); err != nil {
					b.Fatal(err)
				}
				pctx, stop := context.WithCancel(ctx)
				b.StartTimer()
				err := s.Project(pctx, "bench", eventstore.Filter{}, func(tx *bolt.ProjectTx, e eventstore.Event) error {
					bk, err := tx.CreateBucketIfNotExists(counts)
					if err != nil {
						return err
					}
					var n uint64
					if v := bk.Get([]byte(e.AggregateID)); v != nil {
						n = binary.BigEndian.Uint64(v)
					}
					if e.Position == total {
						stop() // the batch still commits
					}
					return bk.Put([]byte(e.AggregateID), binary.BigEndian.AppendUint64(nil, n+1))
				})
				b.StopTimer()
				if !errors.Is(err, context.Canceled) {
					b.Fatal(err)
				}
				if cp, err := s.LoadCheckpoint(ctx, "bench"); err != nil || cp != total {
					b.Fatalf("checkpoint %d (%v), want %d", cp, err, total)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
