package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eventstore-go/eventstore"
)

// BenchmarkAppend measures what the single serialization point costs:
// appends of one event each, from 1 and from 16 concurrent writers, each
// writer on its own aggregate and its own connection. Compare the
// appends/s of writers=1 and writers=16.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s := mustNew(b, int32(writers)+2)
			ctx := context.Background()
			payload := []byte(`{"name":"Ada Lovelace","email":"ada@example.com","n":1}`)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
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
