// Package pgtest gives tests outside package postgres the test server and
// an isolated schema, as postgres's own tests get them: the server named by
// EVENTSTORE_POSTGRES_DSN (by default the local one the Makefile uses), a
// loud skip when none answers, and a failure instead under CI=true, so CI
// never passes by skipping.
package pgtest

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
)

// DefaultDSN is the local server the tests use unless
// EVENTSTORE_POSTGRES_DSN names another.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DSN returns EVENTSTORE_POSTGRES_DSN, or DefaultDSN when it is unset.
func DSN() string {
	if dsn := os.Getenv("EVENTSTORE_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return DefaultDSN
}

var (
	adminOnce sync.Once
	adminPool *pgxpool.Pool
	adminErr  error
)

// Admin returns a pool on the test server for setup and cleanup, shared by
// the tests of the process. When the server cannot be reached the test is
// skipped with a loud message, or, with CI=true, fails.
func Admin(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	adminOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		adminPool, adminErr = pgxpool.New(ctx, DSN())
		if adminErr == nil {
			adminErr = adminPool.Ping(ctx)
		}
	})
	if adminErr != nil {
		msg := "PostgreSQL at " + DSN() + " is unreachable (" + adminErr.Error() + "); " +
			"set EVENTSTORE_POSTGRES_DSN to a server"
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true: %s", msg)
		}
		tb.Skipf("SKIPPING POSTGRES TESTS: %s", msg)
	}
	return adminPool
}

// FreshSchema returns the name of a schema no other test uses and drops
// it, with everything in it, when the test ends.
func FreshSchema(tb testing.TB) string {
	tb.Helper()
	pool := Admin(tb)
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
