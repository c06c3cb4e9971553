package eventstore

import (
	"context"
	"errors"
	"fmt"
)

// ErrInvalidCheckpoint reports a checkpoint name that no CheckpointStore
// accepts. errors.As gives an *InvalidCheckpointError.
var ErrInvalidCheckpoint = errors.New("eventstore: invalid checkpoint name")

// InvalidCheckpointError details why a checkpoint name was refused. It
// matches ErrInvalidCheckpoint.
type InvalidCheckpointError struct {
	Name   string
	Reason string
}

// Error implements error.
func (e *InvalidCheckpointError) Error() string {
	return fmt.Sprintf("eventstore: invalid checkpoint name %q: %s", e.Name, e.Reason)
}

// Unwrap returns ErrInvalidCheckpoint.
func (e *InvalidCheckpointError) Unwrap() error { return ErrInvalidCheckpoint }

// CheckpointStore keeps named positions in the global log: how far a
// consumer, such as a projection, has processed it. Each backend provides
// one beside its events (a bucket in the bolt file, a table in PostgreSQL,
// a map in memory). Implementations are safe for concurrent use.
//
// A checkpoint name is 1 to MaxNameLength (512) bytes of UTF-8 with no NUL
// byte, as an aggregate ID; any other name fails with an error matching
// ErrInvalidCheckpoint, on Load and Save alike.
type CheckpointStore interface {
	// LoadCheckpoint returns the position saved under name, or 0 when none
	// was saved.
	LoadCheckpoint(ctx context.Context, name string) (uint64, error)

	// SaveCheckpoint stores position under name, durably on return, as
	// Append is durable. It may move a checkpoint backwards: a rebuild
	// resets its checkpoint to 0. Saving 0 is the same as never having
	// saved. After Close it fails with ErrClosed.
	SaveCheckpoint(ctx context.Context, name string, position uint64) error
}
