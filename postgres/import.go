package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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
//     that checks that none of the aggregates it writes changed since step
//     1 and none of its IDs got stored, and if so inserts the staged events
//     at the next positions and advances log_head; COMMIT. So the lock is
//     held for the time the server runs one statement and flushes the
//     commit, never across a network round trip, and the events of an
//     Import and of Appends get positions in commit order with no gaps.
//
// If a concurrent writer changed one of its aggregates in between, Import
// starts over (at most 8 times): its new lookups see that write, so it
// ends in a skip, a conflict or a write as if it had run alone.
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
	batch.Queue(s.sql.byIDs, ids)
	batch.Queue(`SELECT aggregate_id, max(version) FROM `+s.importEvents()+` WHERE aggregate_id = ANY($1::text[]) GROUP BY aggregate_id`, aggs)
	inTx = true
	byID := make(map[string]eventstore.Event)
	versions := make(map[string]uint64)
	err = func() error {
		br := conn.SendBatch(ctx, batch)
		defer br.Close()
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
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
		rows, err = br.Query()
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
			versions[agg] = uint64(v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		return br.Close()
	}()
	if err != nil {
		return nil, false, s.mapError(ctx, "import: look up events", err)
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
	var wroteAggs []string
	var wroteVersions []int64
	wrote := make(map[string]bool)
	for j, i := range write {
		e := prepared[i]
		out[j] = e
		var meta *string
		if e.Metadata != nil {
			m, err := json.Marshal(e.Metadata)
			if err != nil {
				return nil, false, fmt.Errorf("postgres: import: encode metadata: %w", err)
			}
			ms := string(m)
			meta = &ms
		}
		tags, err := tagsJSON(e.Tags)
		if err != nil {
			return nil, false, err
		}
		rows[j] = []any{int32(j + 1), e.ID, e.AggregateID, e.Type, int64(e.Version),
			pgtype.Timestamptz{Time: e.Timestamp, Valid: true}, string(e.Payload), meta, tags}
		if !wrote[e.AggregateID] {
			wrote[e.AggregateID] = true
			wroteAggs = append(wroteAggs, e.AggregateID)
			wroteVersions = append(wroteVersions, int64(versions[e.AggregateID]))
		}
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"pg_temp", "eventstore_import"},
		[]string{"k", "id", "aggregate_id", "event_type", "version", "timestamp", "payload", "metadata", "tags"},
		pgx.CopyFromRows(rows)); err != nil {
		return nil, false, s.mapError(ctx, "import: copy events", err)
	}

	// 3. Lock, check, insert, commit: one round trip.
	batch = &pgx.Batch{}
	batch.Queue(s.sql.lockHead)
	wroteIDs := make([]string, len(write))
	for j, e := range out {
		wroteIDs[j] = e.ID
	}
	batch.Queue(s.importInsert(), wroteAggs, wroteVersions, int64(len(write)), wroteIDs)
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
		err = commitError(err)
		if s.closed.Load() && !errors.Is(err, eventstore.ErrUnknownOutcome) {
			return nil, false, fmt.Errorf("postgres: import: %w", eventstore.ErrClosed)
		}
		return nil, false, fmt.Errorf("postgres: import: %w", err)
	}
	inTx = false
	if !head.Valid {
		return nil, true, nil
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
// it. It inserts nothing unless each aggregate $1 still has the version $2
// and none of the staged IDs $4 is stored; else it returns NULL. It inserts the staged
// event k at position head + k and advances log_head by $3.
func (s *Store) importInsert() string {
	schema := pgx.Identifier{s.opts.Schema}.Sanitize()
	events := schema + ".events"
	return `WITH head AS (
			SELECT position FROM ` + schema + `.log_head WHERE id
		), bad AS (
			SELECT 1 FROM unnest($1::text[], $2::bigint[]) AS a(aggregate_id, version)
			WHERE a.version <> coalesce((SELECT max(e.version) FROM ` + events + ` e WHERE e.aggregate_id = a.aggregate_id), 0)
			UNION ALL
			SELECT 1 FROM ` + events + ` e WHERE e.id = ANY($4::uuid[])
		), ok AS (
			SELECT head.position FROM head WHERE NOT EXISTS (SELECT 1 FROM bad)
		), ins AS (
			INSERT INTO ` + events + ` (` + eventColumns + `)
			SELECT s.id, ok.position + s.k, s.aggregate_id, s.event_type, s.version, s.timestamp, s.payload::json, s.metadata::jsonb,
				` + tagsFrom("s") + `
			FROM ok, ` + stagingTable + ` s
		), upd AS (
			UPDATE ` + schema + `.log_head AS h SET position = h.position + $3::bigint FROM ok WHERE h.id
		)
		SELECT position FROM ok UNION ALL SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM ok)`
}
