package projection_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/projection"
)

// BenchmarkRun_CatchUp measures a projection with a handler that does
// nothing catching up with 10,000 stored events: the cost of reading,
// batching and saving checkpoints (one save, an fsync on bolt, per batch).
func BenchmarkRun_CatchUp(b *testing.B) {
	const n = 10_000
	for _, be := range backends {
		for _, batch := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d", be.name, batch), func(b *testing.B) {
				if be.name == "postgres" {
					pgtest.Admin(b)
				}
				s, _ := be.open(b)
				ctx := context.Background()
				for i := 0; i < n; i += 100 {
					events := make([]eventstore.Event, 100)
					for j := range events {
						events[j], _ = eventstore.NewEvent(fmt.Sprintf("agg-%d", i), "Happened", map[string]int{"j": j})
					}
					if _, err := s.Append(ctx, events...); err != nil {
						b.Fatal(err)
					}
				}
				handled := 0
				p := projection.Projection{Handle: func(context.Context, eventstore.Event) error { handled++; return nil }}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					p.Name = fmt.Sprintf("bench-%d", i) // from the start each time
					ctx, cancel := context.WithCancel(ctx)
					err := projection.Run(ctx, s, s, p, &projection.Options{BatchSize: batch, Progress: func(pr projection.Progress) {
						if pr.Checkpoint == n {
							cancel()
						}
					}})
					cancel()
					if err != nil {
						b.Fatal(err)
					}
				}
				if handled != n*i {
					b.Fatalf("handled %d events in %d runs, want %d", handled, i, n*i)
				}
				b.ReportMetric(float64(handled)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
