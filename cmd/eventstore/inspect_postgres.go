package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgStats gathers stats with aggregate queries.
func (s *store) pgStats(ctx context.Context, st *stats) error {
	pool, q, err := s.sql(ctx)
	if err != nil {
		return err
	}
	var first, last *time.Time
	var migration int
	err = pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT aggregate_id), min(timestamp), max(timestamp),
		(SELECT position FROM `+q+`.log_head),
		pg_total_relation_size($1::regclass),
		(SELECT count(*) FROM `+q+`.snapshots), (SELECT count(*) FROM `+q+`.checkpoints),
		(SELECT coalesce(max(version), 0) FROM `+q+`.schema_migrations)
		FROM `+q+`.events`, q+".events").Scan(&st.Events, &st.Aggregates, &first, &last, &st.Head, &st.Size, &st.Snapshots, &st.Checkpoints, &migration)
	if err != nil {
		return fmt.Errorf("%s: stats: %w", s.name, err)
	}
	if first != nil {
		st.First = first.UTC()
	}
	if last != nil {
		st.Last = last.UTC()
	}
	st.Format = "eventstore/postgres migration " + strconv.Itoa(migration)
	rows, err := pool.Query(ctx, `SELECT event_type, count(*) FROM `+q+`.events GROUP BY event_type ORDER BY event_type COLLATE "C"`)
	if err != nil {
		return fmt.Errorf("%s: stats: %w", s.name, err)
	}
	st.Types, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (typeCount, error) {
		var tc typeCount
		return tc, r.Scan(&tc.Type, &tc.Events)
	})
	if err != nil {
		return fmt.Errorf("%s: stats: %w", s.name, err)
	}
	return nil
}

// pgAggregates lists aggregates in byte order of their IDs, after the ID
// after, whose ID starts with prefix: at most limit (0: all).
func (s *store) pgAggregates(ctx context.Context, prefix, after string, limit int) ([]aggregateInfo, error) {
	pool, q, err := s.sql(ctx)
	if err != nil {
		return nil, err
	}
	lim := "ALL"
	if limit > 0 {
		lim = strconv.Itoa(limit)
	}
	rows, err := pool.Query(ctx, `SELECT DISTINCT ON (aggregate_id COLLATE "C") aggregate_id, version, timestamp
		FROM `+q+`.events
		WHERE starts_with(aggregate_id, $1) AND aggregate_id COLLATE "C" > $2
		ORDER BY aggregate_id COLLATE "C", version DESC LIMIT `+lim, prefix, after)
	if err != nil {
		return nil, fmt.Errorf("%s: aggregates: %w", s.name, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (aggregateInfo, error) {
		var a aggregateInfo
		err := r.Scan(&a.ID, &a.Version, &a.Last)
		a.Last = a.Last.UTC()
		return a, err
	})
}

// pgVerify checks what the schema's constraints do not: positions 1 to
// the head with no gap, the head row, and versions 1, 2, 3, ... in every
// aggregate. It returns the problems found, at most max of each kind.
func (s *store) pgVerify(ctx context.Context, max int) ([]string, error) {
	pool, q, err := s.sql(ctx)
	if err != nil {
		return nil, err
	}
	var problems []string
	var n, maxPos, minPos, head uint64
	err = pool.QueryRow(ctx, `SELECT count(*), coalesce(max(position), 0), coalesce(min(position), 0), (SELECT position FROM `+q+`.log_head) FROM `+q+`.events`).Scan(&n, &maxPos, &minPos, &head)
	if err != nil {
		return nil, fmt.Errorf("%s: verify: %w", s.name, err)
	}
	if n > 0 && minPos != 1 {
		problems = append(problems, fmt.Sprintf("positions: the first position is %d, not 1", minPos))
	}
	if n != maxPos {
		problems = append(problems, fmt.Sprintf("positions: %d events but the last position is %d: %d missing", n, maxPos, int64(maxPos)-int64(n)))
		rows, err := pool.Query(ctx, `SELECT position + 1 AS from, next - 1 AS to FROM (
			SELECT position, lead(position) OVER (ORDER BY position) AS next FROM (SELECT 0::bigint AS position UNION ALL SELECT position FROM `+q+`.events) p
		) g WHERE next > position + 1 ORDER BY position LIMIT $1`, max)
		if err != nil {
			return nil, fmt.Errorf("%s: verify: %w", s.name, err)
		}
		gaps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var from, to uint64
			err := r.Scan(&from, &to)
			if from == to {
				return fmt.Sprintf("positions: %d missing", from), err
			}
			return fmt.Sprintf("positions: %d to %d missing", from, to), err
		})
		if err != nil {
			return nil, fmt.Errorf("%s: verify: %w", s.name, err)
		}
		problems = append(problems, gaps...)
	}
	if head != maxPos {
		problems = append(problems, fmt.Sprintf("log_head: %d, the last position is %d", head, maxPos))
	}
	rows, err := pool.Query(ctx, `SELECT aggregate_id, version, prev FROM (
			SELECT aggregate_id, version, lag(version, 1, 0::bigint) OVER (PARTITION BY aggregate_id ORDER BY version) AS prev FROM `+q+`.events
		) v WHERE version <> prev + 1 ORDER BY aggregate_id COLLATE "C", version LIMIT $1`, max)
	if err != nil {
		return nil, fmt.Errorf("%s: verify: %w", s.name, err)
	}
	bad, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var agg string
		var v, prev uint64
		err := r.Scan(&agg, &v, &prev)
		if prev == 0 {
			return fmt.Sprintf("aggregate %q: starts at version %d, not 1", agg, v), err
		}
		return fmt.Sprintf("aggregate %q: version %d follows %d", agg, v, prev), err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: verify: %w", s.name, err)
	}
	return append(problems, bad...), nil
}
