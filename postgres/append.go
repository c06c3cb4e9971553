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
// It validates events with eventstore.Prepare before any SQL runs, then
// sends one pipeline, in one round trip: BEGIN; lock log_head (the lock that
// serializes appends and hands out positions, held until COMMIT); one
// statement that reads the aggregate's version, looks up the event IDs and,
// if the append is neither a retry nor a conflict, inserts every event and
// advances log_head; COMMIT. The lock is thus held for the time the server
// takes to run the statement and flush the commit, never across a network
// round trip. A retry or a conflict commits nothing and is decided by the
// shared rules (eventstore.CheckRetry, eventstore.AssignVersions). A
// connection lost while the pipeline was in flight returns an error
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

	n := len(prepared)
	var (
		aggID      = prepared[0].AggregateID
		ids        = make([]string, n)
		types      = make([]string, n)
		timestamps = make([]pgtype.Timestamptz, n)
		payloads   = make([]string, n)
		metadata   = make([]*string, n)
	)
	for i, e := range prepared {
		ids[i] = e.ID
		types[i] = e.Type
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
	// The first version asked for; 0 appends at the end. A version beyond
	// bigint never matches, and AssignVersions below reports the conflict.
	first := int64(-1)
	if v := prepared[0].Version; v <= math.MaxInt64 {
		first = int64(v)
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, s.mapError(ctx, "acquire connection", err)
	}
	defer conn.Release()
	batch := &pgx.Batch{}
	batch.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	batch.Queue(s.sql.lockHead)
	batch.Queue(s.sql.append, ids, aggID, types, timestamps, payloads, metadata, first, n)
	batch.Queue("COMMIT")
	var current, stored, head int64
	err = func() error {
		br := conn.SendBatch(ctx, batch)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		if err := br.QueryRow().Scan(&current, &stored, &head); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	}()
	if err != nil {
		if pc := conn.Conn().PgConn(); !pc.IsClosed() && pc.TxStatus() != 'I' {
			// The server refused a statement: end its aborted transaction so
			// the connection goes back to the pool clean.
			if _, rbErr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); rbErr != nil {
				conn.Conn().PgConn().Close(context.Background()) //nolint:errcheck // the pool drops it
			}
		}
		if s.closed.Load() && !errors.Is(commitError(err), eventstore.ErrUnknownOutcome) {
			return nil, fmt.Errorf("postgres: append: %w", eventstore.ErrClosed)
		}
		err = commitError(err)
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		if errors.Is(err, eventstore.ErrConflict) {
			// The version check saw every committed append, so only a writer
			// that bypasses log_head gets here.
			v, _ := s.Version(ctx, aggID)
			return nil, &eventstore.ConflictError{AggregateID: aggID, Expected: max(prepared[0].Version, 1) - 1, Actual: v}
		}
		return nil, err
	}
	conn.Release()

	if stored > 0 {
		// A retry or a duplicate; nothing was written. Stored events never
		// change, so reading them after the commit is as good as inside it.
		return s.retry(ctx, events, prepared)
	}
	if err := eventstore.AssignVersions(prepared, uint64(current)); err != nil {
		return nil, err
	}
	// The statement inserted the events at these versions and positions.
	for i := range prepared {
		prepared[i].Position = uint64(head) + 1 + uint64(i)
	}
	return prepared, nil
}

// retry answers an Append some of whose event IDs are stored: the stored
// events if the call repeats a committed one, else an error matching
// eventstore.ErrDuplicateEvent.
func (s *Store) retry(ctx context.Context, events, prepared []eventstore.Event) ([]eventstore.Event, error) {
	ids := make([]string, len(prepared))
	for i, e := range prepared {
		ids[i] = e.ID
	}
	rows, err := s.pool.Query(ctx, s.sql.byIDs, ids)
	if err != nil {
		return nil, s.mapError(ctx, "look up event IDs", err)
	}
	byID, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventstore.Event, error) { return scanEvent(row) })
	if err != nil {
		return nil, s.mapError(ctx, "look up event IDs", err)
	}
	stored := make([]eventstore.Event, len(prepared))
	found := make([]bool, len(prepared))
	for i, p := range prepared {
		for _, e := range byID {
			if e.ID == p.ID {
				stored[i], found[i] = e, true
			}
		}
	}
	if err := eventstore.CheckRetry(events, stored, found); err != nil {
		return nil, err
	}
	return stored, nil
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
