package bolt_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// BenchmarkReplay reads a warm file of 100k events (1000 aggregates of 100,
// appended 10 at a time, interleaved) with each read, with and without
// metadata (Event.Metadata is a map: two allocations per event). Besides
// events/s (wall time), it reports cpu-ns/event: the process's CPU time per
// event, garbage collection included, which a busy machine disturbs less.
func BenchmarkReplay(b *testing.B) {
	for _, meta := range []bool{false, true} {
		b.Run(fmt.Sprintf("metadata=%v", meta), func(b *testing.B) { benchReplay(b, meta) })
	}
}

func benchReplay(b *testing.B, meta bool) {
	ctx := context.Background()
	s := MustOpen(b, &bolt.Options{UnsafeNoSync: true})
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
				if meta {
					events[i].Metadata = map[string]string{"correlation_id": fmt.Sprintf("corr-%d-%d", round, a)}
				}
			}
			if _, err := s.Append(ctx, events...); err != nil {
				b.Fatal(err)
			}
		}
	}
	total := aggs * per
	for _, r := range []struct {
		name string
		want int
		read func() func(func(eventstore.Event, error) bool)
	}{
		{"all", total, func() func(func(eventstore.Event, error) bool) { return s.ReadAll(ctx, 0) }},
		{"aggregate=100", per, func() func(func(eventstore.Event, error) bool) { return s.ReadAggregate(ctx, "account-0042", 0) }},
		{"type", total / 10, func() func(func(eventstore.Event, error) bool) { return s.ReadType(ctx, "Type3", 0) }},
	} {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			cpu0, cpuOK := cpuTime()
			for b.Loop() {
				for _, err := range r.read() {
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
			}
			if n != b.N*r.want {
				b.Fatalf("read %d events, want %d", n, b.N*r.want)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
			// CPU time varies less than wall time on a busy machine.
			if cpu1, ok := cpuTime(); ok && cpuOK {
				b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(n), "cpu-ns/event")
			}
			b.ReportMetric(float64(testing.AllocsPerRun(1, func() {
				for range r.read() {
				}
			}))/float64(r.want), "allocs/event")
		})
	}
}
