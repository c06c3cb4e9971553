package aggregate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/aggregate"
	"github.com/eventstore-go/eventstore/memory"
)

// racing appends an event the query selects right before each of its
// first `races` AppendIfs: a writer that got there first.
type racing struct {
	*memory.Store
	races int
	conds []eventstore.Condition
}

func (r *racing) AppendIf(ctx context.Context, cond eventstore.Condition, events ...eventstore.Event) ([]eventstore.Event, error) {
	r.conds = append(r.conds, cond)
	if r.races > 0 {
		r.races--
		if _, err := r.Store.Append(ctx, eventstore.Event{AggregateID: "other", Type: "Counted", Payload: []byte(`1`), Tags: []string{"counter"}}); err != nil {
			return nil, err
		}
	}
	return r.Store.AppendIf(ctx, cond, events...)
}

func counter() aggregate.Decision[int] {
	return aggregate.Decision[int]{
		Query:  eventstore.Filter{Types: []string{"Counted"}, Tags: []string{"counter"}},
		Evolve: func(n int, _ eventstore.Event) (int, error) { return n + 1, nil },
		Decide: func(n int) ([]eventstore.Event, error) {
			if n >= 10 {
				return nil, errors.New("full")
			}
			return []eventstore.Event{{AggregateID: "mine", Type: "Counted", Payload: []byte(`1`), Tags: []string{"counter"}}}, nil
		},
	}
}

func TestDecide_RetriesOnConditionConflict(t *testing.T) {
	ctx := context.Background()
	s := &racing{Store: memory.New(nil), races: 2}
	d := counter()
	_, err := s.Store.Append(ctx, eventstore.Event{AggregateID: "other", Type: "Counted", Payload: []byte(`1`), Tags: []string{"counter"}})
	require.NoError(t, err)
	out, err := aggregate.Decide(ctx, s, d, &aggregate.Options{Backoff: func(int) time.Duration { return 0 }})
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Equal(t, uint64(4), out[0].Position)
	// Each attempt's condition: the decision's query after the last
	// position it read.
	require.Equal(t, []eventstore.Condition{{FailIfEventsMatch: d.Query, After: 1}, {FailIfEventsMatch: d.Query, After: 2}, {FailIfEventsMatch: d.Query, After: 3}}, s.conds)
}

func TestDecide_GivesUpAfterMaxAttempts(t *testing.T) {
	s := &racing{Store: memory.New(nil), races: 5}
	_, err := aggregate.Decide(context.Background(), s, counter(), &aggregate.Options{MaxAttempts: 3, Backoff: func(int) time.Duration { return 0 }})
	var ce *eventstore.ConditionError
	require.ErrorAs(t, err, &ce)
	require.Len(t, s.conds, 3)
}

func TestDecide_RefusalAppendsNothing(t *testing.T) {
	ctx := context.Background()
	s := memory.New(nil)
	for range 10 {
		_, err := aggregate.Decide(ctx, s, counter(), nil)
		require.NoError(t, err)
	}
	_, err := aggregate.Decide(ctx, s, counter(), nil)
	require.EqualError(t, err, "full")
	head, err := s.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(10), head)
}
