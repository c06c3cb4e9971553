package postgres

import (
	"errors"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventstore-go/eventstore"
)

type safeErr struct{ error }

func (safeErr) SafeToRetry() bool { return true }

func TestCommitError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: matches none of the sentinels below
	}{
		{"DuplicateID", &pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "23505", ConstraintName: constraintEventID}, eventstore.ErrDuplicateEvent},
		{"DuplicateVersion", &pgconn.PgError{Severity: "ERROR", Code: "23505", ConstraintName: constraintAggregateVersion}, eventstore.ErrConflict},
		{"OtherUnique", &pgconn.PgError{Severity: "ERROR", Code: "23505", ConstraintName: "events_position_key"}, nil},
		{"SerializationFailure", &pgconn.PgError{Severity: "ERROR", Code: "40001"}, nil},
		{"AdminShutdown", &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01"}, eventstore.ErrUnknownOutcome},
		{"ConnectionLost", io.ErrUnexpectedEOF, eventstore.ErrUnknownOutcome},
		{"Reset", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, eventstore.ErrUnknownOutcome},
		{"NeverSent", safeErr{errors.New("write failed before any byte")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := commitError(tc.err)
			if !errors.Is(got, tc.err) {
				t.Errorf("commitError(%v) = %v, which does not wrap the cause", tc.err, got)
			}
			for _, sentinel := range []error{eventstore.ErrDuplicateEvent, eventstore.ErrConflict, eventstore.ErrUnknownOutcome} {
				if want := sentinel == tc.want; errors.Is(got, sentinel) != want {
					t.Errorf("commitError(%v) = %v; matches %v: %v, want %v", tc.err, got, sentinel, !want, want)
				}
			}
		})
	}
}
