package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/memory"
)

// Append a user's history, then replay it.
func Example() {
	ctx := context.Background()
	var store eventstore.Store = memory.New(nil) // or bolt.Open, or postgres.Open
	defer store.Close()

	created, _ := eventstore.NewEvent("user-123", "UserCreated", map[string]string{"name": "John Doe", "email": "john@example.com"})
	renamed, _ := eventstore.NewEvent("user-123", "UserRenamed", map[string]string{"name": "Jane Doe"})
	created.Version, renamed.Version = 1, 2 // optimistic concurrency: this must be the aggregate's start
	if _, err := store.Append(ctx, created, renamed); err != nil {
		fmt.Println(err)
		return
	}

	events, err := eventstore.Events(ctx, store, "user-123")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range events {
		fmt.Printf("v%d %s %s\n", e.Version, e.Type, e.Payload)
	}
	// Output:
	// v1 UserCreated {"email":"john@example.com","name":"John Doe"}
	// v2 UserRenamed {"name":"Jane Doe"}
}

// A writer that read a stale version gets ErrConflict and writes nothing.
func ExampleConflictError() {
	ctx := context.Background()
	store := memory.New(nil)
	defer store.Close()

	first, _ := eventstore.NewEvent("acct-1", "AccountOpened", nil)
	first.Version = 1
	store.Append(ctx, first)

	again, _ := eventstore.NewEvent("acct-1", "AccountOpened", nil)
	again.Version = 1 // someone else already wrote version 1
	_, err := store.Append(ctx, again)

	var conflict *eventstore.ConflictError
	if errors.As(err, &conflict) {
		fmt.Printf("conflict: expected %d, stored %d\n", conflict.Expected, conflict.Actual)
	}
	fmt.Println(errors.Is(err, eventstore.ErrConflict))
	// Output:
	// conflict: expected 0, stored 1
	// true
}

// A caller that lost Append's answer retries with the same events: the
// retry returns what was stored and writes nothing.
func ExampleStore_Append_retry() {
	ctx := context.Background()
	store := memory.New(nil)
	defer store.Close()

	e, _ := eventstore.NewEvent("order-9", "OrderPlaced", map[string]int{"total": 42})
	first, _ := store.Append(ctx, e)
	retried, err := store.Append(ctx, e) // as if the first answer was lost
	fmt.Println(err, first[0].Position == retried[0].Position)

	all, _ := eventstore.Collect(store.ReadAll(ctx, 0))
	fmt.Println(len(all), "event stored")
	// Output:
	// <nil> true
	// 1 event stored
}

// Bad input is refused before anything is written.
func ExampleInvalidEventError() {
	store := memory.New(nil)
	defer store.Close()

	_, err := store.Append(context.Background(), eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{not json`)})
	var invalid *eventstore.InvalidEventError
	if errors.As(err, &invalid) {
		fmt.Println(invalid.Field, "-", invalid.Reason)
	}
	// Output:
	// Payload - not a JSON document in UTF-8
}

// A projection follows the global log by position, resuming after the last
// position it has seen.
func ExampleStore_ReadAll() {
	ctx := context.Background()
	store := memory.New(nil)
	defer store.Close()
	for _, agg := range []string{"user-1", "user-2", "user-1"} {
		e, _ := eventstore.NewEvent(agg, "Visited", nil)
		store.Append(ctx, e)
	}

	var last uint64 = 1 // checkpoint saved by the projection
	for e, err := range store.ReadAll(ctx, last) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(e.Position, e.AggregateID)
		last = e.Position
	}
	// Output:
	// 2 user-2
	// 3 user-1
}

// Temporal queries read by timestamp over a half-open range [start, end).
func ExampleEventsInRange() {
	ctx := context.Background()
	store := memory.New(nil)
	defer store.Close()
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, typ := range []string{"Opened", "Deposited", "Withdrawn"} {
		e, _ := eventstore.NewEvent("acct-7", typ, nil)
		e.Timestamp = day.Add(time.Duration(i) * 24 * time.Hour)
		store.Append(ctx, e)
	}
	week, _ := eventstore.EventsInRange(ctx, store, "acct-7", day.Add(24*time.Hour), day.Add(7*24*time.Hour))
	for _, e := range week {
		fmt.Println(e.Timestamp.Format(time.DateOnly), e.Type)
	}
	// Output:
	// 2025-01-02 Deposited
	// 2025-01-03 Withdrawn
}
