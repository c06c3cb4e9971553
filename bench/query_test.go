package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// The query fixture: queryAggregates aggregates of 100 events each, every
// event tagged with its aggregate ("agg:<i>", the entity tag of dynamic
// consistency boundaries) and with one of queryAggregates scattered tags
// ("scatter:<k>", each on 100 events spread over the whole log, as a
// course's subscriptions are among all others). EVENTSTORE_BENCH_QUERY_EVENTS
// sets the number of events (default 200,000: it builds in about half a
// minute on the bench machine; the issue asks for 1M).
var (
	queryOnce  sync.Once
	queryStore *bolt.Store
	queryAggs  int
	queryErr   error
)

func queryFixture(b *testing.B) (*bolt.Store, int) {
	queryOnce.Do(func() {
		events := 200_000
		if v := os.Getenv("EVENTSTORE_BENCH_QUERY_EVENTS"); v != "" {
			events, queryErr = strconv.Atoi(v)
			if queryErr != nil {
				return
			}
		}
		queryAggs = events / 100
		path := newPath("query")
		s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: true})
		if err != nil {
			queryErr = err
			return
		}
		ctx := context.Background()
		call := 0
		for round := range 100 {
			// A round appends one event to every aggregate, in batches of
			// ten aggregates per AppendIf, so that each aggregate's events
			// spread over the log as a scattered tag's do.
			for i := 0; i < queryAggs; i += 10 {
				batch := make([]eventstore.Event, 0, 10)
				for a := i; a < min(i+10, queryAggs); a++ {
					e := event("agg-"+strconv.Itoa(a), 0, round+1, call)
					e.Tags = []string{"agg:" + strconv.Itoa(a), "scatter:" + strconv.Itoa((a*7919+round*104729)%queryAggs)}
					batch = append(batch, e)
				}
				call++
				if _, err := s.AppendIf(ctx, eventstore.Condition{After: ^uint64(0)}, batch...); err != nil {
					queryErr = err
					return
				}
			}
		}
		if err := s.Close(); err != nil {
			queryErr = err
			return
		}
		queryStore, queryErr = bolt.Open(path, nil) // durable from here on
		atExit(func() { queryStore.Close() })
	})
	if queryErr != nil {
		b.Fatal(queryErr)
	}
	return queryStore, queryAggs
}

// BenchmarkQuery compares a tag-indexed Read of 100 events with a
// ReadAggregate of 100 events, in a store of queryFixture's size.
func BenchmarkQuery(b *testing.B) {
	ctx := context.Background()
	read := func(b *testing.B, seq func(i int) func(func(eventstore.Event, error) bool)) {
		s, aggs := queryFixture(b)
		_ = s
		rng := rand.New(rand.NewPCG(1, 2))
		b.ReportAllocs()
		b.ResetTimer()
		n := 0
		for b.Loop() {
			for _, err := range seq(rng.IntN(aggs)) {
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	}
	b.Run("bolt/ReadAggregate", func(b *testing.B) {
		read(b, func(i int) func(func(eventstore.Event, error) bool) {
			return queryStore.ReadAggregate(ctx, "agg-"+strconv.Itoa(i), 0)
		})
	})
	b.Run("bolt/Read/tag=aggregate", func(b *testing.B) {
		read(b, func(i int) func(func(eventstore.Event, error) bool) {
			return queryStore.Read(ctx, eventstore.Filter{Tags: []string{"agg:" + strconv.Itoa(i)}}, 0)
		})
	})
	b.Run("bolt/Read/tag=scattered", func(b *testing.B) {
		read(b, func(i int) func(func(eventstore.Event, error) bool) {
			return queryStore.Read(ctx, eventstore.Filter{Tags: []string{"scatter:" + strconv.Itoa(i)}}, 0)
		})
	})
	b.Run("bolt/Read/type+tag", func(b *testing.B) {
		read(b, func(i int) func(func(eventstore.Event, error) bool) {
			return queryStore.Read(ctx, eventstore.Filter{Types: eventTypes[:5], Tags: []string{"agg:" + strconv.Itoa(i)}}, 0)
		})
	})
}

// BenchmarkAppendIf compares AppendIf of one event, on a condition whose
// query matches the 100 events of its aggregate's tag (none after After),
// with Append of one event, by one writer and by 16, on the durable
// fixture store.
func BenchmarkAppendIf(b *testing.B) {
	ctx := context.Background()
	for _, writers := range []int{1, 16} {
		for _, conditional := range []bool{false, true} {
			name := fmt.Sprintf("bolt/writers=%d/Append", writers)
			if conditional {
				name = fmt.Sprintf("bolt/writers=%d/AppendIf", writers)
			}
			b.Run(name, func(b *testing.B) {
				s, aggs := queryFixture(b)
				var next atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				var total atomic.Int64
				b.SetParallelism(1)
				procs := writers
				var wg sync.WaitGroup
				per := b.N / procs
				if per == 0 {
					per = 1
				}
				for range procs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						a := int(next.Add(1)-1) % aggs
						agg, tag := "agg-"+strconv.Itoa(a), "agg:"+strconv.Itoa(a)
						q := eventstore.Filter{Tags: []string{tag}}
						var last uint64
						for e, err := range s.Read(ctx, q, 0) {
							if err != nil {
								b.Error(err)
								return
							}
							last = e.Position
						}
						for i := range per {
							e := event(agg, 0, i+1, i)
							e.Tags = []string{tag}
							var out []eventstore.Event
							var err error
							if conditional {
								out, err = s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: q, After: last}, e)
							} else {
								out, err = s.Append(ctx, e)
							}
							if err != nil {
								b.Error(err)
								return
							}
							last = out[0].Position
							total.Add(1)
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(total.Load())/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
