package storekit

import (
	"bytes"
	"time"

	"github.com/eventstore-go/eventstore"
)

// PrepareSnapshot validates a snapshot for SaveSnapshot and returns a copy
// ready to store: State copied, Timestamp set to the current time when zero
// and otherwise put in the form of NormalizeTime. It never modifies snap.
// Every SnapshotStore calls it first, so that every backend accepts and
// rejects the same snapshots.
//
// It returns an error matching ErrInvalidEvent (an *InvalidEventError whose
// Index is 0) for:
//   - an AggregateID that is empty, longer than MaxNameLength, not UTF-8,
//     or holds a NUL byte;
//   - a Version of 0: a snapshot reflects at least one event;
//   - a Schema longer than MaxNameLength, not UTF-8, or holding a NUL byte
//     (an empty Schema is allowed);
//   - a Timestamp outside the years 1 to 9999.
//
// State is opaque bytes of any length, including none.
func PrepareSnapshot(snap eventstore.Snapshot) (eventstore.Snapshot, error) {
	if err := checkName(snap.AggregateID); err != "" {
		return eventstore.Snapshot{}, invalid(0, "AggregateID", err)
	}
	if snap.Version == 0 {
		return eventstore.Snapshot{}, invalid(0, "Version", "a snapshot's version must be at least 1")
	}
	if len(snap.Schema) > eventstore.MaxNameLength {
		return eventstore.Snapshot{}, invalid(0, "Schema", "longer than 512 bytes")
	}
	if !validString(snap.Schema) {
		return eventstore.Snapshot{}, invalid(0, "Schema", "not UTF-8 or holds a NUL byte")
	}
	if snap.Timestamp.IsZero() {
		snap.Timestamp = eventstore.NormalizeTime(time.Now())
	} else {
		snap.Timestamp = eventstore.NormalizeTime(snap.Timestamp)
		if snap.Timestamp.Before(minTimestamp) || snap.Timestamp.After(maxTimestamp) {
			return eventstore.Snapshot{}, invalid(0, "Timestamp", "outside the years 1 to 9999")
		}
	}
	snap.State = bytes.Clone(snap.State)
	return snap, nil
}
