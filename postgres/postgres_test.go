package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/postgres"
	"github.com/eventstore-go/eventstore/storetest"
)

// defaultDSN is the local server the tests use unless
// EVENTSTORE_POSTGRES_DSN names another.
const defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func testDSN() string {
	if dsn := os.Getenv("EVENTSTORE_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return defaultDSN
}

var (
	adminOnce sync.Once
	adminPool *pgxpool.Pool
	adminErr  error
)

// admin returns a pool on the test server for setup and cleanup. When the
// server cannot be reached the test is skipped with a loud message, or,
// with CI=true, fails: CI must never pass by skipping.
func admin(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	adminOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		adminPool, adminErr = pgxpool.New(ctx, testDSN())
		if adminErr == nil {
			adminErr = adminPool.Ping(ctx)
		}
	})
	if adminErr != nil {
		msg := "PostgreSQL at " + testDSN() + " is unreachable (" + adminErr.Error() + "); " +
			"set EVENTSTORE_POSTGRES_DSN to a server"
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true: %s", msg)
		}
		tb.Skipf("SKIPPING POSTGRES TESTS: %s", msg)
	}
	return adminPool
}

// freshSchema returns the name of a schema no other test uses and drops it,
// with everything in it, when the test ends.
func freshSchema(tb testing.TB) string {
	tb.Helper()
	pool := admin(tb)
	var b [6]byte
	rand.Read(b[:])
	schema := "estest_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// mustOpen opens a store in a fresh schema, closed and dropped when the
// test ends. opts may be nil; its Schema is replaced.
func mustOpen(tb testing.TB, opts *postgres.Options) *postgres.Store {
	tb.Helper()
	o := postgres.Options{}
	if opts != nil {
		o = *opts
	}
	o.Schema = freshSchema(tb)
	s, err := postgres.Open(context.Background(), testDSN(), &o)
	if err != nil {
		tb.Fatalf("postgres.Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	admin(t) // skip once, not in every subtest, when there is no server
	storetest.Run(t, func(t *testing.T) eventstore.Store { return mustOpen(t, nil) })
}

func TestConformance_SmallPages(t *testing.T) {
	admin(t)
	// Pages of 3 make every read cross many page boundaries.
	storetest.Run(t, func(t *testing.T) eventstore.Store { return mustOpen(t, &postgres.Options{ReadPageSize: 3}) })
}

func TestPayloadLimit(t *testing.T) {
	storetest.RunPayloadLimit(t, func(t *testing.T, maxPayload int) eventstore.Store {
		return mustOpen(t, &postgres.Options{MaxPayloadSize: maxPayload})
	})
}

func TestSnapshots(t *testing.T) {
	admin(t)
	storetest.RunSnapshots(t, func(t *testing.T) eventstore.SnapshotStore { return mustOpen(t, nil) })
}

func TestRepository(t *testing.T) {
	admin(t)
	storetest.RunRepository(t, func(t *testing.T) eventstore.SnapshottingStore { return mustOpen(t, nil) })
}
