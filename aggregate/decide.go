package aggregate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eventstore-go/eventstore"
)

// Decision is a command decided across aggregates, the way of dynamic
// consistency boundaries (dcb.events): its state is the fold of the
// events one query selects, whatever aggregates they belong to, and its
// events are appended on the condition that no event the query selects
// was stored since they were read.
//
// For example, subscribing a student to a course that holds at most 30
// students, while a student takes at most 5 courses:
//
//	aggregate.Decision[state]{
//		Query: eventstore.Filter{Items: []eventstore.Item{
//			{Types: []string{"StudentSubscribed"}, Tags: []string{"course:" + c}},
//			{Types: []string{"StudentSubscribed"}, Tags: []string{"student:" + s}},
//		}},
//		Evolve: func(st state, e eventstore.Event) (state, error) { ... count ... },
//		Decide: func(st state) ([]eventstore.Event, error) { ... check the limits ... },
//	}
type Decision[S any] struct {
	// Query selects the events the decision depends on.
	Query eventstore.Filter

	// Init returns the state before any event. Nil means S's zero value.
	// It runs once per attempt, so a state holding maps starts afresh.
	Init func() S

	// Evolve returns the state after event e, an event Query selects, in
	// position order. An error ends Decide with that error.
	Evolve func(state S, e eventstore.Event) (S, error)

	// Decide returns the events to append given the state, or an error
	// (the command is refused; nothing is appended). It may run more than
	// once and must have no side effects. No events: nothing is appended.
	// The events may belong to several aggregates; their versions follow
	// the rules of Store.AppendIf (zero appends at the end of each
	// aggregate).
	Decide func(state S) ([]eventstore.Event, error)
}

// Decide runs d against store: it reads the events d.Query selects, folds
// them with d.Evolve, calls d.Decide, and appends its events with
// Store.AppendIf on the condition built from the same query and the last
// position read. When the append fails with ErrConflict (an event that
// the query selects arrived meanwhile, or a version conflict), it pauses
// as Options.Backoff says and starts again from the read, up to
// Options.MaxAttempts attempts in all, then returns the last conflict. The
// retry options are those of a Repository (nil opts: the defaults). It
// returns the stored events.
//
// An error from Evolve or Decide, or any error of the store other than
// ErrConflict, is returned at once; an error matching
// eventstore.ErrUnknownOutcome is not retried, since the events of the
// next attempt would be other events.
func Decide[S any](ctx context.Context, store eventstore.Store, d Decision[S], opts *Options) ([]eventstore.Event, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Backoff == nil {
		o.Backoff = ExponentialBackoff(DefaultMinBackoff, DefaultMaxBackoff)
	}
	for attempt := 1; ; attempt++ {
		var state S
		if d.Init != nil {
			state = d.Init()
		}
		var last uint64
		for e, err := range store.Read(ctx, d.Query, 0) {
			if err != nil {
				return nil, err
			}
			if state, err = d.Evolve(state, e); err != nil {
				return nil, err
			}
			last = e.Position
		}
		events, err := d.Decide(state)
		if err != nil || len(events) == 0 {
			return nil, err
		}
		stored, err := store.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: d.Query, After: last}, events...)
		if err == nil {
			return stored, nil
		}
		if !errors.Is(err, eventstore.ErrConflict) || attempt >= o.MaxAttempts {
			if attempt > 1 {
				err = fmt.Errorf("eventstore: after %d attempts: %w", attempt, err)
			}
			return nil, err
		}
		if pause := o.Backoff(attempt); pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("eventstore: waiting to retry after %d conflicts: %w", attempt, ctx.Err())
			case <-t.C:
			}
		} else if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("eventstore: retrying after %d conflicts: %w", attempt, err)
		}
	}
}
