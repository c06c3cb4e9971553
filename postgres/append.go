package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/eventstore-go/eventstore"
)

// Append implements eventstore.Store.
//
// It validates events with eventstore.Prepare before any SQL runs, then, in
// one READ COMMITTED transaction: advances log_head (taking the lock that
// serializes appends and hands out positions), looks up the events' IDs and
// the aggregate's version, checks them, and inserts the batch with one
// multi-row INSERT. A lost connection during COMMIT returns an error
// matching eventstore.ErrUnknownOutcome.
func (s *Store) Append(ctx context.Context, events ...eventstore.Event) ([]eventstore.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, eventstore.ErrClosed
	}
	prepared, err := eventstore.Prepare(events, s.opts.MaxPayloadSize)
	if err != nil || len(prepared) == 0 {
		return nil, err
	}

	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return nil, s.mapError(ctx, "begin append", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit; a failed rollback closes the connection

	// One round trip: take the lock, then (seeing every append committed
	// before it) look up the IDs and the aggregate's version.
	ids := make([]string, len(prepared))
	for i, e := range prepared {
		ids[i] = e.ID
	}
	aggID := prepared[0].AggregateID
	batch := &pgx.Batch{}
	batch.Queue(s.sql.lockHead, len(prepared))
	batch.Queue(s.sql.byIDs, ids)
	batch.Queue(s.sql.version, aggID)
	br := tx.SendBatch(ctx, batch)
	var head int64
	if err := br.QueryRow().Scan(&head); err != nil {
		br.Close()
		return nil, s.mapError(ctx, "lock log head", err)
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, s.mapError(ctx, "look up event IDs", err)
	}
	byID := make(map[string]eventstore.Event)
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			rows.Close()
			br.Close()
			return nil, s.mapError(ctx, "look up event IDs", err)
		}
		byID[e.ID] = e
	}
	if err := rows.Err(); err != nil {
		br.Close()
		return nil, s.mapError(ctx, "look up event IDs", err)
	}
	var current int64
	if err := br.QueryRow().Scan(&current); err != nil {
		br.Close()
		return nil, s.mapError(ctx, "read aggregate version", err)
	}
	if err := br.Close(); err != nil {
		return nil, s.mapError(ctx, "lock log head", err)
	}

	if len(byID) > 0 {
		// A retry or a duplicate: write nothing either way.
		stored := make([]eventstore.Event, len(prepared))
		found := make([]bool, len(prepared))
		for i, e := range prepared {
			stored[i], found[i] = byID[e.ID]
		}
		if err := eventstore.CheckRetry(events, stored, found); err != nil {
			return nil, err
		}
		return stored, nil
	}

	if err := eventstore.AssignVersions(prepared, uint64(current)); err != nil {
		return nil, err
	}
	if last := prepared[len(prepared)-1].Version; last > math.MaxInt64 {
		return nil, &eventstore.ConflictError{AggregateID: aggID, Expected: prepared[0].Version - 1, Actual: uint64(current)}
	}
	first := head - int64(len(prepared)) + 1
	var (
		positions  = make([]int64, len(prepared))
		types      = make([]string, len(prepared))
		versions   = make([]int64, len(prepared))
		timestamps = make([]pgtype.Timestamptz, len(prepared))
		payloads   = make([]string, len(prepared))
		metadata   = make([]*string, len(prepared))
	)
	for i := range prepared {
		e := &prepared[i]
		e.Position = uint64(first) + uint64(i)
		positions[i] = int64(e.Position)
		types[i] = e.Type
		versions[i] = int64(e.Version)
		timestamps[i] = pgtype.Timestamptz{Time: e.Timestamp, Valid: true}
		payloads[i] = string(e.Payload)
		if e.Metadata != nil {
			m, err := json.Marshal(e.Metadata)
			if err != nil {
				return nil, fmt.Errorf("postgres: encode metadata: %w", err)
			}
			ms := string(m)
			metadata[i] = &ms
		}
	}
	if _, err := tx.Exec(ctx, s.sql.insert, ids, positions, aggID, types, versions, timestamps, payloads, metadata); err != nil {
		err = s.mapError(ctx, "insert events", err)
		if errors.Is(err, eventstore.ErrConflict) {
			// The version check above saw every committed append, so only a
			// writer that bypasses log_head gets here.
			return nil, &eventstore.ConflictError{AggregateID: aggID, Expected: prepared[0].Version - 1, Actual: uint64(current)}
		}
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		if s.closed.Load() && !errors.Is(commitError(err), eventstore.ErrUnknownOutcome) {
			return nil, fmt.Errorf("postgres: commit: %w", eventstore.ErrClosed)
		}
		return nil, commitError(err)
	}
	return prepared, nil
}

// Version implements eventstore.Store.
func (s *Store) Version(ctx context.Context, aggregateID string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, eventstore.ErrClosed
	}
	if !validName(aggregateID) {
		return 0, nil
	}
	var v int64
	if err := s.pool.QueryRow(ctx, s.sql.version, aggregateID).Scan(&v); err != nil {
		return 0, s.mapError(ctx, "read aggregate version", err)
	}
	return uint64(v), nil
}
