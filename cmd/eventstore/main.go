// Command eventstore looks inside an event store, a bolt file or a
// PostgreSQL schema, and moves its events in and out: the tool to reach for
// when something looks wrong.
//
//	go install github.com/eventstore-go/eventstore/cmd/eventstore@latest
//
// A store is named by the path of a bolt file, or by a postgres:// (or
// postgresql://) URL together with --schema (default "eventstore"). Commands
// that only read open bolt files read-only, under a shared lock, and refuse
// PostgreSQL schemas that do not exist rather than create them.
//
//	stats STORE             counts, head, time span, size, format
//	aggregates STORE        aggregate IDs with version and last timestamp
//	cat STORE AGGREGATE     one aggregate's events
//	log STORE               the global log, filtered
//	tail STORE [-f]         the last events; -f follows new ones
//	export STORE [-o FILE]  every event as NDJSON (.gz by name)
//	import STORE FILE       an export into any store; a rerun adds nothing
//	copy SRC DST            any store into any other, resumable
//	verify STORE            checksums, indexes, gapless positions, versions
//	backup STORE FILE       a consistent copy of a bolt file
//	compact SRC DST         a bolt file rewritten smaller, then verified
//
// Output is an aligned table for people, or NDJSON with --json; times are
// RFC 3339 in UTC. Messages go to stderr. The exit status is 0 when all is
// well, 1 when verify (or the check after backup or compact) finds
// problems or copy left aggregates out for conflicts, 2 for a usage or I/O error, and 130 after Ctrl-C (SIGINT) or
// SIGTERM, which stop every command cleanly: no half-written output file
// is left behind.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitOK          = 0
	exitProblems    = 1
	exitError       = 2
	exitInterrupted = 130 // 128 + SIGINT, as shells report it
)

// globals are the flags every command shares.
type globals struct {
	json    bool
	pretty  bool
	schema  string
	timeout time.Duration

	stdout io.Writer
	stderr io.Writer
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var p *problemsError
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "eventstore: interrupted; nothing half-written was left behind")
		return exitInterrupted
	case errors.As(err, &p):
		fmt.Fprintf(stderr, "eventstore: %v\n", err)
		return exitProblems
	default:
		fmt.Fprintf(stderr, "eventstore: %v\n", err)
		return exitError
	}
}

// problemsError reports that a check found problems (exit status 1), as
// opposed to failing to run (2).
type problemsError struct {
	n    int
	what string
}

func (e *problemsError) Error() string {
	if e.n == 1 {
		return fmt.Sprintf("%s: 1 problem found", e.what)
	}
	return fmt.Sprintf("%s: %d problems found", e.what, e.n)
}

// usageError is a command line that makes no sense (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "eventstore",
		Short: "Look inside an event store (a bolt file or a PostgreSQL schema) and move its events",
		Long: `eventstore looks inside an event store and moves its events in and out.

A STORE is the path of a bolt file, or a postgres:// URL with --schema.
Commands that only read open a bolt file read-only, under a shared lock: they
fail at once with a clear message while an application has the file open.

Output: an aligned table by default, NDJSON with --json; times in RFC 3339 UTC.
Exit status: 0 ok, 1 problems found (verify), 2 usage or I/O error,
130 interrupted (Ctrl-C).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v (see %s --help)", err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.BoolVar(&g.json, "json", false, "print NDJSON (one JSON object per line) instead of a table")
	pf.BoolVar(&g.pretty, "pretty", false, "show payloads and metadata indented, below each event (tables only)")
	pf.StringVar(&g.schema, "schema", "eventstore", "PostgreSQL schema of the store (postgres:// stores only)")
	pf.DurationVar(&g.timeout, "timeout", time.Second, "how long to wait for a bolt file's lock, or to connect")

	root.AddCommand(
		newStatsCmd(g),
		newAggregatesCmd(g),
		newCatCmd(g),
		newLogCmd(g),
		newTailCmd(g),
		newExportCmd(g),
		newVerifyCmd(g),
		newBackupCmd(g),
		newCompactCmd(g),
		newImportCmd(g),
		newCopyCmd(g),
	)
	return root
}

// args checks the number of positional arguments, as a usage error.
func args(n int, names string) cobra.PositionalArgs {
	return func(c *cobra.Command, a []string) error {
		if len(a) != n {
			return usagef("%s takes %s (%d arguments, got %d); see %s --help", c.Name(), names, n, len(a), c.CommandPath())
		}
		return nil
	}
}
