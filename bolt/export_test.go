package bolt

import (
	"os"
	"testing"
)

// SetWALLimit sets the log size that makes a commit checkpoint, for the
// crash test's child.
func SetWALLimit(n int64) { walLimit = n }

// noWALEnv, set, runs this package's tests with the log off by default:
// the suite runs twice, once per mode (see the Makefile). Tests of the log
// itself skip then (requireWAL); the ones that run both modes by name
// pass NoWAL explicitly and run their log mode only in the default run.
const noWALEnv = "EVENTSTORE_BOLT_NOWAL"

func TestMain(m *testing.M) {
	testNoWAL = os.Getenv(noWALEnv) != ""
	os.Exit(m.Run())
}

// requireWAL skips a test of the log in the run without it.
func requireWAL(tb testing.TB) {
	tb.Helper()
	if testNoWAL {
		tb.Skip("the log is off in this run (" + noWALEnv + ")")
	}
}

// RequireWAL is requireWAL for the external tests.
func RequireWAL(tb testing.TB) { requireWAL(tb) }

// WALByDefault reports whether the log is on by default in this run.
func WALByDefault() bool { return !testNoWAL }
