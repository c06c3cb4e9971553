package eventstore

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"time"

	"github.com/google/uuid"
)

// NewEvent returns an event of aggregateID and eventType whose payload is v
// marshalled as JSON, with a new UUIDv7 as its ID, so that retrying the
// Append that stores it is safe. Version, Timestamp and Metadata are left
// for the caller (or Append) to fill in.
func NewEvent(aggregateID, eventType string, v any) (Event, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return Event{}, fmt.Errorf("eventstore: marshal %s payload: %w", eventType, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, fmt.Errorf("eventstore: new event ID: %w", err)
	}
	return Event{ID: id.String(), AggregateID: aggregateID, Type: eventType, Payload: payload}, nil
}

// Collect reads every event of seq into a slice. It stops at the first
// error and returns it with the events read before it.
func Collect(seq iter.Seq2[Event, error]) ([]Event, error) {
	var events []Event
	for e, err := range seq {
		if err != nil {
			return events, err
		}
		events = append(events, e)
	}
	return events, nil
}

// Events returns every event of an aggregate, in version order.
func Events(ctx context.Context, s Store, aggregateID string) ([]Event, error) {
	return Collect(s.ReadAggregate(ctx, aggregateID, 0))
}

// EventsSince returns the events of an aggregate with a version greater than
// version, in version order.
func EventsSince(ctx context.Context, s Store, aggregateID string, version uint64) ([]Event, error) {
	return Collect(s.ReadAggregate(ctx, aggregateID, version))
}

// EventsByType returns every event of one type, in position order: the
// input of a projection.
func EventsByType(ctx context.Context, s Store, eventType string) ([]Event, error) {
	return Collect(s.ReadType(ctx, eventType, 0))
}

// EventsInRange returns the events of an aggregate (every aggregate when
// aggregateID is empty) with start <= Timestamp < end, in timestamp order.
func EventsInRange(ctx context.Context, s Store, aggregateID string, start, end time.Time) ([]Event, error) {
	return Collect(s.ReadTime(ctx, aggregateID, start, end))
}
