package bolt_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkAppendSubscribed runs 64 goroutines of durable single-event
// appends, with no subscription (subscribers=0) and with one live
// subscription to every event (subscribers=1), which must keep up: the
// appends end only once it has yielded them all. With the write-ahead
// log, group commits share one bbolt transaction; the live tail lets a
// subscription read them without committing it (see tail.go), so the two
// rates should be close.
func BenchmarkAppendSubscribed(b *testing.B) {
	for _, subs := range []int{0, 1} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := MustOpen(b, nil)
			var seen atomic.Uint64
			var wg sync.WaitGroup
			for range subs {
				wg.Go(func() {
					for e, err := range s.Subscribe(ctx, 0, eventstore.Filter{}) {
						if err != nil {
							return
						}
						seen.Store(e.Position)
					}
				})
			}
			payload := []byte(`{"amount":1234,"currency":"EUR","note":"a payload of about a hundred bytes"}`)
			const appenders = 64
			var total atomic.Uint64
			for b.Loop() {
				var round sync.WaitGroup
				for g := range appenders {
					round.Go(func() {
						for i := range 20 {
							if _, err := s.Append(ctx, eventstore.Event{AggregateID: fmt.Sprintf("a-%d-%d", g, i%5), Type: "T", Payload: payload}); err != nil {
								b.Error(err)
								return
							}
							total.Add(1)
						}
					})
				}
				round.Wait()
				for deadline := time.Now().Add(10 * time.Second); subs > 0 && seen.Load() < total.Load(); {
					if time.Now().After(deadline) {
						b.Fatalf("the subscription yielded up to position %d of %d in 10s", seen.Load(), total.Load())
					}
					time.Sleep(50 * time.Microsecond)
				}
			}
			b.ReportMetric(float64(total.Load())/b.Elapsed().Seconds(), "events/s")
			cancel()
			wg.Wait()
		})
	}
}
