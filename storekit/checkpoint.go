package storekit

import "github.com/eventstore-go/eventstore"

// CheckCheckpointName returns an error matching
// eventstore.ErrInvalidCheckpoint (an *eventstore.InvalidCheckpointError)
// unless name is 1 to eventstore.MaxNameLength bytes of UTF-8 with no NUL
// byte: the rule of aggregate IDs. Every CheckpointStore calls it first, in
// LoadCheckpoint and SaveCheckpoint alike.
func CheckCheckpointName(name string) error {
	if reason := checkName(name); reason != "" {
		return &eventstore.InvalidCheckpointError{Name: name, Reason: reason}
	}
	return nil
}
