package eventstore

import (
	"errors"
	"fmt"
)

// Sentinel errors. Stores wrap them with details; match them with
// errors.Is, never with == or by their text.
var (
	// ErrConflict reports that an append expected another aggregate version
	// than the stored one. errors.As gives a *ConflictError.
	ErrConflict = errors.New("eventstore: version conflict")

	// ErrDuplicateEvent reports that an event ID is already stored for a
	// different event.
	ErrDuplicateEvent = errors.New("eventstore: duplicate event ID")

	// ErrInvalidEvent reports input that no store accepts. errors.As gives
	// an *InvalidEventError.
	ErrInvalidEvent = errors.New("eventstore: invalid event")

	// ErrClosed reports use of a store after Close.
	ErrClosed = errors.New("eventstore: store closed")

	// ErrCorrupt reports stored data that fails its integrity checks. A
	// store never returns damaged data as if it were correct.
	ErrCorrupt = errors.New("eventstore: data corrupt")

	// ErrUnknownOutcome reports a commit whose result is not known: the
	// events may or may not be stored. Retrying the same Append with the
	// same event IDs is safe: it either stores them or returns them as
	// stored.
	ErrUnknownOutcome = errors.New("eventstore: commit outcome unknown")

	// ErrNeedsReopen reports that a store refuses writes after a commit
	// whose outcome is unknown, until it is closed and opened again.
	ErrNeedsReopen = errors.New("eventstore: store must be reopened after a failed commit")

	// ErrLocked reports that the store's file is held by another process or
	// another open store.
	ErrLocked = errors.New("eventstore: store locked by another user")

	// ErrUnknownFormat reports a file that is not an event store, or one
	// written in a format this version does not know.
	ErrUnknownFormat = errors.New("eventstore: unknown file format")

	// ErrNotFound reports that something asked for, such as a snapshot, does
	// not exist.
	ErrNotFound = errors.New("eventstore: not found")

	// ErrProjectionRunning reports that a projection cannot be reset or
	// started here because a runner of the same name holds it, in this
	// process or (on a shared server) in another.
	ErrProjectionRunning = errors.New("eventstore: projection is running")
)

// ConflictError details an optimistic concurrency failure. It matches
// ErrConflict.
type ConflictError struct {
	AggregateID string
	Expected    uint64 // the version the append expected: its first version - 1
	Actual      uint64 // the aggregate's stored version
}

// Error implements error.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("eventstore: version conflict on aggregate %q: expected version %d, actual %d",
		e.AggregateID, e.Expected, e.Actual)
}

// Unwrap returns ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// InvalidEventError details why an event was refused. It matches
// ErrInvalidEvent.
type InvalidEventError struct {
	Index  int    // the event's index in the Append call
	Field  string // "ID", "AggregateID", "Type", "Payload", "Metadata", "Timestamp" or "Version"
	Reason string
}

// Error implements error.
func (e *InvalidEventError) Error() string {
	return fmt.Sprintf("eventstore: invalid event %d: %s: %s", e.Index, e.Field, e.Reason)
}

// Unwrap returns ErrInvalidEvent.
func (e *InvalidEventError) Unwrap() error { return ErrInvalidEvent }

// DuplicateEventError names an event ID that is stored for a different
// event. It matches ErrDuplicateEvent.
type DuplicateEventError struct {
	ID string
}

// Error implements error.
func (e *DuplicateEventError) Error() string {
	return fmt.Sprintf("eventstore: duplicate event ID %s", e.ID)
}

// Unwrap returns ErrDuplicateEvent.
func (e *DuplicateEventError) Unwrap() error { return ErrDuplicateEvent }
