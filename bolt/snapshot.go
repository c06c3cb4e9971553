package bolt

import (
	"context"
	"fmt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
	bbolt "go.etcd.io/bbolt"
)

// SaveSnapshot implements eventstore.SnapshotStore. It writes in its own
// transaction, durably like Append, and keeps a stored snapshot of a higher
// version.
func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	snap, err := storekit.PrepareSnapshot(snap)
	if err != nil {
		return err
	}
	key := []byte(snap.AggregateID)
	val := appendSnapshotRecord(nil, &snap)
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSnapshots)
		if b == nil {
			return fmt.Errorf("bolt: %w: bucket %q missing", eventstore.ErrCorrupt, bucketSnapshots)
		}
		// lookup, not Get: a write must not add a second copy of a key
		// that a damaged branch page hides from a seek.
		old, err := lookup(b, key, "snapshot")
		if err != nil {
			return err
		}
		if old != nil {
			stored, err := parseSnapshotRecord(key, old)
			// A damaged snapshot is only a cache: replace it.
			if err == nil && stored.Version > snap.Version {
				return errNoWrite
			}
		}
		return b.Put(key, val)
	})
}

// LoadSnapshot implements eventstore.SnapshotStore. A damaged snapshot
// fails with an error matching eventstore.ErrCorrupt.
func (s *Store) LoadSnapshot(ctx context.Context, aggregateID string) (eventstore.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Snapshot{}, err
	}
	var snap eventstore.Snapshot
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSnapshots)
		if b == nil {
			return fmt.Errorf("bolt: %w: bucket %q missing", eventstore.ErrCorrupt, bucketSnapshots)
		}
		v, err := lookup(b, []byte(aggregateID), "snapshot")
		if err != nil {
			return err
		}
		if v == nil {
			return fmt.Errorf("bolt: snapshot of %q: %w", aggregateID, eventstore.ErrNotFound)
		}
		snap, err = parseSnapshotRecord([]byte(aggregateID), v)
		return err
	})
	if err != nil {
		return eventstore.Snapshot{}, err
	}
	return snap, nil
}

// DeleteSnapshot implements eventstore.SnapshotStore.
func (s *Store) DeleteSnapshot(ctx context.Context, aggregateID string) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSnapshots)
		if b == nil {
			return fmt.Errorf("bolt: %w: bucket %q missing", eventstore.ErrCorrupt, bucketSnapshots)
		}
		v, err := lookup(b, []byte(aggregateID), "snapshot")
		if err != nil {
			return err
		}
		if v == nil {
			return errNoWrite
		}
		return b.Delete([]byte(aggregateID))
	})
}
