package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

var _ eventstore.CheckpointStore = (*Store)(nil)

// LoadCheckpoint implements eventstore.CheckpointStore.
func (s *Store) LoadCheckpoint(ctx context.Context, name string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := storekit.CheckCheckpointName(name); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, eventstore.ErrClosed
	}
	var text string
	err := s.pool.QueryRow(ctx, `SELECT position::text FROM `+s.schemaSQL()+`.checkpoints WHERE name = $1`, name).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, s.mapError(ctx, "load checkpoint", err)
	}
	p, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("postgres: checkpoint %q: position %q: %w", name, text, eventstore.ErrCorrupt)
	}
	return p, nil
}

// SaveCheckpoint implements eventstore.CheckpointStore. It commits before
// it returns.
func (s *Store) SaveCheckpoint(ctx context.Context, name string, position uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storekit.CheckCheckpointName(name); err != nil {
		return err
	}
	if s.closed.Load() {
		return eventstore.ErrClosed
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO `+s.schemaSQL()+`.checkpoints AS c (name, position) VALUES ($1, $2::numeric)
		ON CONFLICT (name) DO UPDATE SET position = excluded.position`, name, strconv.FormatUint(position, 10))
	return s.mapError(ctx, "save checkpoint", err)
}

// schemaSQL returns the store's schema name quoted for SQL.
func (s *Store) schemaSQL() string { return pgx.Identifier{s.opts.Schema}.Sanitize() }
