package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/eventstore-go/eventstore"
)

// The range of timestamps a store holds, as storekit.Prepare enforces.
var (
	minTimestamp = time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)
	maxTimestamp = time.Date(9999, time.December, 31, 23, 59, 59, 999999000, time.UTC)
)

// scanEvent reads one row of eventColumns. With a metaReader, rows whose
// metadata equal the previous row's share its map.
func scanEvent(rows pgx.CollectableRow, mr *metaReader) (eventstore.Event, error) {
	var (
		e        eventstore.Event
		id       pgtype.UUID
		position int64
		version  int64
		ts       time.Time
		payload  []byte
		meta     []byte
		tags     []string
	)
	if err := rows.Scan(&id, &position, &e.AggregateID, &e.Type, &version, &ts, &payload, &meta, &tags); err != nil {
		return eventstore.Event{}, err
	}
	e.ID = uuid.UUID(id.Bytes).String()
	e.Position = uint64(position)
	e.Version = uint64(version)
	e.Timestamp = ts.UTC()
	e.Payload = payload
	if len(tags) > 0 {
		e.Tags = tags
	}
	var err error
	if e.Metadata, err = mr.decode(meta); err != nil {
		return eventstore.Event{}, fmt.Errorf("metadata of event %s: %w", e.ID, err)
	}
	return e, nil
}

// metaReader decodes the metadata of one read's rows. Like the other
// backends, it gives rows whose metadata equal the last row's the same map
// (the read-only rule of eventstore.Event.Metadata); jsonb prints equal
// objects alike, so equal text means equal maps. A nil *metaReader shares
// nothing.
type metaReader struct {
	raw []byte            // the last metadata decoded, as jsonb printed it
	m   map[string]string // its map
}

// decode returns the map of the metadata column's text, nil when empty.
func (mr *metaReader) decode(text []byte) (map[string]string, error) {
	if len(text) == 0 || string(text) == "{}" || string(text) == "null" {
		return nil, nil
	}
	if mr != nil && mr.m != nil && bytes.Equal(text, mr.raw) {
		return mr.m, nil
	}
	var m map[string]string
	if err := json.Unmarshal(text, &m); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	if mr != nil {
		mr.raw, mr.m = append(mr.raw[:0], text...), m
	}
	return m, nil
}

// page is one keyset-paginated query: given the last event yielded (nil
// before the first) and a row limit, it returns the SQL and its arguments.
type page func(last *eventstore.Event, limit int) (sql string, args []any)

// read streams the events of successive pages. It holds no connection while
// the caller handles an event: each page is read whole, its rows closed,
// and only then yielded. It checks ctx and Close before every page and ctx
// before every event, and yields at most one error.
func (s *Store) read(ctx context.Context, next page) iter.Seq2[eventstore.Event, error] {
	return func(yield func(eventstore.Event, error) bool) {
		limit := s.opts.ReadPageSize
		var last *eventstore.Event
		buf := make([]eventstore.Event, 0, limit)
		var mr metaReader
		for {
			if err := ctx.Err(); err != nil {
				yield(eventstore.Event{}, err)
				return
			}
			if s.closed.Load() {
				yield(eventstore.Event{}, eventstore.ErrClosed)
				return
			}
			sql, args := next(last, limit)
			events, full, err := s.fetch(ctx, buf[:0], sql, args, limit, &mr)
			if err != nil {
				yield(eventstore.Event{}, s.mapError(ctx, "read", err))
				return
			}
			for i := range events {
				if err := ctx.Err(); err != nil {
					yield(eventstore.Event{}, err)
					return
				}
				if !yield(events[i], nil) {
					return
				}
			}
			if len(events) == 0 || (len(events) < limit && full) {
				return
			}
			if !full {
				// The page ended early on its byte budget: ask for as many
				// rows as fitted, so large payloads are not fetched twice.
				limit = max(1, len(events))
			} else {
				limit = s.opts.ReadPageSize
			}
			e := events[len(events)-1]
			last = &e
			buf = events[:0]
		}
	}
}

// fetch runs one page's query and returns its events. full reports whether
// it read every row the query returned; it is false when the page stopped
// at readPageBytes of payload.
func (s *Store) fetch(ctx context.Context, buf []eventstore.Event, sql string, args []any, limit int, mr *metaReader) (events []eventstore.Event, full bool, err error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	size := 0
	for rows.Next() {
		e, err := scanEvent(rows, mr)
		if err != nil {
			return nil, false, err
		}
		buf = append(buf, e)
		if size += len(e.Payload); size >= readPageBytes && len(buf) < limit {
			return buf, false, nil
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	return buf, true, nil
}

// empty yields nothing: a read that no stored event can match.
func (s *Store) empty(ctx context.Context) iter.Seq2[eventstore.Event, error] {
	return func(yield func(eventstore.Event, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(eventstore.Event{}, err)
		} else if s.closed.Load() {
			yield(eventstore.Event{}, eventstore.ErrClosed)
		}
	}
}

// ReadAggregate implements eventstore.Store.
func (s *Store) ReadAggregate(ctx context.Context, aggregateID string, afterVersion uint64) iter.Seq2[eventstore.Event, error] {
	if !validName(aggregateID) || afterVersion >= math.MaxInt64 {
		return s.empty(ctx)
	}
	return s.read(ctx, func(last *eventstore.Event, limit int) (string, []any) {
		after := int64(afterVersion)
		if last != nil {
			after = int64(last.Version)
		}
		return s.sql.readAgg, []any{aggregateID, after, limit}
	})
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	if afterPosition >= math.MaxInt64 {
		return s.empty(ctx)
	}
	return s.read(ctx, func(last *eventstore.Event, limit int) (string, []any) {
		after := int64(afterPosition)
		if last != nil {
			after = int64(last.Position)
		}
		return s.sql.readAll, []any{after, limit}
	})
}

// ReadType implements eventstore.Store.
func (s *Store) ReadType(ctx context.Context, eventType string, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	if !validName(eventType) || afterPosition >= math.MaxInt64 {
		return s.empty(ctx)
	}
	return s.read(ctx, func(last *eventstore.Event, limit int) (string, []any) {
		after := int64(afterPosition)
		if last != nil {
			after = int64(last.Position)
		}
		return s.sql.readType, []any{eventType, after, limit}
	})
}

// ReadTime implements eventstore.Store. Bounds are taken as
// eventstore.NormalizeTime gives them, as on every backend.
func (s *Store) ReadTime(ctx context.Context, aggregateID string, start, end time.Time) iter.Seq2[eventstore.Event, error] {
	if aggregateID != "" && !validName(aggregateID) {
		return s.empty(ctx)
	}
	start = eventstore.NormalizeTime(start)
	if start.Before(minTimestamp) {
		start = minTimestamp
	}
	upper := pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	if !end.IsZero() {
		end = eventstore.NormalizeTime(end)
		if !start.Before(end) || start.After(maxTimestamp) {
			return s.empty(ctx)
		}
		if !end.After(maxTimestamp) {
			upper = pgtype.Timestamptz{Time: end, Valid: true}
		}
	} else if start.After(maxTimestamp) {
		return s.empty(ctx)
	}
	return s.read(ctx, func(last *eventstore.Event, limit int) (string, []any) {
		ts, pos := start, int64(0)
		if last != nil {
			ts, pos = last.Timestamp, int64(last.Position)
		}
		args := []any{pgtype.Timestamptz{Time: ts, Valid: true}, pos, upper, limit}
		if aggregateID == "" {
			return s.sql.readTimeAll, args
		}
		return s.sql.readTimeAgg, append(args, aggregateID)
	})
}
