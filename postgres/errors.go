package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventstore-go/eventstore"
)

// ErrInvalidOptions reports Options that Open and New refuse before they
// connect, such as a Schema that PostgreSQL reserves for itself.
var ErrInvalidOptions = errors.New("postgres: invalid options")

// ErrSchemaNotFound reports that Options.RequireSchema is set and the
// schema named by Options.Schema does not exist.
var ErrSchemaNotFound = errors.New("postgres: schema not found")

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

// commitError maps the error of a pipeline that ends in COMMIT. The server
// refusing a statement (an ERROR) aborts the transaction, and a pipeline
// never sent does nothing: both leave nothing stored. Any other failure
// (a connection lost, or closed by the server with a FATAL error, while the
// pipeline was in flight) leaves the outcome unknown:
// eventstore.ErrUnknownOutcome.
func commitError(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		severity := pgErr.SeverityUnlocalized
		if severity == "" {
			severity = pgErr.Severity
		}
		if severity == "ERROR" {
			return mapPgError("append", err)
		}
	} else if pgconn.SafeToRetry(err) {
		return mapPgError("append", err)
	}
	return fmt.Errorf("postgres: append: %w: %w", eventstore.ErrUnknownOutcome, err)
}
