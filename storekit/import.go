package storekit

import (
	"fmt"
	"time"

	"github.com/eventstore-go/eventstore"
)

// PrepareImport validates the events of one Import call (see
// eventstore.Importer) and returns copies ready to store: IDs in canonical
// form, timestamps in UTC truncated to microseconds, metadata copied (nil
// when empty), Position zero. It never modifies events.
//
// Each event follows the rules of Prepare for its fields, and more: ID,
// Timestamp and Version are required (Import keeps them; it assigns none).
// Events of many aggregates may come in one call, but the events of each
// aggregate must have consecutive versions in the order of the call, and
// no ID may come twice. The call holds at most eventstore.MaxImportEvents
// events and eventstore.MaxImportSize bytes of payloads and metadata (one
// event alone is never too large for a call); a call over a limit is
// refused with Field "Events" and the Index of the first event beyond it.
// Every error is an *eventstore.InvalidEventError, which matches
// eventstore.ErrInvalidEvent.
func PrepareImport(events []eventstore.Event, maxPayload int) ([]eventstore.Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	if len(events) > eventstore.MaxImportEvents {
		return nil, invalid(eventstore.MaxImportEvents, "Events", fmt.Sprintf("an Import call holds at most %d events", eventstore.MaxImportEvents))
	}
	// The size limit first, before the payloads are parsed.
	size := 0
	for i, e := range events {
		size += len(e.Payload)
		for k, v := range e.Metadata {
			size += len(k) + len(v)
		}
		if i > 0 && size > eventstore.MaxImportSize {
			return nil, invalid(i, "Events", fmt.Sprintf("an Import call holds at most %d bytes of payloads and metadata", eventstore.MaxImportSize))
		}
	}
	if maxPayload <= 0 {
		maxPayload = eventstore.DefaultMaxPayloadSize
	}
	out := make([]eventstore.Event, len(events))
	last := make(map[string]uint64)           // aggregate ID -> its last version so far
	seen := make(map[string]int, len(events)) // ID -> index
	for i, e := range events {
		if err := checkNames(i, e); err != nil {
			return nil, err
		}
		switch {
		case e.ID == "":
			return nil, invalid(i, "ID", "required by Import, which keeps IDs")
		case e.Timestamp.IsZero():
			return nil, invalid(i, "Timestamp", "required by Import, which keeps timestamps")
		case e.Version == 0:
			return nil, invalid(i, "Version", "required by Import, which keeps versions")
		}
		e, err := prepareEvent(i, e, maxPayload, time.Time{})
		if err != nil {
			return nil, err
		}
		if v, ok := last[e.AggregateID]; ok && e.Version != v+1 {
			return nil, invalid(i, "Version", fmt.Sprintf("version %d of aggregate %q follows version %d in the call: an aggregate's versions must be consecutive, in order", e.Version, e.AggregateID, v))
		}
		last[e.AggregateID] = e.Version
		if _, dup := seen[e.ID]; dup {
			return nil, invalid(i, "ID", "the same ID twice in one Import")
		}
		seen[e.ID] = i
		e.Position = 0
		out[i] = e
	}
	return out, nil
}

// PlanImport decides what an Import call writes, given the store as it is
// inside the transaction that will write. prepared are the events as
// PrepareImport returned them; stored(i) returns the stored event whose ID
// is that of prepared[i] and whether there is one; version returns an
// aggregate's stored version (it is called once per aggregate).
//
// It returns the indexes, in increasing order, of the events to write; the
// others are stored already with the same content and are skipped. The
// backend writes them in that order and gives them the next positions. It
// returns a *eventstore.DuplicateEventError for an ID stored with other
// content, and a *eventstore.ConflictError when the first event of an
// aggregate that is not skipped does not have the stored version + 1;
// errors from stored and version are returned as they are.
func PlanImport(prepared []eventstore.Event, stored func(i int) (eventstore.Event, bool, error), version func(aggregateID string) (uint64, error)) ([]int, error) {
	type aggState struct {
		current uint64 // the stored version
		writing bool   // an event of this call is written after current
	}
	aggs := make(map[string]*aggState)
	write := make([]int, 0, len(prepared))
	for i, e := range prepared {
		a := aggs[e.AggregateID]
		if a == nil {
			v, err := version(e.AggregateID)
			if err != nil {
				return nil, err
			}
			a = &aggState{current: v}
			aggs[e.AggregateID] = a
		}
		s, found, err := stored(i)
		if err != nil {
			return nil, err
		}
		if found {
			if !sameEvent(e, s) || a.writing {
				return nil, &eventstore.DuplicateEventError{ID: e.ID}
			}
			continue
		}
		if !a.writing {
			if e.Version != a.current+1 {
				return nil, &eventstore.ConflictError{AggregateID: e.AggregateID, Expected: e.Version - 1, Actual: a.current}
			}
			a.writing = true
		}
		// PrepareImport checked that the aggregate's later events follow.
		write = append(write, i)
	}
	return write, nil
}
