package eventstore

import "fmt"

// Condition is the condition of Store.AppendIf: the append fails when a
// stored event that FailIfEventsMatch selects has a position greater than
// After.
//
// A decision reads the events that matter to it with Store.Read(ctx, q, 0),
// decides, and appends with Condition{FailIfEventsMatch: q, After: p},
// where p is the position of the last event it read (0 when it read none):
// the append then succeeds only if no event that would have changed the
// decision was stored in between. This is the append condition of the
// dynamic consistency boundaries specification (dcb.events).
type Condition struct {
	// FailIfEventsMatch selects the events that fail the append. The zero
	// Filter selects every event: the append then succeeds only if the log
	// ends at After.
	FailIfEventsMatch Filter

	// After is the position after which a matching event fails the
	// append: the last position the decision read.
	After uint64
}

// ConditionError reports an AppendIf whose condition failed: an event
// that the condition selects was stored after Condition.After. It matches
// ErrConflict.
type ConditionError struct {
	After    uint64 // Condition.After
	Position uint64 // the position of the first event that failed the condition
}

// Error implements error.
func (e *ConditionError) Error() string {
	return fmt.Sprintf("eventstore: append condition failed: event at position %d matches the condition, after position %d", e.Position, e.After)
}

// Unwrap returns ErrConflict.
func (e *ConditionError) Unwrap() error { return ErrConflict }
