package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/postgres"
)

// mustNew returns a store in a fresh schema on a pool of maxConns
// connections that the test owns, so that many goroutines really run
// transactions at once rather than queueing for a connection.
func mustNew(tb testing.TB, maxConns int32) *postgres.Store {
	tb.Helper()
	pgtest.Admin(tb)
	schema := pgtest.FreshSchema(tb)
	cfg, err := pgxpool.ParseConfig(pgtest.DSN())
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	s, err := postgres.New(context.Background(), pool, &postgres.Options{Schema: schema})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// TestFollowersNeverSkip is the proof that positions are handed out in
// commit order: 16 writers on four stores append (some of them failing on
// stale versions, which must consume no position) while three followers
// poll the global log by position. Every follower must see every acknowledged event
// exactly once, in one order, at positions 1..N; a position assigned out
// of commit order shows up as a follower seeing last+2 before last+1.
func TestFollowersNeverSkip(t *testing.T) {
	const (
		writers  = 16
		duration = 3 * time.Second
	)
	// Four stores on one schema, as four processes would be: each store
	// runs one pipeline at a time (group commit), so it takes several to
	// have transactions really race at the server.
	s := mustNew(t, 8)
	ctx := context.Background()
	var stores []*postgres.Store
	for range 4 {
		other, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: s.Schema()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		stores = append(stores, other)
	}

	var (
		mu    sync.Mutex
		acked = map[string]uint64{} // event ID -> position Append returned
	)
	stop := make(chan struct{})
	var writing sync.WaitGroup
	for w := range writers {
		writing.Go(func() {
			s := stores[w%len(stores)]
			agg := fmt.Sprint("writer-", w)
			var version uint64
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%7 == 3 {
					// A stale version: takes the lock, conflicts, rolls back.
					_, err := s.Append(ctx, eventstore.Event{AggregateID: agg, Type: "Stale", Version: max(version, 1), Payload: []byte(`{}`)})
					if !errors.Is(err, eventstore.ErrConflict) {
						t.Errorf("stale append: %v, want ErrConflict", err)
						return
					}
					continue
				}
				batch := make([]eventstore.Event, 1+i%3)
				for j := range batch {
					batch[j] = eventstore.Event{AggregateID: agg, Type: "Written", Payload: fmt.Appendf(nil, `{"w":%d,"i":%d,"j":%d}`, w, i, j)}
				}
				out, err := s.Append(ctx, batch...)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				version = out[len(out)-1].Version
				mu.Lock()
				for _, e := range out {
					acked[e.ID] = e.Position
				}
				mu.Unlock()
			}
		})
	}

	// A follower polls ReadAll from its last position until it has seen
	// final events (known once the writers stop). restartEvery > 0 makes it
	// abandon its read after that many events and start a new one from its
	// last position.
	var final atomic.Uint64
	type seen struct {
		id  string
		pos uint64
	}
	follow := func(name string, restartEvery int) []seen {
		var got []seen
		var last uint64
		for {
			n := 0
			for e, err := range s.ReadAll(ctx, last) {
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return got
				}
				if e.Position != last+1 {
					t.Errorf("%s: after position %d read %d: a skip or a repeat", name, last, e.Position)
					return got
				}
				got = append(got, seen{e.ID, e.Position})
				last = e.Position
				if n++; restartEvery > 0 && n == restartEvery {
					break
				}
			}
			if f := final.Load(); f != 0 && last >= f {
				return got
			}
			if n == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	results := make([][]seen, 3)
	var following sync.WaitGroup
	following.Go(func() { results[0] = follow("from the start", 0) })
	following.Go(func() {
		time.Sleep(duration / 2)
		results[1] = follow("joining late", 0)
	})
	following.Go(func() { results[2] = follow("restarting", 37) })

	time.Sleep(duration)
	close(stop)
	writing.Wait()
	if t.Failed() {
		final.Store(1) // let the followers end
		following.Wait()
		return
	}
	n := uint64(len(acked))
	final.Store(n)
	following.Wait()

	if n < 100 {
		t.Fatalf("only %d events appended in %v: the test proves little", n, duration)
	}
	for i, got := range results {
		if uint64(len(got)) != n {
			t.Fatalf("follower %d saw %d events, want %d", i, len(got), n)
		}
		for j, e := range got {
			if e.pos != uint64(j+1) {
				t.Fatalf("follower %d: event %d at position %d", i, j, e.pos)
			}
			if p, ok := acked[e.id]; !ok || p != e.pos {
				t.Fatalf("follower %d: event %s at position %d; Append returned position %d (acknowledged: %v)", i, e.id, e.pos, p, ok)
			}
			if e != results[0][j] {
				t.Fatalf("followers 0 and %d disagree at position %d", i, j+1)
			}
		}
	}
	t.Logf("%d writers appended %d events in %v; 3 followers saw all of them, once, in order", writers, n, duration)
}
