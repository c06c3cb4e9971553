package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
)

// TestWAL_LiveTail runs live subscriptions, with filters of every kind,
// while rounds of single appends go on, each waiting for the
// subscriptions to yield its events: the appends still share bbolt commits (a subscription that
// keeps up reads them from the live tail, not from a commit of the held
// transaction), and every subscription yields exactly what a read of the
// file gives for its filter, across the commits of several held
// transactions.
func TestWAL_LiveTail(t *testing.T) {
	requireWAL(t)
	defer func(d time.Duration, g int) { walIdle, walHoldGroups = d, g }(walIdle, walHoldGroups)
	walIdle = time.Hour // no idle checkpoint commits the held transaction
	walHoldGroups = 16  // several held transactions
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), walOpts)
	require.NoError(t, err)
	defer s.Close()
	commits := countCommits(s)

	// Each round of appends holds an event for every filter, so that each
	// subscription has something to yield from every round.
	filters := []eventstore.Filter{
		{},
		{Types: []string{"B"}},
		{AggregatePrefix: "x-"},
		{Types: []string{"A", "C"}, AggregatePrefix: "y-"},
		{Tags: []string{"k:v"}},
		{Items: []eventstore.Item{{Types: []string{"C"}}, {Types: []string{"B"}, Tags: []string{"k:v"}}}},
	}
	type sub struct {
		mu  sync.Mutex
		got []eventstore.Event
	}
	subs := make([]*sub, len(filters))
	var wg sync.WaitGroup
	for i, f := range filters {
		subs[i] = &sub{}
		wg.Go(func() {
			for e, err := range s.Subscribe(ctx, 0, f) {
				if err != nil {
					assert.ErrorIs(t, err, context.Canceled)
					return
				}
				subs[i].mu.Lock()
				subs[i].got = append(subs[i].got, e)
				subs[i].mu.Unlock()
			}
		})
	}
	count := func(i int) int {
		subs[i].mu.Lock()
		defer subs[i].mu.Unlock()
		return len(subs[i].got)
	}
	waitFor := func(i, n int) {
		t.Helper()
		require.Eventually(t, func() bool { return count(i) >= n }, 10*time.Second, 50*time.Microsecond, "subscription %d", i)
	}

	const n = 100
	corr := "0190a7e2-3c4d-7e8f-9a0b-%012x" // a UUID, which records store as 16 bytes
	for g := range n {
		meta := map[string]string{"correlation_id": fmt.Sprintf(corr, g), "user_id": "u" + strings.Repeat("x", g%7)}
		for _, e := range []eventstore.Event{
			{AggregateID: fmt.Sprintf("x-%d", g%3), Type: "A", Payload: []byte(fmt.Sprintf(`{"g":%d}`, g)), Metadata: meta},
			{AggregateID: fmt.Sprintf("y-%d", g%4), Type: "B", Payload: []byte(`{}`), Tags: []string{"k:v", fmt.Sprintf("g:%d", g)}},
			{AggregateID: fmt.Sprintf("y-%d", g%4), Type: "C", Payload: []byte(`[1,2]`), Metadata: meta},
			{AggregateID: "z", Type: "B", Payload: []byte(`null`)},
		} {
			_, err := s.Append(ctx, e)
			require.NoError(t, err)
		}
		for i, want := range []int{4, 2, 1, 1, 1, 2} {
			waitFor(i, (g+1)*want)
		}
	}
	// 4n group commits fill 4n/walHoldGroups held transactions; a bbolt
	// commit for each round's reads alone would make n.
	require.Less(t, commits.Load(), int64(n/2), "live subscriptions turned group commits into bbolt commits")

	all, err := eventstore.Collect(s.ReadAll(context.Background(), 0))
	require.NoError(t, err)
	require.Len(t, all, 4*n)
	cancel()
	wg.Wait()
	for i, f := range filters {
		var want []eventstore.Event
		for _, e := range all {
			if f.Match(e) {
				want = append(want, e)
			}
		}
		require.NotEmpty(t, want)
		require.Equal(t, want, subs[i].got, "subscription %d", i)
	}
	require.Zero(t, s.tailSubs.Load(), "ended subscriptions still counted")
}

// TestWAL_LiveTailStops: a subscription that starts while a held
// transaction is under way reads the file once (which commits it), reads
// the next held transaction's group commits from the live tail, and yields
// what a read of the file gives up to where it stops, inside the tail;
// with no subscription running, a new held transaction keeps no tail.
func TestWAL_LiveTailStops(t *testing.T) {
	requireWAL(t)
	defer func(d time.Duration) { walIdle = d }(walIdle)
	walIdle = time.Hour
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), walOpts)
	require.NoError(t, err)
	defer s.Close()
	commits := countCommits(s)
	appendOne := func(i int) {
		_, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(fmt.Sprintf(`{"i":%d}`, i)),
			Metadata: map[string]string{"causation_id": fmt.Sprintf("0190a7e2-3c4d-7e8f-9a0b-%012x", i)}})
		require.NoError(t, err)
	}
	appendOne(0)

	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan eventstore.Event, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e, err := range s.Subscribe(subCtx, 0, eventstore.Filter{}) {
			if err != nil {
				return
			}
			got <- e
			if e.Version == 5 {
				return // stops inside the tail
			}
		}
	}()
	var seen []eventstore.Event
	for i := 1; i < 10; i++ {
		if i < 5 {
			seen = append(seen, <-got)
		}
		appendOne(i)
	}
	seen = append(seen, <-got)
	<-done
	require.Zero(t, s.tailSubs.Load())
	require.Equal(t, int64(1), commits.Load(), "only the first read commits the held transaction")

	want, err := eventstore.Collect(s.ReadAll(ctx, 0)) // commits the held transaction
	require.NoError(t, err)
	require.Len(t, want, 10)
	require.Equal(t, want[:5], seen)
	appendOne(10) // a new held transaction, with no subscription running
	s.wal.tail.mu.Lock()
	on, held := s.wal.tail.on, len(s.wal.tail.payloads)
	s.wal.tail.mu.Unlock()
	require.False(t, on)
	require.Zero(t, held)
}

// TestLiveTail_Span: span hands out the payloads from the one holding the
// position after the subscription's on, only when the tail holds every
// event up to the head; a group commit that does not follow the last
// turns the tail off.
func TestLiveTail_Span(t *testing.T) {
	var tl liveTail
	tl.add(true, true, 10, 12, []byte("a"))
	tl.add(false, true, 13, 13, []byte("b"))
	tl.add(false, true, 14, 20, []byte("c"))
	for _, tc := range []struct {
		after, head uint64
		want        string // the payloads handed out; "-" for none
	}{
		{9, 20, "abc"}, {10, 20, "abc"}, {11, 12, "abc"}, {12, 13, "bc"},
		{13, 14, "c"}, {15, 20, "c"},
		{8, 20, "-"},  // position 9 is not in the tail
		{15, 21, "-"}, // nor is 21
	} {
		var got string
		if ps := tl.span(tc.after, tc.head); ps == nil {
			got = "-"
		} else {
			for _, p := range ps {
				got += string(p)
			}
		}
		require.Equal(t, tc.want, got, "span(%d, %d)", tc.after, tc.head)
	}
	tl.add(false, true, 22, 22, []byte("d")) // 21 is missing
	require.Nil(t, tl.span(19, 20))
	tl.add(true, false, 23, 23, []byte("e")) // a held transaction that no subscription wants
	require.Nil(t, tl.span(22, 23))
	tl.add(true, true, 24, 25, []byte("f"))
	require.Equal(t, [][]byte{[]byte("f")}, tl.span(23, 25))
	tl.clear()
	require.Nil(t, tl.span(23, 25))
}
