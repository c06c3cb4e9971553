package memory

import (
	"bytes"
	"context"
	"fmt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

// SaveSnapshot implements eventstore.SnapshotStore.
func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	snap, err := storekit.PrepareSnapshot(snap)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.ErrClosed
	}
	if old, ok := s.snapshots[snap.AggregateID]; ok && old.Version > snap.Version {
		return nil
	}
	s.snapshots[snap.AggregateID] = snap
	return nil
}

// LoadSnapshot implements eventstore.SnapshotStore.
func (s *Store) LoadSnapshot(ctx context.Context, aggregateID string) (eventstore.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Snapshot{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return eventstore.Snapshot{}, eventstore.ErrClosed
	}
	snap, ok := s.snapshots[aggregateID]
	if !ok {
		return eventstore.Snapshot{}, fmt.Errorf("snapshot of %q: %w", aggregateID, eventstore.ErrNotFound)
	}
	snap.State = bytes.Clone(snap.State)
	return snap, nil
}

// DeleteSnapshot implements eventstore.SnapshotStore.
func (s *Store) DeleteSnapshot(ctx context.Context, aggregateID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.ErrClosed
	}
	delete(s.snapshots, aggregateID)
	return nil
}
