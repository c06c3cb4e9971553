package storetest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/eventstore-go/eventstore"
)

// refSnapshots is the smallest correct SnapshotStore: it checks that
// RunSnapshots passes a store that follows the contract.
type refSnapshots struct {
	mu    sync.Mutex
	snaps map[string]eventstore.Snapshot
}

func (r *refSnapshots) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	snap, err := eventstore.PrepareSnapshot(snap)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.snaps[snap.AggregateID]; ok && old.Version > snap.Version {
		return nil
	}
	r.snaps[snap.AggregateID] = snap
	return nil
}

func (r *refSnapshots) LoadSnapshot(ctx context.Context, id string) (eventstore.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Snapshot{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	snap, ok := r.snaps[id]
	if !ok {
		return eventstore.Snapshot{}, fmt.Errorf("snapshot of %q: %w", id, eventstore.ErrNotFound)
	}
	snap.State = bytes.Clone(snap.State)
	return snap, nil
}

func (r *refSnapshots) DeleteSnapshot(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.snaps, id)
	return nil
}

func TestRunSnapshots(t *testing.T) {
	RunSnapshots(t, func(t *testing.T) eventstore.SnapshotStore {
		return &refSnapshots{snaps: make(map[string]eventstore.Snapshot)}
	})
}
