package bench

import (
	"context"
	"iter"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/postgres"
)

// subscriber is a target with the read side: every store but the raw
// baselines.
type subscriber interface {
	Subscribe(ctx context.Context, afterPosition uint64, filter eventstore.Filter) iter.Seq2[eventstore.Event, error]
	Head(ctx context.Context) (uint64, error)
}

// BenchmarkSubscribe measures the read side of every store that has one.
//
// latency: the time from the return of a durable single-event Append to
// the moment a live subscription, waiting on the same store, yields that
// event (reported as percentiles; a subscription woken before Append
// returned counts as 0). On PostgreSQL the subscriber is another Store, a
// pool of its own on the same schema, so the wake-up travels through
// LISTEN/NOTIFY as it would to another process.
//
// catchup: Subscribe from position 0 over the replay fixture until it has
// yielded every event, the rate to compare with Replay/<store>/all.
func BenchmarkSubscribe(b *testing.B) {
	for _, be := range backends {
		if !be.append || be.grouped {
			continue
		}
		b.Run(be.name+"/latency", func(b *testing.B) { benchSubscribeLatency(b, be) })
	}
	for _, be := range backends {
		if be.replay {
			b.Run(be.name+"/catchup", func(b *testing.B) { benchCatchUp(b, be) })
		}
	}
}

func benchSubscribeLatency(b *testing.B, be backend) {
	h := be.open(b, false, false)
	defer func() {
		h.Close()
		if h.cleanup != nil {
			h.cleanup()
		}
	}()
	if _, ok := h.target.(subscriber); !ok {
		b.Skipf("%s has no Subscribe", be.name)
	}
	var sub subscriber = h.target.(subscriber)
	if h.schema != "" {
		other, err := postgres.Open(background, postgresDSN(), &postgres.Options{Schema: h.schema})
		if err != nil {
			b.Fatal(err)
		}
		defer other.Close()
		sub = other
	}
	ctx, cancel := context.WithCancel(background)
	defer cancel()
	yielded := make(chan time.Time, 1)
	failed := make(chan error, 1)
	go func() {
		for _, err := range sub.Subscribe(ctx, 0, eventstore.Filter{}) {
			if err != nil {
				if ctx.Err() == nil {
					failed <- err
				}
				return
			}
			yielded <- time.Now()
		}
	}()
	wait := func() time.Time {
		select {
		case t := <-yielded:
			return t
		case err := <-failed:
			b.Fatal(err)
		case <-time.After(30 * time.Second):
			b.Fatal("no event yielded within 30s of its Append")
		}
		return time.Time{}
	}
	// One append, untimed, proves the subscription is live.
	if _, err := h.Append(background, event("sub-warmup", 0, 0, 0)); err != nil {
		b.Fatal(err)
	}
	wait()
	lat := newLatencies(b.N)
	m := startMeter(b)
	for i := 0; i < b.N; i++ {
		if _, err := h.Append(background, event("sub", 0, i, i)); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		lat.d = append(lat.d, max(0, wait().Sub(returned)))
	}
	m.stop(b.N)
	lat.report(b)
}

func benchCatchUp(b *testing.B, be backend) {
	f := fixtureFor(b, be, fullShape)
	sub, ok := f.h.target.(subscriber)
	if !ok {
		b.Skipf("%s has no Subscribe", be.name)
	}
	read := func() {
		ctx, cancel := context.WithCancel(background)
		defer cancel()
		n := 0
		for e, err := range sub.Subscribe(ctx, 0, eventstore.Filter{}) {
			if err != nil {
				b.Fatal(err)
			}
			n++
			sink += len(e.Payload)
			if n == f.Total {
				break
			}
		}
	}
	read() // warms the cache, as benchReplay does
	m := startMeter(b)
	for i := 0; i < b.N; i++ {
		read()
	}
	m.stop(b.N * f.Total)
	reportDisk(b, f.Size, f.Total)
}
