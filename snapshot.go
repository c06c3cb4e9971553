package eventstore

import (
	"context"
	"time"
)

// Snapshot is a cached state of an aggregate at one version. It is only a
// cache: deleting it changes no result, since the aggregate can always be
// rebuilt from its events.
type Snapshot struct {
	// AggregateID names the aggregate.
	AggregateID string

	// Version is the aggregate version the state reflects: the state after
	// applying events 1 to Version.
	Version uint64

	// Schema names the shape of State, for example "account/v2". A loader
	// ignores a snapshot whose schema is not the one it expects, so a
	// snapshot written by an older shape of the aggregate is never misread.
	Schema string

	// State is the encoded aggregate state.
	State []byte

	// Timestamp is when the snapshot was taken, in UTC microseconds.
	Timestamp time.Time
}

// SnapshotStore keeps the latest snapshot of each aggregate. Each backend
// provides one beside its events (a bucket in the bolt file, a table in
// PostgreSQL, a map in memory). Implementations are safe for concurrent
// use.
type SnapshotStore interface {
	// SaveSnapshot stores snap unless a snapshot of a higher version of the
	// same aggregate is already stored.
	SaveSnapshot(ctx context.Context, snap Snapshot) error

	// LoadSnapshot returns the aggregate's latest snapshot, or an error
	// matching ErrNotFound when there is none.
	LoadSnapshot(ctx context.Context, aggregateID string) (Snapshot, error)

	// DeleteSnapshot removes the aggregate's snapshot, if any.
	DeleteSnapshot(ctx context.Context, aggregateID string) error
}

// SnapshottingStore is a Store that also keeps snapshots beside its events,
// as every backend in this module does. Code that needs both, such as an
// aggregate repository with snapshots, takes one of these.
type SnapshottingStore interface {
	Store
	SnapshotStore
}
