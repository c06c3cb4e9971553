package storetest

import (
	"context"
	"fmt"
	"iter"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
)

// wait bounds how long a test waits for something that must happen soon:
// an event committed or a shutdown. It is a deadlock detector, not a
// measure of speed.
const wait = 30 * time.Second

// shutdown is how soon cancelling ctx or Close must end a subscription.
const shutdown = time.Second

// subscription runs Subscribe in its own goroutine and hands over what it
// yields.
type subscription struct {
	events chan eventstore.Event
	err    chan error // the one error the iterator yielded, or nil when it ended without one
	cancel context.CancelFunc
}

func subscribe(t *testing.T, s eventstore.Store, after uint64, f eventstore.Filter) *subscription {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub := &subscription{events: make(chan eventstore.Event, 1<<16), err: make(chan error, 1), cancel: cancel}
	seq := s.Subscribe(ctx, after, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		for e, e2 := range seq {
			if e2 != nil {
				err = e2
				break
			}
			sub.events <- e
		}
		sub.err <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(wait):
			t.Errorf("subscription still running %v after its ctx ended", wait)
		}
	})
	return sub
}

// next returns the next event the subscription yields.
func (sub *subscription) next(t *testing.T) eventstore.Event {
	t.Helper()
	select {
	case e := <-sub.events:
		return e
	case err := <-sub.err:
		t.Fatalf("subscription ended with %v, want another event", err)
	case <-time.After(wait):
		t.Fatalf("no event after %v", wait)
	}
	return eventstore.Event{}
}

// take returns the next n events the subscription yields.
func (sub *subscription) take(t *testing.T, n int) []eventstore.Event {
	t.Helper()
	out := make([]eventstore.Event, 0, n)
	for len(out) < n {
		out = append(out, sub.next(t))
	}
	return out
}

// until returns the events the subscription yields up to the one whose ID
// is id, which it leaves out.
func (sub *subscription) until(t *testing.T, id string) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for {
		e := sub.next(t)
		if e.ID == id {
			return out
		}
		out = append(out, e)
	}
}

// ended waits, at most limit, for the subscription to end, and returns its
// error.
func (sub *subscription) ended(t *testing.T, limit time.Duration) error {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case <-sub.events: // yielded before the end: not what this checks
		case err := <-sub.err:
			return err
		case <-deadline:
			t.Fatalf("subscription still running %v later", limit)
			return nil
		}
	}
}

// matching returns the events of all that f selects.
func matching(all []eventstore.Event, f eventstore.Filter) []eventstore.Event {
	var out []eventstore.Event
	for _, e := range all {
		if f.Match(e) {
			out = append(out, e)
		}
	}
	return out
}

// marker appends an event that every filter of these tests selects (type
// "Marker" is in each Types list; its aggregate, "order-1-marker", starts
// with each prefix),
// and returns its ID: a subscription that yields it has yielded everything
// committed before it.
func marker(t *testing.T, s eventstore.Store) string {
	t.Helper()
	return mustAppend(t, s, ev("order-1-marker", "Marker", 0, `{}`))[0].ID
}

// The filters of these tests; each selects the marker.
var subscribeFilters = map[string]eventstore.Filter{
	"All":          {},
	"Types":        {Types: []string{"Placed", "Marker"}},
	"OneType":      {Types: []string{"Marker"}},
	"Prefix":       {AggregatePrefix: "order-"},
	"TypesPrefix":  {Types: []string{"Shipped", "Marker", "NeverStored"}, AggregatePrefix: "order-"},
	"ImpossibleOr": {Types: []string{"", "Marker"}},
}

// fillMixed appends n events of aggregates "order-i" and "user-i" and types
// Placed, Shipped and Renamed, in batches of 1 to 3.
func fillMixed(t *testing.T, s eventstore.Store, n int) {
	t.Helper()
	types := []string{"Placed", "Shipped", "Renamed"}
	for i := 0; i < n; {
		agg := fmt.Sprintf("order-%d", i%7)
		if i%3 == 0 {
			agg = fmt.Sprintf("user-%d", i%5)
		}
		var batch []eventstore.Event
		for j := 0; j <= i%3 && i < n; j++ {
			batch = append(batch, ev(agg, types[(i+j)%3], 0, fmt.Sprint(i)))
			i++
		}
		mustAppend(t, s, batch...)
	}
}

func testSubscribe(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	t.Run("CatchUpThenLive", func(t *testing.T) {
		s := newStore(t)
		stored := mustAppend(t, s, ev("a", "T", 0, `1`), ev("a", "U", 0, `2`))
		stored = append(stored, mustAppend(t, s, ev("b", "U", 0, `3`))...)
		sub := subscribe(t, s, 0, eventstore.Filter{})
		requireSameEvents(t, stored, sub.take(t, 3))
		live := mustAppend(t, s, ev("c", "T", 0, `4`))
		requireSameEvents(t, live, sub.take(t, 1))
		live = mustAppend(t, s, ev("a", "T", 0, `5`), ev("a", "T", 0, `6`))
		requireSameEvents(t, live, sub.take(t, 2))
	})

	t.Run("Filters", func(t *testing.T) {
		s := newStore(t)
		fillMixed(t, s, 40)
		subs := map[string]*subscription{}
		for name, f := range subscribeFilters {
			subs[name] = subscribe(t, s, 0, f)
		}
		fillMixed(t, s, 20) // live, or caught up: either way once each
		id := marker(t, s)
		all := readAll(t, s)
		for name, f := range subscribeFilters {
			want := matching(all, f)
			requireSameEvents(t, want[:len(want)-1], subs[name].until(t, id))
		}
	})

	t.Run("AfterHeadYieldsOnlyNew", func(t *testing.T) {
		s := newStore(t)
		fillMixed(t, s, 10)
		head, err := s.Head(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(10), head)
		sub := subscribe(t, s, head, eventstore.Filter{})
		live := mustAppend(t, s, ev("new", "T", 0, `{}`))
		requireSameEvents(t, live, sub.take(t, 1))
		require.Equal(t, head+1, live[0].Position)
	})

	t.Run("ResumeFromEveryPosition", func(t *testing.T) {
		s := newStore(t)
		fillMixed(t, s, 30)
		id := marker(t, s)
		all := readAll(t, s)
		for _, f := range subscribeFilters {
			want := matching(all, f)
			seen := subscribe(t, s, 0, f).until(t, id)
			requireSameEvents(t, want[:len(want)-1], seen)
			// Resume after each position seen, and after positions between
			// them: the rest, exactly.
			for _, after := range append([]uint64{0, 3}, positions(seen)...) {
				var rest []eventstore.Event
				for _, e := range want {
					if e.Position > after {
						rest = append(rest, e)
					}
				}
				got := subscribe(t, s, after, f).take(t, len(rest))
				requireSameEvents(t, rest, got)
			}
		}
	})

	t.Run("ConcurrentWriters", func(t *testing.T) {
		s := newStore(t)
		fillMixed(t, s, 5)
		filters := map[string]eventstore.Filter{
			"All":         {},
			"TypesPrefix": subscribeFilters["TypesPrefix"],
			"Prefix":      {AggregatePrefix: "order-1"}, // order-1, order-10, ... and the marker
		}
		subs := map[string]*subscription{}
		for name, f := range filters {
			subs[name] = subscribe(t, s, 0, f)
		}
		const writers, calls = 16, 20
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				types := []string{"Placed", "Shipped"}
				agg := fmt.Sprintf("order-%d", w)
				if w%4 == 3 {
					agg = fmt.Sprintf("user-%d", w)
				}
				for c := range calls {
					batch := make([]eventstore.Event, 1+c%3)
					for i := range batch {
						batch[i] = ev(agg, types[(c+i)%2], 0, fmt.Sprint(c))
					}
					if _, err := s.Append(ctx, batch...); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		id := marker(t, s)
		all := readAll(t, s)
		require.Equal(t, seq(1, uint64(len(all))), positions(all))
		for name, f := range filters {
			want := matching(all, f)
			requireSameEvents(t, want[:len(want)-1], subs[name].until(t, id))
		}
	})

	t.Run("FailedAppendsNeverSeen", func(t *testing.T) {
		s := newStore(t)
		first := mustAppend(t, s, ev("a", "T", 1, `{}`))
		sub := subscribe(t, s, 0, eventstore.Filter{})
		requireSameEvents(t, first, sub.take(t, 1))

		_, err := s.Append(ctx, ev("a", "T", 1, `{"conflict":true}`))
		require.ErrorIs(t, err, eventstore.ErrConflict)
		_, err = s.Append(ctx, ev("a", "T", 2, `not json`))
		require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
		dup := ev("b", "T", 0, `{}`)
		dup.ID = first[0].ID
		_, err = s.Append(ctx, dup)
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
		_, err = s.Append(ctx, first[0]) // a retry: stored already, not again
		require.NoError(t, err)

		id := marker(t, s)
		require.Empty(t, sub.until(t, id), "a failed or retried append was yielded")
	})

	t.Run("CancelEnds", func(t *testing.T) {
		s := newStore(t)
		mustAppend(t, s, ev("a", "T", 0, `{}`))
		sub := subscribe(t, s, 0, eventstore.Filter{})
		sub.take(t, 1) // caught up: now it waits
		sub.cancel()
		require.ErrorIs(t, sub.ended(t, shutdown), context.Canceled)

		// A ctx that has ended before the first read.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := eventstore.Collect(s.Subscribe(cctx, 0, eventstore.Filter{}))
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("CloseEnds", func(t *testing.T) {
		s := newStore(t)
		mustAppend(t, s, ev("a", "T", 0, `{}`))
		subs := []*subscription{
			subscribe(t, s, 0, eventstore.Filter{}),
			subscribe(t, s, 1, eventstore.Filter{Types: []string{"Nothing"}}),
		}
		subs[0].take(t, 1)
		closed := make(chan error, 1)
		go func() { closed <- s.Close() }()
		for _, sub := range subs {
			require.ErrorIs(t, sub.ended(t, shutdown), eventstore.ErrClosed)
		}
		select {
		case err := <-closed:
			require.NoError(t, err)
		case <-time.After(wait):
			t.Fatal("Close blocked")
		}
		// Subscribing after Close yields ErrClosed and stops.
		_, err := eventstore.Collect(s.Subscribe(ctx, 0, eventstore.Filter{}))
		require.ErrorIs(t, err, eventstore.ErrClosed)
		_, err = s.Head(ctx)
		require.ErrorIs(t, err, eventstore.ErrClosed)
	})

	t.Run("BreakReleases", func(t *testing.T) {
		s := newStore(t)
		fillMixed(t, s, 1100) // more than a page of every backend
		for _, after := range []uint64{0, 1100} {
			done := make(chan struct{})
			go func() {
				defer close(done)
				if after == 1100 {
					go func() { time.Sleep(10 * time.Millisecond); mustAppendNoFail(s) }()
				}
				for _, err := range s.Subscribe(ctx, after, eventstore.Filter{}) {
					if err != nil {
						t.Error(err)
					}
					break
				}
			}()
			select {
			case <-done:
			case <-time.After(wait):
				t.Fatal("a subscription did not end at break")
			}
		}
		// Nothing stays held: Close does not wait for anything (on bolt it
		// would wait for a read transaction left open).
		closed := make(chan error, 1)
		go func() { closed <- s.Close() }()
		select {
		case err := <-closed:
			require.NoError(t, err)
		case <-time.After(shutdown):
			t.Fatal("Close blocked after subscriptions ended by break")
		}
	})

	t.Run("Head", func(t *testing.T) {
		s := newStore(t)
		head, err := s.Head(ctx)
		require.NoError(t, err)
		require.Zero(t, head)
		out := mustAppend(t, s, ev("a", "T", 0, `{}`), ev("a", "T", 0, `{}`))
		head, err = s.Head(ctx)
		require.NoError(t, err)
		require.Equal(t, out[1].Position, head)
		_, err = s.Append(ctx, ev("a", "T", 1, `{}`))
		require.ErrorIs(t, err, eventstore.ErrConflict)
		head, err = s.Head(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(2), head, "a failed append moved the head")
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err = s.Head(cctx)
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("UnpulledSubscriberBlocksNoAppend", func(t *testing.T) {
		s := newStore(t)
		fillMixed(t, s, 1100)
		// Pulled once, then left alone with the rest of its page.
		next, stop := iter.Pull2(s.Subscribe(ctx, 0, eventstore.Filter{}))
		defer stop()
		e, err, ok := next()
		require.True(t, ok)
		require.NoError(t, err)
		require.Equal(t, uint64(1), e.Position)
		// And one caught up and waiting, never pulled again.
		next2, stop2 := iter.Pull2(s.Subscribe(ctx, 1099, eventstore.Filter{}))
		defer stop2()
		_, err, _ = next2()
		require.NoError(t, err)

		actx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		for i := range 100 {
			_, err := s.Append(actx, ev("writer", "T", 0, fmt.Sprint(i)))
			require.NoError(t, err, "append %d with unpulled subscriptions", i)
		}
		e, err, ok = next()
		require.True(t, ok)
		require.NoError(t, err)
		require.Equal(t, uint64(2), e.Position, "the slow subscriber goes on where it stopped")
	})

	t.Run("IdleSubscriptions", func(t *testing.T) {
		// 1,000 idle subscriptions are 1,000 blocked goroutines: measure
		// what they cost (reported, not asserted beyond a loose bound), and
		// check that each still wakes for a commit and ends on cancel.
		s := newStore(t)
		fillMixed(t, s, 10)
		const n = 1000
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		got := make(chan eventstore.Event, n)
		ended := make(chan error, n)
		for range n {
			go func() {
				var err error
				for e, e2 := range s.Subscribe(sctx, 10, eventstore.Filter{Types: []string{"Marker"}}) {
					if e2 != nil {
						err = e2
						break
					}
					got <- e
				}
				ended <- err
			}()
		}
		id := marker(t, s)
		for range n {
			select {
			case e := <-got:
				require.Equal(t, id, e.ID)
			case <-time.After(wait):
				t.Fatal("an idle subscription did not wake for a commit")
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := int64(after.HeapInuse) - int64(before.HeapInuse)
		stack := int64(after.StackInuse) - int64(before.StackInuse)
		t.Logf("%d idle subscriptions: %d bytes of heap and %d of stack each", n, heap/n, stack/n)
		require.Less(t, (heap+stack)/n, int64(256<<10), "bytes per idle subscription")
		cancel()
		for range n {
			select {
			case err := <-ended:
				require.ErrorIs(t, err, context.Canceled)
			case <-time.After(wait):
				t.Fatal("an idle subscription did not end on cancel")
			}
		}
	})
}

// mustAppendNoFail appends one event, ignoring the result: for goroutines
// that may outlive their test's checks.
func mustAppendNoFail(s eventstore.Store) {
	_, _ = s.Append(context.Background(), ev("late", "T", 0, `{}`))
}
