package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventstore-go/eventstore"
)

// Constraint names from migrations/, which mapError matches.
const (
	constraintEventID          = "events_pkey"
	constraintAggregateVersion = "events_aggregate_version_key"
)

// uniqueViolation is the SQLSTATE of a unique constraint violation.
const uniqueViolation = "23505"

// mapError turns an error from the server into the store's error: unique
// violations by constraint name into eventstore.ErrDuplicateEvent or
// eventstore.ErrConflict, anything after Close into eventstore.ErrClosed,
// anything after ctx ended into ctx's error. what says what failed. The
// cause stays available to errors.As.
func (s *Store) mapError(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return fmt.Errorf("postgres: %s: %w", what, eventstore.ErrClosed)
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("postgres: %s: %w: %w", what, ctxErr, err)
	}
	return mapPgError(what, err)
}

// mapPgError maps the server's errors that have a meaning in the store.
func mapPgError(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation {
		switch pgErr.ConstraintName {
		case constraintEventID:
			return fmt.Errorf("postgres: %s: %w: %w", what, eventstore.ErrDuplicateEvent, err)
		case constraintAggregateVersion:
			return fmt.Errorf("postgres: %s: %w: %w", what, eventstore.ErrConflict, err)
		}
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}

// commitError maps the error of a COMMIT. The server refusing the commit,
// or a commit never sent, leaves nothing stored; any other failure, such as
// a connection lost while the commit was in flight, leaves the outcome
// unknown: eventstore.ErrUnknownOutcome.
func commitError(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) || pgconn.SafeToRetry(err) {
		return mapPgError("commit", err)
	}
	return fmt.Errorf("postgres: commit: %w: %w", eventstore.ErrUnknownOutcome, err)
}
