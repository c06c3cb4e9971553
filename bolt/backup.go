package bolt

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	bbolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole file to w, while the store
// stays open for reads and appends, and returns the number of bytes
// written. The copy is a bbolt file that Open accepts: the state after
// some commit, every event up to some position and none after it, with
// the snapshots, checkpoints and read models of that commit.
//
// The copy holds only commits that are durable: Backup starts its read
// transaction while no commit is in flight (it waits for the one running,
// if any), so it never copies a commit whose fsync has not returned or
// failed. After a failed commit it fails with an error matching
// eventstore.ErrNeedsReopen, as writes do: reopen the store first.
//
// It streams the file's pages from one read transaction, so while it runs
// the file keeps the pages it started with, and an Append that must grow
// the file's memory map waits for it to finish, as for Check. ctx is
// checked before each write to w; w is neither synced nor closed.
//
// A copy taken while the store's write-ahead log exists carries the
// file's mark of it (format "eventstore/bolt 3+log"; see Options.NoWAL),
// though the copy is complete and has no log: this package opens it as it
// is, and its first read-write Open puts format 3 back; versions of this
// package older than the log refuse it until then.
//
// To back up to a file, write to a temporary file in the same directory,
// sync it, and rename it over the target, so that a crash never leaves a
// partial copy under the target's name (the eventstore command's backup
// does this).
func (s *Store) Backup(ctx context.Context, w io.Writer) (n int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.exit()
	defer recovered(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))

	// A bbolt read transaction can see a commit whose fsync has not
	// returned yet (see Head): begin it while no commit runs.
	tx, err := s.beginBackup()
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	n, err = tx.WriteTo(ctxWriter{ctx: ctx, w: w})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return n, fmt.Errorf("bolt: backup %s: %w", s.path, cerr)
		}
		return n, fmt.Errorf("bolt: backup %s: %w", s.path, err)
	}
	return n, nil
}

// ctxWriter fails every write once ctx has ended.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// beginBackup begins Backup's read transaction while no commit runs, after
// committing the appends that the log holds (they must be in the copy).
func (s *Store) beginBackup() (*bbolt.Tx, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.poisoned.Load() {
		return nil, errNeedsReopen
	}
	if s.wal != nil {
		if err := s.flushHeld(); err != nil {
			return nil, err
		}
	}
	return s.begin(false)
}
