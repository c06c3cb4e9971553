package postgres_test

import (
	"context"
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/postgres"
	"github.com/eventstore-go/eventstore/storetest"
)

// mustOpen opens a store in a fresh schema, closed and dropped when the
// test ends. opts may be nil; its Schema is replaced.
func mustOpen(tb testing.TB, opts *postgres.Options) *postgres.Store {
	tb.Helper()
	o := postgres.Options{}
	if opts != nil {
		o = *opts
	}
	o.Schema = pgtest.FreshSchema(tb)
	s, err := postgres.Open(context.Background(), pgtest.DSN(), &o)
	if err != nil {
		tb.Fatalf("postgres.Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	pgtest.Admin(t) // skip once, not in every subtest, when there is no server
	storetest.Run(t, func(t *testing.T) eventstore.Store { return mustOpen(t, nil) })
}

func TestConformance_SmallPages(t *testing.T) {
	pgtest.Admin(t)
	// Pages of 3 make every read cross many page boundaries.
	storetest.Run(t, func(t *testing.T) eventstore.Store { return mustOpen(t, &postgres.Options{ReadPageSize: 3}) })
}

func TestPayloadLimit(t *testing.T) {
	storetest.RunPayloadLimit(t, func(t *testing.T, maxPayload int) eventstore.Store {
		return mustOpen(t, &postgres.Options{MaxPayloadSize: maxPayload})
	})
}

func TestSnapshots(t *testing.T) {
	pgtest.Admin(t)
	storetest.RunSnapshots(t, func(t *testing.T) eventstore.SnapshotStore { return mustOpen(t, nil) })
}

func TestRepository(t *testing.T) {
	pgtest.Admin(t)
	storetest.RunRepository(t, func(t *testing.T) eventstore.SnapshottingStore { return mustOpen(t, nil) })
}
