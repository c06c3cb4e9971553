package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

var _ eventstore.Importer = (*Store)(nil)

// importAttempts bounds how often Import starts over when a concurrent
// writer changed one of its aggregates between its lookups and its write.
const importAttempts = 8

// stagingTable is the session's temporary table that an Import copies its
// events into before it takes the log_head lock.
const stagingTable = "pg_temp.eventstore_import"

// Import implements eventstore.Importer, in one transaction on one
// connection:
//
//  1. It looks up the call's IDs and the versions of its aggregates, and
//     decides with storekit.PlanImport which events to write (none: it
//     ends there).
//  2. It COPYs those events into a temporary table of its session, without
//     holding any lock.
//  3. It sends one pipeline: lock log_head (as Append does), one statement
//     that inserts the staged events at the next positions and advances
//     log_head; COMMIT. So the lock is held for the time the server runs
//     one statement and flushes the commit, never across a network round
//     trip, and the events of an Import and of Appends get positions in
//     commit order with no gaps.
//
// The insert needs no check of its own that step 1 still holds: the
// constraints of the events table make it. An aggregate's versions are
// gapless, so a concurrent write to an aggregate Import writes from
// version v+1 stored version v+1 (the unique aggregate and version), and a
// concurrent write of one of its IDs stored that ID (the primary key):
// the insert fails with a unique violation on either, which aborts the
// transaction, and Import starts over (at most 8 times). Its new lookups
// see that write, so it ends in a skip, a conflict or a write as if it had
// run alone.
//
// Import returns soon after ctx ends, even when the server or the network
// stops answering: it then closes its connection. If that happens before
// the COMMIT was sent, nothing is stored and the error matches ctx's error;
// after, the error matches eventstore.ErrUnknownOutcome (and ctx's error),
// and rerunning the same Import is safe.
func (s *Store) Import(ctx context.Context, events []eventstore.Event) ([]eventstore.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, eventstore.ErrClosed
	}
	prepared, err := storekit.PrepareImport(events, s.opts.MaxPayloadSize)
	if err != nil || len(prepared) == 0 {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		out, retry, err := s.importOnce(ctx, prepared)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
				err = fmt.Errorf("%w: %w", ctxErr, err)
			}
			return nil, err
		}
		if !retry {
			return out, nil
		}
		if attempt == importAttempts {
			return nil, fmt.Errorf("postgres: import: %w: concurrent writers changed its aggregates %d times in a row", eventstore.ErrConflict, importAttempts)
		}
	}
}

// importOnce runs one attempt of Import. retry reports that a concurrent
// writer changed one of the aggregates: nothing was stored.
func (s *Store) importOnce(ctx context.Context, prepared []eventstore.Event) (out []eventstore.Event, retry bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, s.mapError(ctx, "import: acquire connection", err)
	}
	pc := conn.Conn().PgConn()
	// When ctx ends, fail every read and write on the connection at once,
	// whatever the server or the network do, and drop the connection.
	cut := context.AfterFunc(ctx, func() { _ = pc.Conn().SetDeadline(time.Now()) })
	defer func() {
		if !cut() {
			pc.Close(context.Background()) //nolint:errcheck // the pool drops it
		}
		conn.Release()
	}()
	inTx := false
	defer func() {
		if inTx && !pc.IsClosed() && pc.TxStatus() != 'I' {
			if _, rbErr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); rbErr != nil {
				pc.Close(context.Background()) //nolint:errcheck // the pool drops it
			}
		}
	}()

	// 1. Lookups, in the transaction that will write.
	ids := make([]string, len(prepared))
	for i, e := range prepared {
		ids[i] = e.ID
	}
	var aggs []string
	seen := make(map[string]bool)
	for _, e := range prepared {
		if !seen[e.AggregateID] {
			seen[e.AggregateID] = true
			aggs = append(aggs, e.AggregateID)
		}
	}
	batch := &pgx.Batch{}
	batch.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	// The insert reads the staging table, which has no statistics: the
	// planner's guess of its size makes the plan look costly enough to
	// compile with JIT, which took 150-250 ms here, 20 times the insert.
	batch.Queue("SET LOCAL jit = off")
	batch.Queue(`CREATE TEMP TABLE IF NOT EXISTS ` + stagingTable + ` (
		k            int         NOT NULL,
		id           uuid        NOT NULL,
		aggregate_id text        NOT NULL,
		event_type   text        NOT NULL,
		version      bigint      NOT NULL,
		timestamp    timestamptz NOT NULL,
		payload      text        NOT NULL,
		metadata     text,
		tags         text -- a JSON array, or NULL
	) ON COMMIT DELETE ROWS`)
	// One probe of the (aggregate_id, version) index per aggregate, for
	// its last version: a GROUP BY over aggregate_id = ANY($1) would read
	// every version of every aggregate.
	versionsSQL := `SELECT a.aggregate_id, coalesce((SELECT max(e.version) FROM ` + s.importEvents() + ` e WHERE e.aggregate_id = a.aggregate_id), 0)
		FROM unnest($1::text[]) AS a(aggregate_id)`
	// Under READ COMMITTED each statement sees the commits made before it
	// began, so a commit between the lookup by ID and that of the versions
	// would make them disagree (an event missed by ID but counted in its
	// aggregate's version: a false conflict). The versions are read before
	// and after the lookup by ID: versions only grow, so when both reads
	// agree no commit touched these aggregates in between; otherwise
	// Import starts over.
	batch.Queue(versionsSQL, aggs)
	batch.Queue(s.sql.byIDs, ids)
	batch.Queue(versionsSQL, aggs)
	inTx = true
	byID := make(map[string]eventstore.Event)
	before := make(map[string]uint64)
	versions := make(map[string]uint64)
	readVersions := func(br pgx.BatchResults, into map[string]uint64) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var agg string
			var v int64
			if err := rows.Scan(&agg, &v); err != nil {
				rows.Close()
				return err
			}
			into[agg] = uint64(v)
		}
		rows.Close()
		return rows.Err()
	}
	err = func() error {
		br := conn.SendBatch(ctx, batch)
		defer br.Close()
		for range 3 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if err := readVersions(br, before); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		stored, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventstore.Event, error) { return scanEvent(row, nil) })
		if err != nil {
			return err
		}
		for _, e := range stored {
			byID[e.ID] = e
		}
		if err := readVersions(br, versions); err != nil {
			return err
		}
		return br.Close()
	}()
	if err != nil {
		return nil, false, s.mapError(ctx, "import: look up events", err)
	}
	for agg, v := range versions {
		if before[agg] != v {
			return nil, true, nil // the deferred ROLLBACK ends the transaction
		}
	}
	write, err := storekit.PlanImport(prepared,
		func(i int) (eventstore.Event, bool, error) {
			e, ok := byID[prepared[i].ID]
			return e, ok, nil
		},
		func(aggregateID string) (uint64, error) { return versions[aggregateID], nil })
	if err != nil || len(write) == 0 {
		return nil, false, err // the deferred ROLLBACK ends the transaction
	}

	// 2. Stage the events to write, without a lock.
	out = make([]eventstore.Event, len(write))
	rows := make([][]any, len(write))
	for j, i := range write {
		e := prepared[i]
		out[j] = e
		meta, err := metadataJSON(e.Metadata)
		if err != nil {
			return nil, false, err
		}
		tags, err := tagsJSON(e.Tags)
		if err != nil {
			return nil, false, err
		}
		rows[j] = []any{int32(j + 1), e.ID, e.AggregateID, e.Type, int64(e.Version),
			pgtype.Timestamptz{Time: e.Timestamp, Valid: true}, string(e.Payload), meta, tags}
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"pg_temp", "eventstore_import"},
		[]string{"k", "id", "aggregate_id", "event_type", "version", "timestamp", "payload", "metadata", "tags"},
		pgx.CopyFromRows(rows)); err != nil {
		return nil, false, s.mapError(ctx, "import: copy events", err)
	}

	// 3. Lock, insert, commit: one round trip.
	batch = &pgx.Batch{}
	batch.Queue(s.sql.lockHead)
	batch.Queue(s.importInsert(), int64(len(write)))
	batch.Queue("COMMIT")
	var head pgtype.Int8
	err = func() error {
		br := conn.SendBatch(ctx, batch)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		if err := br.QueryRow().Scan(&head); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	}()
	if err != nil {
		if concurrentWrite(err) {
			return nil, true, nil // the deferred ROLLBACK ends the aborted transaction
		}
		err = commitError(err)
		if s.closed.Load() && !errors.Is(err, eventstore.ErrUnknownOutcome) {
			return nil, false, fmt.Errorf("postgres: import: %w", eventstore.ErrClosed)
		}
		return nil, false, fmt.Errorf("postgres: import: %w", err)
	}
	inTx = false
	if !head.Valid {
		return nil, false, fmt.Errorf("postgres: import: log_head has no row") // unreachable: the migration makes it
	}
	for j := range out {
		out[j].Position = uint64(head.Int64) + 1 + uint64(j)
	}
	return out, false, nil
}

// importEvents returns the qualified name of the events table.
func (s *Store) importEvents() string {
	return pgx.Identifier{s.opts.Schema}.Sanitize() + ".events"
}

// importInsert returns the statement that writes the staged events: it
// runs after the log_head lock, so its snapshot holds every commit before
// it. It inserts the staged event k at position head + k, advances
// log_head by $1 and returns head. A concurrent write that Import's
// lookups missed makes it fail with a unique violation (see
// concurrentWrite).
func (s *Store) importInsert() string {
	schema := pgx.Identifier{s.opts.Schema}.Sanitize()
	return `WITH head AS (
			SELECT position FROM ` + schema + `.log_head WHERE id
		), ins AS (
			INSERT INTO ` + schema + `.events (` + eventColumns + `)
			SELECT s.id, head.position + s.k, s.aggregate_id, s.event_type, s.version, s.timestamp, s.payload::json, s.metadata::jsonb,
				` + tagsFrom("s") + `
			FROM head, ` + stagingTable + ` s
		), upd AS (
			UPDATE ` + schema + `.log_head AS h SET position = h.position + $1::bigint WHERE h.id
		)
		SELECT position FROM head`
}

// concurrentWrite reports whether err is the unique violation, on an
// event's ID or on an aggregate's version, of an import insert whose
// lookups a concurrent writer made stale: Import starts over.
func concurrentWrite(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == uniqueViolation &&
		(pgErr.ConstraintName == constraintEventID || pgErr.ConstraintName == constraintAggregateVersion)
}
