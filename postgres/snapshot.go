package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

// SaveSnapshot implements eventstore.SnapshotStore. It validates snap with
// storekit.PrepareSnapshot, then upserts it in one statement that keeps
// a stored snapshot of a higher version.
func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return eventstore.ErrClosed
	}
	snap, err := storekit.PrepareSnapshot(snap)
	if err != nil {
		return err
	}
	state := snap.State
	if state == nil {
		state = []byte{} // bytea NOT NULL: no state is an empty one
	}
	_, err = s.pool.Exec(ctx, s.sql.saveSnap,
		snap.AggregateID, strconv.FormatUint(snap.Version, 10), snap.Schema, state, snap.Timestamp)
	return s.mapError(ctx, "save snapshot", err)
}

// LoadSnapshot implements eventstore.SnapshotStore. It returns an error
// matching eventstore.ErrNotFound when the aggregate has no snapshot.
func (s *Store) LoadSnapshot(ctx context.Context, aggregateID string) (eventstore.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Snapshot{}, err
	}
	if s.closed.Load() {
		return eventstore.Snapshot{}, eventstore.ErrClosed
	}
	notFound := fmt.Errorf("postgres: snapshot of %q: %w", aggregateID, eventstore.ErrNotFound)
	if !validName(aggregateID) {
		return eventstore.Snapshot{}, notFound
	}
	var (
		snap    = eventstore.Snapshot{AggregateID: aggregateID}
		version string
		ts      time.Time
	)
	err := s.pool.QueryRow(ctx, s.sql.loadSnap, aggregateID).Scan(&version, &snap.Schema, &snap.State, &ts)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Snapshot{}, notFound
	}
	if err != nil {
		return eventstore.Snapshot{}, s.mapError(ctx, "load snapshot", err)
	}
	if snap.Version, err = strconv.ParseUint(version, 10, 64); err != nil {
		return eventstore.Snapshot{}, fmt.Errorf("postgres: snapshot of %q: version %q: %w", aggregateID, version, eventstore.ErrCorrupt)
	}
	snap.Timestamp = ts.UTC()
	return snap, nil
}

// DeleteSnapshot implements eventstore.SnapshotStore.
func (s *Store) DeleteSnapshot(ctx context.Context, aggregateID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return eventstore.ErrClosed
	}
	if !validName(aggregateID) {
		return nil
	}
	_, err := s.pool.Exec(ctx, s.sql.deleteSnap, aggregateID)
	return s.mapError(ctx, "delete snapshot", err)
}
