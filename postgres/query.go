package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

// tagsJSON returns tags as the JSON array text the append statements take,
// nil for none.
func tagsJSON(tags []string) (*string, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(tags)
	if err != nil {
		return nil, fmt.Errorf("postgres: encode tags: %w", err)
	}
	s := string(b)
	return &s, nil
}

// metadataJSON returns the JSON text of an event's metadata for the jsonb
// column, or nil (SQL NULL) for none.
func metadataJSON(m map[string]string) (*string, error) {
	if m == nil {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("postgres: encode metadata: %w", err)
	}
	s := string(b)
	return &s, nil
}

// filterSQL returns the SQL condition that selects what f selects, to
// AND with others, and its arguments, numbered from $first. none reports
// a filter that no event can match. Each item is
// "event_type = ANY($n) AND tags @> $m", served by the events_event_type_idx
// B-tree and the events_tags_idx GIN index. A prefix with bytes that are
// not UTF-8 is cut where they start (PostgreSQL text holds UTF-8 only): the
// condition then selects more, and callers apply Filter.Match too.
func filterSQL(f eventstore.Filter, first int) (cond string, args []any, none bool) {
	plan := storekit.PlanFilter(f)
	if plan.None() {
		return "", nil, true
	}
	prefix := plan.AggregatePrefix
	if containsNUL(prefix) || len(prefix) > eventstore.MaxNameLength {
		return "", nil, true
	}
	for i, r := range prefix {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(prefix[i:]); size == 1 {
				prefix = prefix[:i]
				break
			}
		}
	}
	n := first
	arg := func(v any) string {
		args = append(args, v)
		s := "$" + strconv.Itoa(n)
		n++
		return s
	}
	var b strings.Builder
	b.WriteString("true")
	if !plan.All {
		b.WriteString(" AND (")
		for i, it := range plan.Items {
			if i > 0 {
				b.WriteString(" OR ")
			}
			b.WriteString("(true")
			if len(it.Types) > 0 {
				b.WriteString(" AND event_type = ANY(" + arg(it.Types) + "::text[])")
			}
			if len(it.Tags) > 0 {
				b.WriteString(" AND tags @> " + arg(it.Tags) + "::text[]")
			}
			b.WriteString(")")
		}
		b.WriteString(")")
	}
	if prefix != "" {
		b.WriteString(" AND starts_with(aggregate_id, " + arg(prefix) + ")")
	}
	return b.String(), args, false
}

// Read implements eventstore.Store: a page per query, filtered by SQL
// (see filterSQL), in position order.
func (s *Store) Read(ctx context.Context, filter eventstore.Filter, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	cond, fargs, none := filterSQL(filter, 3)
	if none || afterPosition >= math.MaxInt64 {
		return s.empty(ctx)
	}
	sql := `SELECT ` + eventColumns + ` FROM ` + s.schemaSQL() + `.events WHERE position > $1 AND ` + cond + ` ORDER BY position LIMIT $2`
	inner := s.read(ctx, func(last *eventstore.Event, limit int) (string, []any) {
		after := int64(afterPosition)
		if last != nil {
			after = int64(last.Position)
		}
		return sql, append([]any{after, limit}, fargs...)
	})
	return func(yield func(eventstore.Event, error) bool) {
		for e, err := range inner {
			if err == nil && !filter.Match(e) {
				continue // only when the prefix is not UTF-8: see filterSQL
			}
			if !yield(e, err) {
				return
			}
		}
	}
}

// AppendIf implements eventstore.Store. It runs in one transaction that
// first locks log_head, the lock every append takes first and holds until
// it commits, which orders positions: the condition, checked by a query
// after the lock is taken (in READ COMMITTED, each statement sees every
// commit before it), sees every event committed before this append, and
// none can commit until this one does. The check and the write are thus
// one atomic step, as the appends of a group commit are. Unlike Append, it
// takes a few round trips with the lock held.
//
// An error of the commit itself leaves the outcome unknown
// (eventstore.ErrUnknownOutcome), as for Append; retrying the same
// AppendIf with the same event IDs is then safe.
func (s *Store) AppendIf(ctx context.Context, cond eventstore.Condition, events ...eventstore.Event) ([]eventstore.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, eventstore.ErrClosed
	}
	prepared, err := storekit.PrepareAppendIf(events, s.opts.MaxPayloadSize)
	if err != nil || len(prepared) == 0 {
		return nil, err
	}
	n := len(prepared)
	var (
		ids        = make([]string, n)
		aggs       = make([]string, n)
		types      = make([]string, n)
		timestamps = make([]pgtype.Timestamptz, n)
		payloads   = make([]string, n)
		metadata   = make([]*string, n)
		tags       = make([]*string, n)
		positions  = make([]int64, n)
		versions   = make([]int64, n)
	)
	for i, e := range prepared {
		ids[i], aggs[i], types[i], payloads[i] = e.ID, e.AggregateID, e.Type, string(e.Payload)
		timestamps[i] = pgtype.Timestamptz{Time: e.Timestamp, Valid: true}
		if metadata[i], err = metadataJSON(e.Metadata); err != nil {
			return nil, err
		}
		if tags[i], err = tagsJSON(e.Tags); err != nil {
			return nil, err
		}
	}
	where, fargs, none := filterSQL(cond.FailIfEventsMatch, 2)
	if cond.After >= math.MaxInt64 {
		none = true
	}
	events2 := s.schemaSQL() + ".events"

	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return nil, s.mapError(ctx, "begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // nothing to do after a commit
	var head int64
	if err := tx.QueryRow(ctx, s.sql.lockHead).Scan(&head); err != nil {
		return nil, s.mapError(ctx, "lock log head", err)
	}

	// A call whose IDs are stored is a retry or a duplicate.
	rows, err := tx.Query(ctx, s.sql.byIDs, ids)
	if err != nil {
		return nil, s.mapError(ctx, "look up event IDs", err)
	}
	byID, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventstore.Event, error) { return scanEvent(row, nil) })
	if err != nil {
		return nil, s.mapError(ctx, "look up event IDs", err)
	}
	if len(byID) > 0 {
		stored := make([]eventstore.Event, n)
		found := make([]bool, n)
		for i, p := range prepared {
			for _, e := range byID {
				if e.ID == p.ID {
					stored[i], found[i] = e, true
				}
			}
		}
		if err := storekit.CheckRetry(events, stored, found); err != nil {
			return nil, err
		}
		return stored, nil
	}

	if !none {
		rows, err := tx.Query(ctx, `SELECT `+eventColumns+` FROM `+events2+` WHERE position > $1 AND `+where+` ORDER BY position`,
			append([]any{int64(cond.After)}, fargs...)...)
		if err != nil {
			return nil, s.mapError(ctx, "check the condition", err)
		}
		var first uint64
		for rows.Next() {
			e, err := scanEvent(rows, nil)
			if err != nil {
				rows.Close()
				return nil, s.mapError(ctx, "check the condition", err)
			}
			if cond.FailIfEventsMatch.Match(e) {
				first = e.Position
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, s.mapError(ctx, "check the condition", err)
		}
		if first > 0 {
			return nil, &eventstore.ConditionError{After: cond.After, Position: first}
		}
	}

	groups := storekit.Groups(prepared)
	names := make([]string, len(groups))
	for g, idx := range groups {
		names[g] = prepared[idx[0]].AggregateID
	}
	current := make(map[string]uint64, len(groups))
	rows, err = tx.Query(ctx, `SELECT aggregate_id, max(version) FROM `+events2+` WHERE aggregate_id = ANY($1::text[]) GROUP BY aggregate_id`, names)
	if err != nil {
		return nil, s.mapError(ctx, "read aggregate versions", err)
	}
	for rows.Next() {
		var agg string
		var v int64
		if err := rows.Scan(&agg, &v); err != nil {
			rows.Close()
			return nil, s.mapError(ctx, "read aggregate versions", err)
		}
		current[agg] = uint64(v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.mapError(ctx, "read aggregate versions", err)
	}
	for _, idx := range groups {
		if err := storekit.AssignGroupVersions(prepared, idx, current[prepared[idx[0]].AggregateID]); err != nil {
			return nil, err
		}
	}
	for i := range prepared {
		if prepared[i].Version > math.MaxInt64 {
			return nil, &eventstore.ConflictError{AggregateID: prepared[i].AggregateID, Expected: prepared[i].Version - 1, Actual: current[prepared[i].AggregateID]}
		}
		prepared[i].Position = uint64(head) + 1 + uint64(i)
		positions[i], versions[i] = int64(prepared[i].Position), int64(prepared[i].Version)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+events2+` (`+eventColumns+`)
		SELECT u.id, u.position, u.aggregate_id, u.event_type, u.version, u.timestamp, u.payload::json, u.metadata::jsonb, `+tagsFromJSON+`
		FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[], $7::text[], $8::text[], $9::text[])
			AS u(id, position, aggregate_id, event_type, version, timestamp, payload, metadata, tags)`,
		ids, positions, aggs, types, versions, timestamps, payloads, metadata, tags); err != nil {
		return nil, s.mapError(ctx, "insert events", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE `+s.schemaSQL()+`.log_head SET position = $1 WHERE id`, head+int64(n)); err != nil {
		return nil, s.mapError(ctx, "advance log head", err)
	}
	if err := tx.Commit(ctx); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			return nil, fmt.Errorf("%w: %w", ctxErr, commitError(err))
		}
		return nil, commitError(err)
	}
	return prepared, nil
}
